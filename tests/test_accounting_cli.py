"""``pate analyze`` and ``pate plan`` through click's CliRunner."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.accounting import analyze

VOTES = np.array(
    [
        [240, 2, 1, 1, 1, 1, 1, 1, 1, 1],
        [100, 90, 20, 10, 10, 5, 5, 5, 3, 2],
        [250, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [180, 30, 10, 5, 5, 5, 5, 4, 3, 3],
    ]
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def votes_npy(tmp_path):
    path = tmp_path / "votes.npy"
    np.save(path, VOTES)
    return path


def run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def test_analyze_json_matches_library(runner, votes_npy):
    result = run(runner, "analyze", votes_npy, "--mechanism", "gnmax", "--sigma", 40, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = analyze(VOTES, mechanism="gnmax", sigma=40).to_dict()
    assert data == json.loads(json.dumps(expected))
    assert {"mechanism", "queries", "delta", "orders", "conversion"} <= set(data)
    assert data["delta"] == 1e-5 and data["orders"] == "default"


def test_analyze_reads_hdf5_votes(runner, tmp_path, votes_npy):
    path = tmp_path / "workspace.h5"
    with h5py.File(path, "w") as handle:
        handle["votes"] = VOTES
    from_h5 = run(runner, "analyze", path, "--sigma", 40, "--json")
    from_npy = run(runner, "analyze", votes_npy, "--sigma", 40, "--json")
    assert from_h5.exit_code == 0, from_h5.output
    assert json.loads(from_h5.stdout) == json.loads(from_npy.stdout)


def test_analyze_confident_with_several_deltas_and_answered(runner, tmp_path, votes_npy):
    answered = tmp_path / "answered.npy"
    np.save(answered, np.array([True, False, True, False]))
    result = run(
        runner,
        "analyze",
        votes_npy,
        "--mechanism",
        "confident-gnmax",
        "--threshold",
        200,
        "--sigma1",
        150,
        "--sigma2",
        40,
        "--delta",
        1e-5,
        "--delta",
        1e-8,
        "--orders",
        "paper",
        "--conversion",
        "classic",
        "--smooth-sensitivity",
        "--answered",
        answered,
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["delta"] == [1e-5, 1e-8]
    assert len(data["data_dependent"]) == 2 and len(data["smooth_sensitivity"]) == 2
    assert data["realised"]["answered"] == 2
    assert 0 < data["expected_answered"] < 4
    for release in data["smooth_sensitivity"]:
        assert set(release) >= {
            "order",
            "beta",
            "sensitivity",
            "noise_sigma",
            "epsilon_before",
            "epsilon_with_release",
        }


def test_analyze_readable_report(runner, votes_npy):
    result = run(runner, "analyze", votes_npy, "--sigma", 40, "--smooth-sensitivity")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # rich wraps lines at the terminal width
    assert "4 queries, gnmax (sigma=40)" in text
    assert "data-independent" in text and "data-dependent" in text
    assert "Smooth-sensitivity release" in text
    report = analyze(VOTES, mechanism="gnmax", sigma=40)
    assert f"{report.data_dependent[0].epsilon:.6g}" in text


def test_lnmax_readable_report(runner, votes_npy):
    result = run(runner, "analyze", votes_npy, "--mechanism", "lnmax", "--scale", 20)
    assert result.exit_code == 0, result.output
    assert "PATE 2017 moments accountant (gamma=0.05)" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, ["--sigma", "40"], "no such file"),
        (b"", ["--sigma", "40"], "is empty"),
        (b"not an array", ["--sigma", "40"], "neither a .npy nor an HDF5 file"),
        (np.array([[1.5, 2.0]]), ["--sigma", "40"], "expected integer vote counts"),
        (np.array([[3, -1]]), ["--sigma", "40"], "expected counts >= 0"),
        (np.array([[np.nan, 1.0]]), ["--sigma", "40"], "NaN"),
        (np.zeros((0, 4), dtype=int), ["--sigma", "40"], "no rows"),
        (VOTES, ["--sigma", "0"], "Expected sigma=0.0 > 0."),
        (VOTES, ["--sigma", "-3"], "Expected sigma=-3.0 > 0."),
        (VOTES, ["--sigma", "40", "--delta", "1.5"], "Expected delta=1.5 in (0, 1)."),
        (VOTES, ["--sigma", "40", "--delta", "0"], "Expected delta=0.0 in (0, 1)."),
        (VOTES, ["--sigma", "40", "--teachers", "200"], "row 0 sums to 250, expected"),
        (VOTES, [], "gnmax needs --sigma"),
        (VOTES, ["--mechanism", "confident-gnmax", "--sigma2", "4"], "needs --threshold"),
    ],
)
def test_analyze_refuses_bad_input(runner, tmp_path, content, args, message):
    path = tmp_path / "votes.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    result = run(runner, "analyze", path, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_analyze_hdf5_without_votes(runner, tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["labels"] = np.arange(3)
    result = run(runner, "analyze", path, "--sigma", 40)
    assert result.exit_code == 2
    assert "has no dataset 'votes' (found ['labels'])" in result.stderr


def test_plan_json_and_text(runner):
    args = ["plan", "--epsilon", 2, "--queries", 1000, "--teachers", 250, "--classes", 10]
    result = run(runner, *args, "--answered-fraction", 0.4, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["gnmax"]["epsilon"] <= 2 and data["confident_gnmax"]["epsilon"] <= 2
    assert data["confident_gnmax"]["answered"] == 400
    text = " ".join(run(runner, *args).stdout.split())
    assert "GNMax: sigma = " in text and "Confident-GNMax: T = 200" in text


def test_plan_refuses_bad_budget(runner):
    result = run(
        runner, "plan", "--epsilon", -1, "--queries", 10, "--teachers", 250, "--classes", 10
    )
    assert result.exit_code == 2 and "Expected epsilon=-1.0 > 0." in result.stderr


@pytest.mark.parametrize("name", ["analyze", "plan"])
def test_help_has_an_example(runner, name):
    result = run(runner, name, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"pate {name}" in result.stdout


def test_plan_sizes_teachers_from_a_private_file_or_counts(runner, tmp_path):
    from pate.io import Dataset, write_dataset

    ids = np.repeat(np.arange(300), 4)
    data = Dataset(
        features=np.zeros((1200, 2), np.float32),
        labels=ids % 3,
        individual_id=ids,
        num_classes=3,
    )
    write_dataset(tmp_path / "private.h5", data)
    result = runner.invoke(
        app,
        ["plan", "--epsilon", "2", "--classes", "3", "--private", str(tmp_path / "private.h5"),
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["individuals"] == 300 and payload["records"] == 1200
    assert [row["teachers"] for row in payload["rows"]] == [25, 50, 100, 250, 500]
    result = runner.invoke(app, ["plan", "--epsilon", "2", "--classes", "3"])
    assert result.exit_code == 2 and "--queries: missing" in result.output
