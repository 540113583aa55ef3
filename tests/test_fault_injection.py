"""SIGKILL `label-and-distill` at seeded random moments: the ledger never under-counts.

After each kill: the ledger reopens (a torn last record is dropped), its epsilon is at least the
epsilon of every label released so far, and every released label is in the ledger with the same value.
The run is then resumed on the same workspace and killed again; the final, uninterrupted resume must
end with exactly the entries and epsilon of a run that was never killed (seeded noise makes the two
comparable; the default OS noise would differ by design).

Kill points (20, seeded): 17 while queries are answered, each once the ledger holds a drawn number of
lines plus a random 0 to 5 ms (so some land mid-write, some between batches); 2 at a random moment
after the last answer, while the student is trained; 1 as the release folder is being written.

Cost. A run spends almost all of its start-up importing JAX and Flax (about 2 s of CPU, against
milliseconds for the rest of it before the first answer). By default the killed runs are therefore
forked from one process that has imported the command's modules once (a fork server, as
``multiprocessing``'s ``forkserver``): each is still a separate process running ``pate
label-and-distill`` from its start, writing the real files with fsync, and killed with SIGKILL. The
reference and final runs are plain ``python -m cli.main`` processes. The public set is its first 120
records and the student is supervised with 20 steps: neither changes what a kill can interrupt. The
``slow`` variant (``make test-slow``) kills fresh ``python -m cli.main`` processes, on the whole public
set with the default (self-training) student. Every run shares one JAX compilation cache, filled by
the reference run, so the killed runs spend their time answering rather than compiling.
"""

from __future__ import annotations

import json
import os
import shutil
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
from pate.io import read_dataset, write_dataset
from pate.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
KILLS = 20
PUBLIC_RECORDS = 120  # > 100 answers to kill among

# Reads one JSON argv per line from stdin; forks a child that runs the command with the modules
# already imported; prints the child's pid, then its exit status (negative: killed by that signal).
FORK_SERVER = r"""
import json, os, sys, threading
import cli.label_and_distill, cli.main, pate.distill.stage
from jax._src import xla_bridge

for line in sys.stdin:
    # fork() is safe here only while this process has no other thread and no XLA backend.
    if threading.active_count() != 1 or xla_bridge._backends:
        sys.exit("fork server: a thread or an XLA backend was started before fork()")
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        code = 1
        try:
            cli.main.main(json.loads(line))
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        finally:
            os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def _compilation_cache(folder: Path) -> dict[str, str]:
    """Environment for JAX's persistent compilation cache in ``folder``: the reference run compiles
    the command's programs once and every later run (forked or fresh) loads them instead of
    compiling them again. Only compile time changes: each run still starts, answers and writes
    as before, and the kill points are drawn from the ledger, not from the clock."""
    return {
        "JAX_COMPILATION_CACHE_DIR": str(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def _arguments(
    teachers: Path, public: Path, workspace: Path, release: Path, student: list[str]
) -> list[str]:
    return [
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
        *student,
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


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (the fork server reaps its children as they end)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class ForkServer:
    """Runs commands in processes forked from one that imported the command's modules once."""

    def __init__(self, env: dict) -> None:
        self.child: int | None = None
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self, argv: list[str]) -> int:
        """Start ``pate *argv`` in a new process; return its pid."""
        self.process.stdin.write(json.dumps(argv) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the fork server ended (status {self.process.wait()})"
        self.child = int(line)
        return self.child

    def alive(self, pid: int) -> bool:
        return _alive(pid)

    def wait(self) -> int:
        """The exit status of the last child (negative: the signal that killed it)."""
        status = int(self.process.stdout.readline())
        self.child = None
        return status

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self.child is not None and _alive(self.child):  # a failed assertion left it running
            os.kill(self.child, signal.SIGKILL)
        self.process.stdin.close()
        status = self.process.wait(timeout=60)
        if kind is None:
            assert status == 0, f"the fork server ended with status {status}"


class FreshProcesses:
    """Runs each command as ``python -m cli.main``, as a user would."""

    def __init__(self, env: dict) -> None:
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self, argv: list[str]) -> int:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *argv],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self.process.pid

    def alive(self, pid: int) -> bool:
        return self.process.poll() is None

    def wait(self) -> int:
        status, self.process = self.process.wait(), None
        return status

    def __enter__(self) -> FreshProcesses:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# (runner, public records, student options)
