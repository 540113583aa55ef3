"""SIGKILL `label-and-distill` at seeded random moments: the ledger never under-counts.

After each kill: the ledger reopens (a torn last record is dropped), its epsilon is at least the
epsilon of every label released so far, and every released label is in the ledger with the same value.
The run is then resumed on the same workspace and killed again; the final, uninterrupted resume must
end with exactly the entries and epsilon of a run that was never killed (seeded noise makes the two
comparable; the default OS noise would differ by design).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.inspection import inspect_path
from pate.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
KILLS = 20


def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def _command(teachers: Path, public: Path, workspace: Path, release: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.main",
        "label-and-distill",
        str(teachers),
        "--public",
        str(public),
        "--workspace",
        str(workspace),
        "--out",
        str(release),
        "--aggregator",
        "confident-gnmax",
        "--threshold",
        "3",
        "--sigma1",
        "2",
        "--sigma2",
        "3",
        "--max-epsilon",
        "200",
        "--noise-seed",
        "5",
        "--batch-queries",
        "1",
        "--student-steps",
        "50",
        "--json",
    ]


def _released(release: Path) -> tuple[dict[int, int], float]:
    if not (release / "labels.h5").exists():
        return {}, 0.0
    with h5py.File(release / "labels.h5") as handle:
        labels = dict(
            zip(handle["query_index"][()].tolist(), handle["labels"][()].tolist(), strict=True)
        )
    return labels, json.loads((release / "privacy.json").read_text())["epsilon"]


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_budget(tiny_adas, tmp_path):
    _invoke("partition", tiny_adas["private"], "--teachers", 4, "--out", tmp_path / "shards.h5")
    _invoke(
        "train-teachers",
        tmp_path / "shards.h5",
        "--out",
        tmp_path / "teachers",
        "--epochs",
        2,
        "--hidden",
        8,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    start = time.perf_counter()
    reference = subprocess.run(
        _command(
            tmp_path / "teachers", tiny_adas["public"], tmp_path / "ws_ref", tmp_path / "rel_ref"
        ),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    duration = time.perf_counter() - start
    assert reference.returncode == 0, reference.stderr
    expected = Ledger.open(tmp_path / "ws_ref" / "ledger.jsonl", read_only=True).entries()
    assert len(expected) > 100

    rng = np.random.default_rng(2026)
    workspace, release = tmp_path / "ws", tmp_path / "rel"
    ledger_path = workspace / "ledger.jsonl"
    # Seeded kill points spread over the answering loop: kill once the ledger holds `target` lines
    # (plus a random sub-millisecond-to-5 ms delay, so some kills land mid-write), and a few after the
    # last answer, while the student is trained and the release written.
    targets = np.sort(rng.choice(np.arange(2, len(expected) + 1), KILLS - 3, replace=False))
    targets = [*targets.tolist(), len(expected) + 1, len(expected) + 1, len(expected) + 1]
    kills = 0
    for target in targets:
        process = subprocess.Popen(
            _command(tmp_path / "teachers", tiny_adas["public"], workspace, release),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.perf_counter() + 4 * duration
        while process.poll() is None and time.perf_counter() < deadline:
            lines = ledger_path.read_bytes().count(b"\n") if ledger_path.exists() else 0
            if lines >= target:
                time.sleep(
                    rng.uniform(0.0, 0.005) if target <= len(expected) else rng.uniform(0.0, 0.5)
                )
                break
            time.sleep(0.0005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        if not ledger_path.exists():
            continue
        ledger_view = inspect_path(workspace)
        entries = [e.to_dict() for e in ledger_view.entries]
        assert [e["q"] for e in entries] == list(range(len(entries)))  # none paid twice
        assert entries == expected[: len(entries)]
        released, released_epsilon = _released(release)
        charged = {e["q"]: e["label"] for e in entries if e["answered"]}
        for query, label in released.items():
            assert charged[query] == label
        assert ledger_view.report["epsilon"] >= released_epsilon
    assert kills >= KILLS - 3, f"only {kills} kills landed while the run was working"

    final = subprocess.run(
        _command(tmp_path / "teachers", tiny_adas["public"], workspace, release),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if final.returncode == 3:  # an earlier resume already finished and released everything
        assert "budget already spent" in final.stderr
    else:
        assert final.returncode == 0, final.stderr
    entries = Ledger.open(workspace / "ledger.jsonl", read_only=True).entries()
    assert entries == expected
    released, released_epsilon = _released(release)
    reference_released, reference_epsilon = _released(tmp_path / "rel_ref")
    assert released == reference_released
    assert released_epsilon == reference_epsilon
