"""pate.inspection: the views `pate inspect` shows of a workspace and of a release, and the plot.

The workspace is built as label-and-distill leaves it (a ledger written by the answering loop, and the
votes file), without teachers: the module reads only those files.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from pate.aggregate import ConfidentGNMaxConfig
from pate.errors import PateError
from pate.inspection import (
    RELEASE_KEYS,
    check_release_report,
    epsilon_curve,
    inspect_path,
    load_votes,
    plot_inspection,
)
from pate.io import array_fingerprint
from pate.labeling import BudgetConfig, run_labeling, spent
from pate.noise import SeededNoise
from pate.records import RunHeader
from pate.report import privacy_report, write_report

PNG = b"\x89PNG\r\n\x1a\n"
CONFIG = ConfidentGNMaxConfig(threshold=14.0, sigma1=3.0, sigma2=2.0)
BUDGET = BudgetConfig(max_epsilon=400.0)


def _votes(queries: int = 60, teachers: int = 20, classes: int = 4) -> np.ndarray:
    """Confident and split votes mixed, so that some queries are answered and some rejected."""
    rng = np.random.default_rng(4)
    concentration = np.where(np.arange(queries)[:, None] % 3 == 0, 0.3, 3.0)
    probs = rng.dirichlet(np.ones(classes), size=queries) ** (1 / concentration)
    probs /= probs.sum(axis=1, keepdims=True)
    return np.stack([rng.multinomial(teachers, p) for p in probs]).astype(np.int64)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A workspace (ledger + votes.h5) and the release folder built from the same outcome."""
    root = tmp_path_factory.mktemp("inspection")
    votes = _votes()
    workspace, release = root / "ws", root / "release"
    workspace.mkdir(mode=0o700)
    release.mkdir()
    header = RunHeader(
        run_id="0123456789abcdef" * 2,
        teachers_sha256="t",
        public_sha256="p",
        votes_sha256=array_fingerprint(votes),
        num_queries=len(votes),
        num_classes=votes.shape[1],
        num_teachers=20,
        aggregator=CONFIG.to_dict(),
        delta=BUDGET.delta,
        max_epsilon=BUDGET.max_epsilon,
        orders=BUDGET.orders,
        conversion=BUDGET.conversion,
        noise="seeded(seed=3), NOT PRIVATE",
        noise_private=False,
        noise_seed=3,
        stages=None,
    )
    outcome = run_labeling(
        votes,
        CONFIG,
        BUDGET,
        workspace / "ledger.jsonl",
        noise=SeededNoise(3),
        noise_seed=3,
        header=header,
        batch_queries=7,
    )
    with h5py.File(workspace / "votes.h5", "w") as handle:
        handle.attrs.update({"format": "pate-votes", "version": 1})
        handle.create_dataset("votes", data=votes)
    report = privacy_report(
        header=outcome.header,
        spent=outcome.spent,
        stop_reason=outcome.stop_reason,
        include_private=False,
        max_epsilon_history=outcome.max_epsilon_history,
    )
    write_report(release / "privacy.json", report)
    return {"workspace": workspace, "release": release, "outcome": outcome, "votes": votes}


def test_the_run_answers_some_queries_and_rejects_others(run):
    outcome = run["outcome"]
    assert outcome.spent.queries_seen == len(run["votes"])
    assert 0 < outcome.spent.queries_answered < outcome.spent.queries_seen


def test_inspect_a_workspace_recomputes_the_report_from_the_ledger(run):
    view = inspect_path(run["workspace"])
    outcome = run["outcome"]
    assert view.kind == "workspace"
    assert view.entries == outcome.entries
    assert view.header == outcome.header
    report = view.report
    assert report["epsilon"] == outcome.spent.epsilon_data_independent
    assert report["epsilon_data_dependent"] == outcome.spent.epsilon_data_dependent
    assert report["epsilon_data_dependent"] <= report["epsilon"]
    assert report["queries_seen"] == outcome.spent.queries_seen
    assert report["queries_answered"] == outcome.spent.queries_answered
    assert report["max_epsilon_history"] == [400.0]
    assert report["ledger_damage"] is None and "stop_reason" not in report
    assert view.votes_path == run["workspace"] / "votes.h5"
    np.testing.assert_array_equal(load_votes(view), run["votes"])
    # The ledger file itself names its workspace.
    assert inspect_path(run["workspace"] / "ledger.jsonl").report == report


