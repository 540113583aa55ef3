"""The README's shell blocks run as written, top to bottom, in an empty folder.

A newcomer copies the README's blocks into a terminal in an empty folder, one after the other. This
test does the same: every fenced shell block (no language tag) holding a command runs under
``bash -e -o pipefail`` in one temporary folder, in README order, so later blocks use what earlier
ones made. Only sizes shrink, through the ``SMALLER`` table: each of its replacements must be found
in the README, so an edit of the README cannot silently make the test run full sizes or drop a
command. A block that cannot run here (several hosts, the repository's own scripts, minutes of
real data) says so in the README itself, with ``<!-- readme-test: skip: why -->`` just above it.

The only files the test brings are the user's own table of "Bringing your own table"
(``people.csv``, ``pool.csv``, ``holdout.csv``, ``new-people.csv``): a panel shaped as people have
them, with empty cells in features and labels, labels written ``0.0``/``1.0`` and a row-number column.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"<!-- readme-test: skip: (?P<why>[^>]+?) -->\s*$")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
COMMAND = re.compile(r"^(pate|python|PYTHONPATH=\S+ python|make|cd|mkdir|ls|cat) ")

# README text -> what the test runs instead (sizes only). Every key must occur in the README.
SMALLER = {
    "pate dataset adas --out data/adas": "pate dataset adas --out data/adas --vehicles 60",
    "--teachers 250 --out run/shards.h5": "--teachers 6 --out run/shards.h5",
    "--out run/teachers --test data/adas/test.h5": (
        "--out run/teachers --test data/adas/test.h5 --epochs 2"
    ),
    "--sigma 60 --max-epsilon 3 --test data/adas/test.h5": (
        "--sigma 4 --max-epsilon 3 --test data/adas/test.h5 --student-steps 40"
    ),
    "--teachers 50 --out run-mine/shards.h5": "--teachers 4 --out run-mine/shards.h5",
    "--out run-mine/teachers --test data/mine/test.h5": (
        "--out run-mine/teachers --test data/mine/test.h5 --epochs 2"
    ),
    "--sigma 16 --max-epsilon 3": "--sigma 3 --max-epsilon 3 --student-steps 40",
    "--queries 807": "--queries 807 --trials 20000",
    "pate audit --release run/release --json": "pate audit --release run/release --json --trials 20000",
    "--canaries 200 --seed 1": "--canaries 20 --seed 1",
    "--strategy vmap --test data/adas/test.h5": "--strategy vmap --test data/adas/test.h5 --epochs 1",
}


def readme_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, body, skip reason or None) of every fenced block without a language tag."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        i += 1
        if match["lang"]:
            continue
        skip = next(
            (
                SKIP.match(lines[j])
                for j in range(start - 1, max(start - 3, -1), -1)
                if SKIP.match(lines[j])
            ),
            None,
        )
        blocks.append((start + 1, "\n".join(body), skip["why"] if skip else None))
    return blocks


def command_blocks() -> list[tuple[int, str, str | None]]:
    found = []
    for line, body, skip in readme_blocks(README.read_text()):
        logical = body.replace("\\\n", " ")
        if any(COMMAND.match(row.strip()) for row in logical.splitlines()):
            found.append((line, body, skip))
    return found


def write_panel(folder: Path, seed: int = 0, scale: int = 1) -> None:
    """A labour-market panel as people have it: a row-number column, several rows per person,
    empty cells in features and labels, labels written 0.0/1.0, a text column. ``scale``
    multiplies the number of people: the test's 150 private people are too few for the README's
    50 teachers (the partition refuses empty shards); ``scale=20`` runs the README's own sizes."""
    rng = np.random.default_rng(seed)
    header = ["", "person_id", "year", "age", "hours", "region", "plan", "outcome"]
    step = 100_000 * scale
    files = {
        "people.csv": (0, 150 * scale),
        "pool.csv": (step, 80 * scale),
        "holdout.csv": (2 * step, 40 * scale),
        "new-people.csv": (3 * step, 10),
    }
    for name, (first, people) in files.items():
        rows, row_number = [], 0
        for person in range(first, first + people):
            skill = rng.normal()
            region = rng.choice(["north", "south", "east", "west"])
            for year in range(2000, 2000 + int(rng.integers(1, 6))):
                age = 20 + person % 40 + (year - 2000)
                hours = 30 + 8 * skill + rng.normal()
                outcome = float(skill + 0.3 * rng.normal() > 0)
                cells = [
                    row_number,
                    person,
                    year,
                    age,
                    f"{hours:.1f}",
                    region,
                    rng.choice(["basic", "plus"]),
                    f"{outcome:.1f}",
                ]
                if rng.random() < 0.05:
                    cells[3] = ""  # an empty feature cell
                if rng.random() < 0.05:
                    cells[5] = ""  # an empty text cell
                if rng.random() < 0.05:
                    cells[7] = ""  # an empty label
                rows.append(cells)
                row_number += 1
        with open(folder / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def shrink(body: str, used: set[str]) -> str:
    for old, new in SMALLER.items():
        if old in body:
            body = body.replace(old, new)
            used.add(old)
    return body


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_readme_shell_block_runs_as_written(tmp_path):
    blocks = command_blocks()
    assert blocks, "the README has no shell block with a command"
    write_panel(tmp_path)
    bin_dir = Path(sys.executable).parent
    env = dict(
        os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", JAX_PLATFORMS="cpu"
    )
    env.pop("PYTHONPATH", None)
    used: set[str] = set()
    ran = 0
    for line, body, skip in blocks:
        if skip:
            continue
        script = shrink(body, used)
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"README.md block at line {line} failed (status {result.returncode}):\n{script}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
        assert "Traceback" not in result.stderr, f"README block at line {line}:\n{result.stderr}"
        ran += 1
    unused = set(SMALLER) - used
    assert not unused, f"SMALLER replacements no longer in the README: {sorted(unused)}"
    assert ran >= 5, f"only {ran} README blocks ran"
    # What the blocks promise is there: both releases, the pipeline file's demo, the audit, and
    # predictions of every new row of the user's table, carrying its ids.
    for release in ("run/release", "run-mine/release", "demo/release"):
        assert (tmp_path / release / "privacy.json").is_file(), release
    assert (tmp_path / "audit-run" / "audit.json").is_file()
    with open(tmp_path / "new-people.csv", newline="") as handle:
        asked = [row["person_id"] for row in csv.DictReader(handle)]
    with open(tmp_path / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["person_id"] for row in rows] == asked
    assert {row["predicted"] for row in rows} <= {"0", "1"}
