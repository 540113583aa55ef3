"""End to end through the command line on tiny data, and the errors a user meets on the way."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app

TRAIN = ["--epochs", "3", "--hidden", "16"]
DISTILL = ["--sigma", "4", "--max-epsilon", "4", "--student-steps", "150", "--noise-seed", "11"]


def run(*args: str, expect: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def pipeline(tiny_adas, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    data = tiny_adas
    run("partition", data["private"], "--teachers", 6, "--out", out / "shards.h5")
    run(
        "train-teachers",
        out / "shards.h5",
        "--out",
        out / "teachers",
        "--test",
        data["test"],
        *TRAIN,
    )
    result = run(
        "label-and-distill",
        out / "teachers",
        "--public",
        data["public"],
        "--workspace",
        out / "ws",
        "--out",
        out / "release",
        "--test",
        data["test"],
        "--json",
        *DISTILL,
    )
    return out, json.loads(result.output)


def test_release_holds_only_public_artifacts(pipeline):
    out, summary = pipeline
    assert sorted(p.name for p in (out / "release").iterdir()) == [
        "labels.h5",
        "privacy.json",
        "student.h5",
        "student.jax",
    ]
    assert summary["queries_answered"] > 0 and summary["epsilon"] <= 4.0
    assert summary["private"] is False  # seeded noise
    for private in [
        out / "ws" / "ledger.jsonl",
        out / "ws" / "votes.h5",
        out / "teachers" / "teachers.h5",
        out / "shards.h5",
    ]:
        assert oct(os.stat(private).st_mode & 0o777) == "0o600", private
    with h5py.File(out / "release" / "student.h5") as handle:
        assert "votes" not in handle and "params" in handle
        assert "NOT private" in handle.attrs["privacy_statement"]


def test_inspect_release_and_workspace(pipeline):
    out, summary = pipeline
    release = json.loads(run("inspect", out / "release", "--json").output)
    for key in (
        "epsilon",
        "delta",
        "mechanism",
        "queries_seen",
        "queries_answered",
        "epsilon_data_independent",
        "epsilon_data_dependent",
        "order",
        "noise",
    ):
        assert key in release
    assert release["epsilon_data_dependent"] is None  # private-internal: not in a release
    assert release["epsilon"] == pytest.approx(summary["epsilon"])
    workspace = json.loads(run("inspect", out / "ws", "--json").output)
    assert workspace["epsilon"] == pytest.approx(release["epsilon"])
    assert workspace["epsilon_data_dependent"] <= workspace["epsilon_data_independent"]
    assert "NOT private" in run("inspect", out / "release").output


def test_inspect_plot_writes_a_png(pipeline, tmp_path):
    out, _ = pipeline
    run("inspect", out / "ws", "--plot", tmp_path / "budget.png")
    data = (tmp_path / "budget.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_predict_round_trip(pipeline, tiny_adas, tmp_path):
    out, summary = pipeline
    result = run(
        "predict",
        out / "release" / "student.h5",
        tiny_adas["test"],
        "--out",
        tmp_path / "preds.h5",
        "--json",
    )
    payload = json.loads(result.output)
    assert payload["accuracy"] == pytest.approx(summary["student_test_accuracy"])
    with h5py.File(tmp_path / "preds.h5") as handle:
        probabilities = handle["probabilities"][()]
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        assert np.array_equal(handle["labels"][()], probabilities.argmax(axis=1))


def test_rerun_on_a_spent_budget_answers_nothing(pipeline, tiny_adas):
    out, summary = pipeline
    before = (out / "ws" / "ledger.jsonl").read_bytes()
    result = run(
        "label-and-distill",
        out / "teachers",
        "--public",
        tiny_adas["public"],
        "--workspace",
        out / "ws",
        "--out",
        out / "release",
        *DISTILL,
        expect=3,
    )
    assert "budget already spent" in result.output
    assert (out / "ws" / "ledger.jsonl").read_bytes() == before


def test_workspace_of_another_run_is_refused(pipeline, tiny_adas, tmp_path):
    out, _ = pipeline
    result = run(
        "label-and-distill",
        out / "teachers",
        "--public",
        tiny_adas["public"],
        "--workspace",
        out / "ws",
        "--out",
        tmp_path / "rel",
        "--sigma",
        "9",
        "--noise-seed",
        "11",
        expect=2,
    )
    assert "ledger belongs to another run" in result.output
    assert not (tmp_path / "rel").exists()


def test_public_set_of_another_shape_is_refused(pipeline, tmp_path):
    out, _ = pipeline
    with h5py.File(tmp_path / "public.h5", "w") as handle:
        handle.attrs.update({"format": "pate-dataset", "version": 1, "num_classes": 6})
        handle["features"] = np.zeros((5, 3), np.float32)
        handle["individual_id"] = np.arange(5)
    result = run(
        "label-and-distill",
        out / "teachers",
        "--public",
        tmp_path / "public.h5",
        "--workspace",
        tmp_path / "ws",
        "--out",
        tmp_path / "rel",
        expect=2,
    )
    assert "features have shape (3,), expected" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "rel").exists()


def test_existing_outputs_are_refused_without_force(pipeline, tiny_adas):
    out, _ = pipeline
    result = run(
        "partition", tiny_adas["private"], "--teachers", 6, "--out", out / "shards.h5", expect=4
    )
    assert "already exists" in result.output and "--force" in result.output
    result = run("train-teachers", out / "shards.h5", "--out", out / "teachers", expect=4)
    assert "already exists" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["partition", "missing.h5", "--teachers", "2", "--out", "x.h5"], "no such dataset file"),
        (["partition", "README.md", "--teachers", "2", "--out", "x.h5"], "not an HDF5 file"),
        (["inspect", "nowhere"], "no such workspace or release"),
        (["predict", "missing.h5", "data.h5"], "no such student bundle"),
    ],
)
def test_bad_paths_give_one_line_errors(tmp_path, args, message):
    shutil.copy(Path(__file__).resolve().parents[1] / "README.md", tmp_path / "README.md")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = run(*args, expect=2)
    finally:
        os.chdir(cwd)
    assert message in result.output
    assert result.output.strip().count("\n") == 0 and result.output.startswith("error: ")


def test_every_command_has_help_with_an_example():
    for name in (
        "dataset",
        "partition",
        "train-teachers",
        "label-and-distill",
        "inspect",
        "predict",
    ):
        assert "Example" in run(name, "--help").output


@pytest.mark.parametrize(
    ("aggregator", "options"),
    [
        ("lnmax", ["--scale", "3"]),
        ("confident-gnmax", ["--threshold", "4", "--sigma1", "2", "--sigma2", "3"]),
        (
            "interactive-gnmax",
            [
                "--threshold",
                "3",
                "--sigma1",
                "2",
                "--sigma2",
                "3",
                "--warmup-queries",
                "8",
                "--student-confidence",
                "0.8",
            ],
        ),
    ],
)
def test_every_aggregator_runs_end_to_end(pipeline, tiny_adas, tmp_path, aggregator, options):
    out, _ = pipeline
    result = run(
        "label-and-distill",
        out / "teachers",
        "--public",
        tiny_adas["public"],
        "--workspace",
        tmp_path / "ws",
        "--out",
        tmp_path / "rel",
        "--aggregator",
        aggregator,
        *options,
        "--max-epsilon",
        "20",
        "--max-queries",
        "150",
        "--student-steps",
        "50",
        "--noise-seed",
        "3",
        "--json",
    )
    summary = json.loads(result.output)
    assert summary["mechanism"] == aggregator
    assert 0 < summary["queries_answered"] <= summary["queries_seen"] <= 150
    assert summary["epsilon"] <= 20.0
    workspace = json.loads(run("inspect", tmp_path / "ws", "--json").output)
    assert workspace["epsilon_data_dependent"] <= workspace["epsilon_data_independent"] + 1e-12
    if aggregator == "interactive-gnmax":
        from pate.ledger import Ledger

        entries = Ledger.open(tmp_path / "ws" / "ledger.jsonl", read_only=True).entries()
        assert {e["stage"] for e in entries} == {0, 1}


def test_the_portable_student_runs_with_jax_alone_and_predicts_as_pate_does(
    pipeline, tiny_adas, tmp_path
):
    """student.jax (a serialized jax.export program) gives pate predict's probabilities."""
    import subprocess
    import sys

    out, _ = pipeline
    run("predict", out / "release" / "student.h5", tiny_adas["test"], "--out", tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5") as handle:
        expected = handle["probabilities"][()]
    with h5py.File(tiny_adas["test"]) as handle:
        np.save(tmp_path / "records.npy", handle["features"][()])
    script = (
        "import sys, numpy as np\n"
        "from jax import export\n"
        f"program = export.deserialize(bytearray(open({str(out / 'release' / 'student.jax')!r}, 'rb').read()))\n"
        f"records = np.load({str(tmp_path / 'records.npy')!r})\n"
        "np.save(sys.argv[1], np.asarray(program.call(records)))\n"
        "assert not any(m == 'pate' or m.startswith(('pate.', 'flax')) for m in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "portable.npy")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "portable.npy"), expected, rtol=1e-5, atol=1e-6)


def test_inspect_shows_the_student_against_the_majority_rate(pipeline):
    out, summary = pipeline
    shown = run("inspect", out / "release").output
    assert "student test accuracy" in shown and "majority rate" in shown
    released = json.loads(run("inspect", out / "release", "--json").output)
    assert released["test_majority_rate"] == pytest.approx(summary["test_majority_rate"])