VARIANTS = {
    "forked": (
        ForkServer,
        PUBLIC_RECORDS,
        ["--student-method", "supervised", "--student-steps", "20"],
    ),
    "fresh": (FreshProcesses, None, ["--student-steps", "50"]),
}


@pytest.fixture()
def teachers(tiny_adas, tmp_path):
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
    return tmp_path / "teachers"


def _public(tiny_adas, tmp_path: Path, records: int | None) -> Path:
    """The tiny fleet's public set, or its first ``records`` records."""
    if records is None:
        return tiny_adas["public"]
    public = read_dataset(tiny_adas["public"])
    assert len(public) > records
    first = {
        "features": public.features[:records],
        "individual_id": public.individual_id[:records],
        "path": "",
    }
    write_dataset(tmp_path / "public.h5", type(public)(**{**public.__dict__, **first}))
    return tmp_path / "public.h5"


@pytest.mark.parametrize("variant", ["forked", pytest.param("fresh", marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_never_loses_budget(tiny_adas, teachers, tmp_path, variant):
    runner, records, student = VARIANTS[variant]
    public = _public(tiny_adas, tmp_path, records)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **_compilation_cache(tmp_path / "jax-cache")}

    start = time.perf_counter()
    reference = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            *_arguments(teachers, public, tmp_path / "ws_ref", tmp_path / "rel_ref", student),
        ],
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
    # (plus a random sub-millisecond-to-5 ms delay, so some kills land mid-write); two after the
    # last answer, at a random moment while the student is trained; one once the release folder's
    # temporary exists, while it is written ("release").
    targets = np.sort(rng.choice(np.arange(2, len(expected) + 1), KILLS - 3, replace=False))
    targets = [*targets.tolist(), len(expected) + 1, len(expected) + 1, "release"]
    kills = release_kills = 0
    release_retries = 2  # the release is written in about 30 ms: a kill may come too late
    with runner(env) as server:
        while targets:
            target = targets.pop(0)
            pid = server.start(_arguments(teachers, public, workspace, release, student))
            temporary = f".{release.name}.{pid}@"
            deadline = time.perf_counter() + 4 * duration
            while time.perf_counter() < deadline and server.alive(pid):
                if target == "release":
                    if any(name.startswith(temporary) for name in os.listdir(tmp_path)):
                        break
                elif _lines(ledger_path) >= target:
                    time.sleep(
                        rng.uniform(0.0, 0.005)
                        if target <= len(expected)
                        else rng.uniform(0.0, 0.5)
                    )
                    break
                time.sleep(0.0005)
            if server.alive(pid):
                os.kill(pid, signal.SIGKILL)
            status = server.wait()
            if status == -signal.SIGKILL:
                kills += 1
                if any(name.startswith(temporary) for name in os.listdir(tmp_path)):
                    release_kills += 1
            else:
                assert status in (0, 3), f"run for kill point {target} ended with status {status}"
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
            if target == "release" and status != -signal.SIGKILL and release_retries:
                # Missed, or the release was complete already: remove it (the next run rebuilds it
                # from the ledger and charges nothing) and try this kill point again.
                release_retries -= 1
                shutil.rmtree(release)
                targets.append(target)
    assert kills >= KILLS - 3, f"only {kills} kills landed while the run was working"
    assert release_kills >= 1, "no kill landed while the release was written"

    final = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            *_arguments(teachers, public, workspace, release, student),
        ],
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