def test_inspect_a_release_reads_its_report_only(run):
    view = inspect_path(run["release"])
    assert view.kind == "release"
    assert view.report == json.loads((run["release"] / "privacy.json").read_text())
    assert view.entries is None and view.header is None and load_votes(view) is None
    assert view.report["epsilon_data_dependent"] is None  # private-internal: not in a release
    workspace = inspect_path(run["workspace"]).report
    for key in RELEASE_KEYS.keys() - {"statement"}:  # the views agree on every public figure
        assert view.report[key] == workspace[key], key
    # The workspace's statement adds the private-internal data-dependent epsilon.
    assert workspace["statement"].startswith(view.report["statement"] + "\nPrivate-internal:")


def test_a_workspace_without_votes_is_still_inspected(run, tmp_path):
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "ledger.jsonl").write_bytes((run["workspace"] / "ledger.jsonl").read_bytes())
    (folder / "ledger.jsonl.head").write_bytes(
        (run["workspace"] / "ledger.jsonl.head").read_bytes()
    )
    view = inspect_path(folder)
    assert view.votes_path is None and load_votes(view) is None
    assert view.report == inspect_path(run["workspace"]).report


def test_epsilon_curve_is_monotone_and_ends_at_the_reports_epsilon(run):
    view = inspect_path(run["workspace"])
    answered, eps_di, eps_dd = epsilon_curve(view.entries, view.header)
    assert len(answered) == len(eps_di) == len(eps_dd) == len(view.entries)  # fewer than 120 points
    for curve in (answered, eps_di, eps_dd):
        assert (np.diff(curve) >= -1e-12).all()
    assert (eps_dd <= eps_di + 1e-12).all()
    assert answered[-1] == view.report["queries_answered"]
    assert eps_di[-1] == pytest.approx(view.report["epsilon"], rel=1e-12)
    assert eps_dd[-1] == pytest.approx(view.report["epsilon_data_dependent"], rel=1e-12)
    # Each point is the spend of the first k entries.
    k = len(view.entries) // 2
    assert eps_di[k - 1] == spent(view.entries[:k], CONFIG, BUDGET).epsilon_data_independent
    # At most `points` values of k, the last one always the whole ledger.
    answered, eps_di, _ = epsilon_curve(view.entries, view.header, points=7)
    assert len(eps_di) == 7 and eps_di[-1] == pytest.approx(view.report["epsilon"], rel=1e-12)


@pytest.mark.parametrize("which", ["workspace", "release"])
def test_plot_writes_a_png(run, tmp_path, which):
    out = tmp_path / "plot.png"
    plot_inspection(inspect_path(run[which]), out)
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000


def test_plot_refuses_votes_of_another_run_before_writing(run, tmp_path):
    view = inspect_path(run["workspace"])
    other = tmp_path / "votes.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("votes", data=run["votes"][::-1])
    view.votes_path = other
    with pytest.raises(PateError, match="does not match the ledger's votes_sha256"):
        plot_inspection(view, tmp_path / "plot.png")
    assert not (tmp_path / "plot.png").exists()


def test_what_is_neither_a_workspace_nor_a_release_is_refused(tmp_path):
    with pytest.raises(PateError, match="no such workspace or release folder"):
        inspect_path(tmp_path / "nowhere")
    with pytest.raises(PateError, match=r"neither a workspace \(no ledger\.jsonl\) nor a release"):
        inspect_path(tmp_path)
    (tmp_path / "privacy.json").write_text("{not json")
    with pytest.raises(PateError, match=r"privacy\.json: not valid JSON"):
        inspect_path(tmp_path)


def test_check_release_report_names_the_bad_key(run):
    report = json.loads((run["release"] / "privacy.json").read_text())
    check_release_report(report, "privacy.json")
    cases = [
        ({"format": "other"}, "key 'format' is 'other', expected 'pate-privacy-report'"),
        ({"private": 1}, "key 'private' is 1, expected true or false"),
        ({"num_teachers": True}, "key 'num_teachers' is True, expected an integer"),
        ({"epsilon": "1"}, "key 'epsilon' is '1', expected a number"),
        ({"parameters": {"sigma1": "3"}}, "key 'parameters' has sigma1='3', expected a number"),
        (
            {"epsilon_data_dependent": "x"},
            "'epsilon_data_dependent' is 'x', expected a number or null",
        ),
    ]
    for change, message in cases:
        with pytest.raises(PateError, match=f"^privacy.json: .*{message}"):
            check_release_report({**report, **change}, "privacy.json")
    with pytest.raises(PateError, match="is a JSON str, expected a JSON object"):
        check_release_report("text", "privacy.json")
