"""Summaries that tell the truth: labelled public records, accuracies with intervals and a significance
test, plan from the files, analyze on a workspace, the release plot, progress and tables when piped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from teacher_data import toy_dataset, toy_shards

from cli.main import app

TRAIN = ["--epochs", "2", "--hidden", "8", "--no-checkpoints"]
DISTILL = ["--sigma", "3", "--max-epsilon", "20", "--student-steps", "20", "--noise-seed", "5"]
DISTILL += ["--student-method", "supervised"]


def run(*args, expect: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """Six small teachers, a public set of 150 records, a test set of 300; two runs: GNMax asked 40
    of the 150, Confident-GNMax asked them all (CliRunner: stderr is not a terminal)."""
    out = tmp_path_factory.mktemp("summaries")
    toy_shards(out / "shards.h5", [60] * 6)
    toy_dataset(out / "public.h5", 150, (6,), labelled=False)
    toy_dataset(out / "test.h5", 300, (6,))
    teachers = run(
        "train-teachers", out / "shards.h5", "--out", out / "teachers", "--test", out / "test.h5",
        *TRAIN,
    )  # fmt: skip
    common = [out / "teachers", "--public", out / "public.h5", "--test", out / "test.h5"]
    gnmax = run(
        "label-and-distill", *common, "--workspace", out / "ws", "--out", out / "release",
        "--max-queries", 40, *DISTILL,
    )  # fmt: skip
    confident = run(
        "label-and-distill", *common, "--workspace", out / "ws-c", "--out", out / "release-c",
        "--aggregator", "confident-gnmax", "--threshold", 4, "--sigma1", 4, "--sigma2", 4,
        "--max-epsilon", 100, "--noise-seed", 5, "--student-steps", 20, "--student-method",
        "supervised", "--json",
    )  # fmt: skip
    return {"out": out, "teachers": teachers, "gnmax": gnmax, "confident": confident}


# 1. Labelled rows


def test_the_summary_counts_public_records_labelled_and_says_why_it_stopped(made):
    shown = made["gnmax"].stdout
    assert "40 of 150 public records labelled (stopped: max queries)" in shown
    summary = json.loads(made["confident"].stdout)
    answered = summary["queries_answered"]
    assert 0 < answered < 150 and summary["public_records"] == 150
    assert summary["labelled"] == f"{answered} of 150 public records labelled (stopped: all asked)"
    report = json.loads((made["out"] / "release" / "privacy.json").read_text())
    assert report["public_records"] == 150


def test_stop_reasons_are_said_as_the_user_reads_them():
    from pate.distill.stage import stop_text

    assert [stop_text(r) for r in ("budget", "public set exhausted", "max queries")] == [
        "budget",
        "all asked",
        "max queries",
    ]


# 2. Accuracies with an interval, and a significance test against the majority rate


def test_the_interval_is_clopper_pearson_and_the_test_exact_binomial():
    from scipy.stats import binomtest

    from pate.report import accuracy_interval, beats_majority, beats_rate_p_value

    expected = binomtest(1062, 1350).proportion_ci(0.95, method="exact")
    assert accuracy_interval(1062, 1350) == pytest.approx((expected.low, expected.high))
    assert accuracy_interval(0, 10)[0] == 0.0 and accuracy_interval(10, 10)[1] == 1.0
    p = binomtest(1062, 1350, 0.7844, alternative="greater").pvalue
    assert beats_rate_p_value(1062, 1350, 0.7844) == pytest.approx(p)
    # The case: 0.7867 against 0.7844 on 1,350 records is inside the noise.
    assert not beats_majority(1062 / 1350, 1350, 0.7844)
    assert beats_majority(0.83, 1350, 0.7844)


def test_teachers_barely_above_the_majority_rate_are_warned_about():
    from pate.teachers.stage import TeachersResult

    def result(mean: float, n: int) -> TeachersResult:
        accuracy = np.array([mean - 0.01, mean, mean + 0.01])
        return TeachersResult(None, None, 3, "mlp", None, accuracy, 0.7844, n)

    warned = result(0.7867, 1350).warnings
    assert len(warned) == 1 and "does not beat" in warned[0] and "significantly" in warned[0]
    assert "95% CI" in warned[0]
    assert result(0.83, 1350).warnings == []


def test_the_student_accuracy_has_its_interval_in_the_output_and_the_release(made):
    from pate.report import accuracy_interval, beats_majority

    report = json.loads((made["out"] / "release" / "privacy.json").read_text())
    accuracy, n = report["student_test_accuracy"], report["test_records"]
    assert n == 300
    assert report["student_test_interval"] == pytest.approx(
        list(accuracy_interval(accuracy * n, n))
    )
    beats = beats_majority(accuracy, n, report["test_majority_rate"])
    assert report["student_beats_majority"] is beats
    gnmax = made["gnmax"]
    assert "student test accuracy = " in gnmax.stdout and "(95% CI " in gnmax.stdout
    assert ("does not beat always predicting" in gnmax.stderr) is (not beats)
    assert "mean 0." in made["teachers"].stdout and "(95% CI " in made["teachers"].stdout
    shown = run("inspect", made["out"] / "release").stdout
    assert "95% CI" in shown and "public records labelled" in shown


# 3. plan reads what the files record


def _dataset(path: Path, individuals: int, per: int, classes: int, labelled: bool = True) -> Path:
    from pate.io import Dataset, write_dataset

    ids = np.repeat(np.arange(individuals), per)
    data = Dataset(
        features=np.zeros((len(ids), 2), np.float32),
        labels=ids % classes if labelled else None,
        individual_id=ids + (0 if labelled else 10**6),
        num_classes=classes,
    )
    write_dataset(path, data)
    return path


def test_plan_takes_classes_and_public_size_from_the_files_and_recommends(tmp_path):
    private = _dataset(tmp_path / "private.h5", 5000, 4, 3)
    public = _dataset(tmp_path / "public.h5", 420, 1, 3, labelled=False)
    result = run("plan", "--epsilon", 2, "--private", private, "--public", public, "--json")
    payload = json.loads(result.stdout)
    assert payload["classes"] == 3 and payload["public_size"] == 420
    assert payload["recommended"] in [row["teachers"] for row in payload["rows"]]
    text = run("plan", "--epsilon", 2, "--private", private, "--public", public).stdout
    assert f"Suggested: {payload['recommended']} teachers" in text
    wrong = run("plan", "--epsilon", 2, "--private", private, "--classes", 4, expect=2)
    assert "attribute 'num_classes' is 3, expected 4 as --classes" in wrong.stderr


def test_plan_without_a_public_pool_says_the_answers_are_not_capped():
    text = run("plan", "--epsilon", 8, "--individuals", 100_000, "--classes", 4).stdout
    assert "Suggested: 500 teachers" in text
    assert "--public (or --public-size) not given, so the answers are not capped" in text


def test_the_epsilon_plan_advises_buys_what_it_says():
    import re

    from pate.accounting import size_teachers

    result = size_teachers(epsilon=0.05, individuals=100_000, classes=4)
    assert result.recommended is None
    found = re.search(
        r"a larger epsilon: ([0-9.]+) buys 40 answers .* with (\d+) teachers", result.advice
    )
    epsilon, teachers = float(found[1]), int(found[2])
    again = size_teachers(epsilon=epsilon, individuals=100_000, classes=4)
    assert {row.teachers: row.queries for row in again.rows}[teachers] >= 40
    assert again.recommended == teachers


def test_plan_says_plainly_when_no_setting_gives_a_useful_student(tmp_path):
    private = _dataset(tmp_path / "private.h5", 300, 4, 6)
    text = run("plan", "--epsilon", 2, "--private", private).stdout
    assert "No setting gives a useful student; what would: more data" in text
    assert "fewer than the 120 (20 per class x 6 classes) a teacher needs" in text
    assert "< 20 per class" not in text


# 4. analyze on a workspace


def test_analyze_a_workspace_analyses_the_queries_it_charged(made):
    out = made["out"]
    release = json.loads((out / "release" / "privacy.json").read_text())
    for target in (out / "ws", out / "ws" / "votes.h5"):
        payload = json.loads(run("analyze", target, "--json").stdout)
        assert payload["queries"] == 40 and payload["votes_rows"] == 150
        assert payload["mechanism"] == "gnmax" and payload["parameters"] == {"sigma": 3.0}
        assert payload["data_independent"]["epsilon"] == pytest.approx(release["epsilon"])
    confident = json.loads((out / "release-c" / "privacy.json").read_text())
    payload = json.loads(run("analyze", out / "ws-c", "--json").stdout)
    assert payload["queries"] == confident["queries_seen"] == 150
    assert payload["realised"]["answered"] == confident["queries_answered"]
    realised = payload["realised"]["data_independent"]["epsilon"]
    assert realised == pytest.approx(confident["epsilon"])
    text = run("analyze", out / "ws").stdout
    assert "the 40 queries its ledger charged (of 150 rows)" in text
    # What the same 40 queries would have cost with another aggregator: no realised cost (the run's).
    other = ["--mechanism", "confident-gnmax", "--threshold", 4, "--sigma1", 4, "--sigma2", 3]
    payload = json.loads(run("analyze", out / "ws", *other, "--json").stdout)
    assert payload["queries"] == 40 and "realised" not in payload
    assert payload["parameters"]["sigma1"] == 4.0


def test_analyze_a_plain_vote_file_keeps_every_row(made, tmp_path):
    import h5py

    with h5py.File(made["out"] / "ws" / "votes.h5") as handle:
        np.save(tmp_path / "votes.npy", handle["votes"][()])
    payload = json.loads(run("analyze", tmp_path / "votes.npy", "--sigma", 3, "--json").stdout)
    assert payload["queries"] == 150 and "votes_rows" not in payload


# 5. inspect RELEASE --plot


@pytest.mark.parametrize("release", ["release", "release-c"])
def test_the_release_curve_is_exact_and_ends_at_its_epsilon(made, release):
    from pate.inspection import inspect_path, release_answers_per_class, release_epsilon_curve

    inspection = inspect_path(made["out"] / release)
    answered, epsilon = release_epsilon_curve(inspection)
    report = inspection.report
    assert answered[-1] == report["queries_answered"]
    assert epsilon[-1] == pytest.approx(report["epsilon"], rel=1e-9)
    assert np.all(np.diff(epsilon) >= 0)
    # Not a straight line from 0: epsilon grows like the square root of the answers at first.
    if release == "release":
        middle = epsilon[len(epsilon) // 2]
        assert middle > 0.6 * epsilon[-1]
    names, counts = release_answers_per_class(inspection)
    assert names == ["0", "1", "2"] and counts.sum() == report["queries_answered"]


def test_a_release_that_does_not_record_the_order_gets_exact_bounds(made, tmp_path):
    import shutil

    from pate.inspection import inspect_path, release_epsilon_band, release_epsilon_curve

    exact = inspect_path(made["out"] / "release-c")
    answered, epsilon = release_epsilon_curve(exact)
    chosen = tmp_path / "release"  # the same release, as if the student had chosen its queries
    shutil.copytree(made["out"] / "release-c", chosen)
    report = json.loads((chosen / "privacy.json").read_text())
    report["configuration"]["query_selection"] = "uncertainty"
    (chosen / "privacy.json").write_text(json.dumps(report))
    inspection = inspect_path(chosen)
    assert release_epsilon_curve(inspection) is None
    ks, low, high = release_epsilon_band(inspection)
    assert ks[-1] == report["queries_answered"]
    assert high[-1] == pytest.approx(report["epsilon"], rel=1e-9)
    exact_at = dict(zip(answered.tolist(), epsilon.tolist(), strict=False))  # last value per k
    inside = [low[i] - 1e-9 <= exact_at[k] <= high[i] + 1e-9 for i, k in enumerate(ks)]
    assert all(inside) and np.all(low <= high)
    run("inspect", chosen, "--plot", tmp_path / "band.png")
    assert (tmp_path / "band.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_release_plot_draws_the_curve_and_the_answers_per_class(made, tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from pate.inspection import inspect_path, release_answers_per_class, release_epsilon_curve

    drawn: dict[str, list] = {"plot": [], "bar": []}
    for name in drawn:
        original = getattr(Axes, name)

        def record(self, *args, _name=name, _original=original, **kwargs):
            drawn[_name].append(args)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, record)
    run("inspect", made["out"] / "release", "--plot", tmp_path / "release.png")
    data = (tmp_path / "release.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    inspection = inspect_path(made["out"] / "release")
    answered, epsilon = release_epsilon_curve(inspection)
    (x, y), *_ = drawn["plot"]
    np.testing.assert_array_equal(x, answered)
    np.testing.assert_array_equal(y, epsilon)
    (positions, heights), *_ = drawn["bar"]
    np.testing.assert_array_equal(heights, release_answers_per_class(inspection)[1])


# 6. Progress and tables a user can read when piped


def test_phases_are_one_line_each_when_stderr_is_not_a_terminal(made):
    teachers = made["teachers"].stderr
    assert "compiling and first steps ..." in teachers
    assert "training teachers: done in " in teachers
    distill = made["gnmax"].stderr
    for phase in ("computing votes", "answering queries", "training student", "writing release"):
        assert f"{phase} ...\n" in distill and f"{phase}: done in " in distill
    order = [
        distill.index(f"{p} ...")
        for p in ("computing votes", "answering queries", "training student")
    ]
    assert order == sorted(order)


def test_phases_say_elapsed_time_and_nothing_when_quiet(capsys):
    from cli.common import Phases

    with Phases(terminal=False) as phases:
        phases.start("compiling")
        phases.advance(3, 10)
        phases.start("training")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "compiling ..." and lines[2] == "training ..."
    assert lines[1].startswith("compiling: done in ") and lines[3].startswith("training: done in ")
    with Phases(terminal=False, quiet=True) as phases:
        phases.start("compiling")
    assert capsys.readouterr().err == ""


def test_piped_tables_are_never_wrapped_mid_row(made):
    text = run("plan", "--epsilon", 2, "--individuals", 300, "--classes", 3).stdout
    rows = [line for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 5 and all("GNMax sigma" in r and "answers" in r for r in rows)
    shown = run("inspect", made["out"] / "release").stdout
    line = next(x for x in shown.splitlines() if "epsilon (publishable, data-independent)" in x)
    assert "at delta = " in line
    analysis = run("analyze", made["out"] / "ws", "--smooth-sensitivity").stdout
    assert any("data-independent" in x and "1e-05" in x for x in analysis.splitlines())
