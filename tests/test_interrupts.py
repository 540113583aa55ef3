"""Interruptions and overlapping paths: one `error:` line, a non-zero exit, nothing half-written.

SIGINT ends a command with exit status 130, SIGTERM with 143; neither leaves a temporary beside its
output, and neither may end in a signal death (a segmentation fault was seen when an interrupt cut an
XLA compilation short). A run killed by SIGKILL leaves its temporary, which the next run removes. No
command writes an output over one of its inputs, --force or not.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.io import Dataset, atomic_dir, atomic_file, write_dataset

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TRAIN = ["--epochs", "3", "--hidden", "16"]
# A supervised student: one model to train before the release is written (the default for tables,
# self-training, trains six); the moments interrupted are the same.
DISTILL = [
    "--sigma", "4", "--max-epsilon", "4", "--student-method", "supervised",
    "--student-steps", "150", "--noise-seed", "11",
]  # fmt: skip
EXIT = {signal.SIGINT: (130, "error: interrupted"), signal.SIGTERM: (143, "error: terminated")}

# Runs the CLI with a signal sent to itself at a chosen moment (argv: WHERE SIGNAL COMMAND...):
# "compile", 50 ms into the XLA compilation of the student's training loop, which XLA runs on a
# worker thread (the moment that used to end in a segmentation fault); "release", as the student is
# written into the release folder.
HOOK = r"""
import os, signal, sys, threading
from cli.main import main

where, signum, args = sys.argv[1], getattr(signal, sys.argv[2]), sys.argv[3:]
fired = []

def fire(delay):
    if not fired:
        fired.append(1)
        open(os.environ["PATE_TEST_FIRED"], "w").close()
        threading.Timer(delay, os.kill, (os.getpid(), signum)).start()

if where == "compile":
    try:
        import jax._src.compiler as compiler
        from jax._src.lib.mlir import ir
        compile_and_load = compiler.backend_compile_and_load
    except (ImportError, AttributeError):
        sys.exit(99)

    def hooked(backend, module, *a, **k):
        name = ir.StringAttr(module.operation.attributes["sym_name"]).value
        if name == "jit__supervised_steps":
            fire(0.05)
        return compile_and_load(backend, module, *a, **k)

    compiler.backend_compile_and_load = hooked
else:
    import pate.distill.stage

    save_student = pate.distill.stage.save_student

    def hooked(*a, **k):
        fire(0)
        return save_student(*a, **k)

    pate.distill.stage.save_student = hooked
main(args)
"""


def invoke(*args, expect: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_clean_exit(result: subprocess.CompletedProcess, signum: int) -> None:
    code, message = EXIT[signum]
    assert result.returncode == code, (result.returncode, result.stderr)  # -11 was a segfault
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == message
    assert [line for line in lines if line.startswith("error:")] == [message]


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "cli.main", *[str(a) for a in args]]


def signal_when(command: list[str], ready, signum: int, what: str) -> subprocess.CompletedProcess:
    """Start ``command``, send ``signum`` as soon as ``ready()`` holds, and wait for the exit."""
    process = subprocess.Popen(
        command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, f"ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after 120 s"
        time.sleep(0.001)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    result.pid = process.pid
    return result


def temporary_of(folder: Path, name: str):
    return lambda: any(p.startswith(f".{name}.") for p in os.listdir(folder))


@pytest.fixture(scope="module")
def big_private(tmp_path_factory) -> Path:
    """300k records: partition writes its output long enough to be caught at it (about 0.5 s)."""
    path = tmp_path_factory.mktemp("big") / "private.h5"
    rng = np.random.default_rng(0)
    n = 300_000
    write_dataset(
        path,
        Dataset(
            features=rng.standard_normal((n, 32), dtype=np.float32),
            labels=rng.integers(0, 2, n),
            individual_id=rng.integers(0, n // 20, n),
            num_classes=2,
            name="big",
            split="private",
        ),
        private=True,
    )
    return path


@pytest.fixture(scope="module")
def teachers(tiny_adas, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teachers")
    invoke("partition", tiny_adas["private"], "--teachers", 6, "--out", out / "shards.h5")
    invoke("train-teachers", out / "shards.h5", "--out", out / "teachers", *TRAIN)
    return out / "teachers"


# ----------------------------------------------------------------------------------------------------
# Signals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_partition_interrupted_while_writing_leaves_nothing(big_private, tmp_path, signum):
    out = tmp_path / "shards.h5"
    result = signal_when(
        cli("partition", big_private, "--teachers", 10, "--out", out),
        temporary_of(tmp_path, "shards.h5"),
        signum,
        "temporary shards file",
    )
    assert_clean_exit(result, signum)
    assert list(tmp_path.iterdir()) == []  # no shards.h5, no hidden copy of the private data


def test_partition_killed_leaves_a_temporary_the_next_run_removes(big_private, tmp_path):
    out = tmp_path / "run" / "shards.h5"
    out.parent.mkdir()
    killed = signal_when(
        cli("partition", big_private, "--teachers", 10, "--out", out),
        temporary_of(out.parent, "shards.h5"),
        signal.SIGKILL,
        "temporary shards file",
    )
    assert killed.returncode == -signal.SIGKILL
    (leftover,) = hidden(out.parent)
    assert leftover.startswith(f".shards.h5.{killed.pid}@") and leftover.endswith(".tmp")
    assert oct(os.stat(out.parent / leftover).st_mode & 0o777) == "0o600"  # private data

    invoke("partition", big_private, "--teachers", 10, "--out", out)
    assert sorted(os.listdir(out.parent)) == ["shards.h5"]
    invoke("partition", big_private, "--teachers", 10, "--out", tmp_path / "reference.h5")
    got, want = _contents(out), _contents(tmp_path / "reference.h5")
    assert got.keys() == want.keys()
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def _contents(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file, by name."""
    out = {}
    with h5py.File(path) as handle:
        for name, value in handle.attrs.items():
            out[f"@{name}"] = value

        def visit(name, item):
            if isinstance(item, h5py.Dataset):
                out[name] = item[()]
            for key, value in item.attrs.items():
                out[f"{name}@{key}"] = value

        handle.visititems(visit)
    return out


def _distill(teachers: Path, public: Path, run: Path) -> list[str]:
    return [
        "label-and-distill",
        str(teachers),
        "--public",
        str(public),
        "--workspace",
        str(run / "ws"),
        "--out",
        str(run / "release"),
        *DISTILL,
    ]


def _assert_nothing_half_written(run: Path) -> None:
    assert hidden(run) == []
    if (run / "ws").exists():
        assert hidden(run / "ws") == []
    release = run / "release"
    if release.exists():
        assert sorted(os.listdir(release)) == ["labels.h5", "privacy.json", "student.h5"]


@pytest.mark.parametrize(
    "where, signum",
    [("compile", signal.SIGINT), ("release", signal.SIGTERM)],
    ids=["SIGINT-while-compiling", "SIGTERM-while-releasing"],
)
def test_label_and_distill_interrupted_late_exits_cleanly(
    teachers, tiny_adas, tmp_path, where, signum
):
    run = tmp_path / "run"
    run.mkdir()
    fired = tmp_path / "fired"
    command = [sys.executable, "-c", HOOK, where, signal.Signals(signum).name]
    command += _distill(teachers, tiny_adas["public"], run)
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**ENV, "PATE_TEST_FIRED": str(fired)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode == 99 or not fired.exists():
        pytest.skip("the hook into JAX's compiler or the release writer did not fire")
    assert_clean_exit(result, signum)
    _assert_nothing_half_written(run)
    assert not (run / "release").exists()


def test_label_and_distill_terminated_while_answering(teachers, tiny_adas, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    result = signal_when(
        cli(*_distill(teachers, tiny_adas["public"], run)),
        lambda: (run / "ws" / "ledger.jsonl").exists(),
        signal.SIGTERM,
        "ledger",
    )
    assert_clean_exit(result, signal.SIGTERM)
    _assert_nothing_half_written(run)


# ----------------------------------------------------------------------------------------------------
# Temporaries of dead writers


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_atomic_writes_remove_only_temporaries_of_dead_writers(tmp_path):
    host, dead = socket.gethostname(), _dead_pid()
    target = tmp_path / "out.h5"
    stale = [f".out.h5.{dead}@{host}.abc_12.tmp"]
    kept = [
        f".out.h5.1@{host}.abc_12.tmp",  # pid 1 is alive: a running writer
        f".out.h5.{dead}@another-{host}.abc_12.tmp",  # another machine on a shared folder
        f".other.h5.{dead}@{host}.abc_12.tmp",  # another target
        ".out.h5.abc_12.tmp",  # no pid: unknown writer
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"partial")
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert hidden(tmp_path) == sorted(kept)

    folder = tmp_path / "release"
    (tmp_path / f".release.{dead}@{host}.x1.tmp").mkdir()
    (tmp_path / f".release.{dead}@{host}.x1.tmp" / "student.h5").write_bytes(b"partial")
    (tmp_path / f".release.1@{host}.x2.tmp").mkdir()
    with atomic_dir(folder) as tmp:
        (tmp / "student.h5").write_bytes(b"complete")
    assert (folder / "student.h5").read_bytes() == b"complete"
    assert hidden(tmp_path) == sorted([*kept, f".release.1@{host}.x2.tmp"])


def test_atomic_dir_moves_back_a_folder_a_killed_replacement_had_moved_aside(tmp_path):
    """Killed between the two renames of a --force replacement: the old folder is restored."""
    host, dead = socket.gethostname(), _dead_pid()
    old = tmp_path / f".release.{dead}@{host}.x1.old"
    (old / "x").mkdir(parents=True)
    (old / "x" / "student.h5").write_bytes(b"previous")
    (tmp_path / f".release.{dead}@{host}.x2.tmp").mkdir()  # the complete new one, never renamed
    folder = tmp_path / "release"
    with pytest.raises(Exception, match="already exists"):
        with atomic_dir(folder):
            pass
    assert (folder / "student.h5").read_bytes() == b"previous"
    assert hidden(tmp_path) == []


def test_dataset_rerun_removes_a_killed_runs_folders(tmp_path):
    host, dead = socket.gethostname(), _dead_pid()
    for suffix in ("x1.tmp", "x2.old"):
        leftover = tmp_path / f".adas.{dead}@{host}.{suffix}"
        leftover.mkdir()
        (leftover / "private.h5").write_bytes(b"partial")
    invoke("dataset", "adas", "--out", tmp_path / "adas", "--vehicles", 4)
    assert sorted(os.listdir(tmp_path)) == ["adas"]
    assert sorted(os.listdir(tmp_path / "adas")) == [
        "options.json", "private.h5", "public.h5", "test.h5"
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# An output that is an input


def refused(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "expected an output apart from every input" in lines[0]
    return lines[0]


def test_partition_never_writes_over_its_input(tiny_adas, tmp_path):
    private = tmp_path / "private.h5"
    private.write_bytes(tiny_adas["private"].read_bytes())
    before = private.read_bytes()
    assert "--out is the same path as PRIVATE.h5" in refused(
        "partition", private, "--teachers", 2, "--out", private, "--force"
    )
    (tmp_path / "link.h5").symlink_to(private)
    refused("partition", private, "--teachers", 2, "--out", tmp_path / "link.h5", "--force")
    assert private.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["link.h5", "private.h5"]


def test_predict_never_writes_over_its_inputs(tiny_adas, tmp_path):
    student, data = tmp_path / "student.h5", tmp_path / "test.h5"
    student.write_bytes(b"a student bundle")  # refused before it is read
    data.write_bytes(tiny_adas["test"].read_bytes())
    before = {p: p.read_bytes() for p in (student, data)}
    refused("predict", student, data, "--out", data, "--force")
    refused("predict", student, data, "--out", student, "--force")
    assert {p: p.read_bytes() for p in (student, data)} == before


def test_inspect_never_plots_over_what_it_inspects(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    ledger = workspace / "ledger.jsonl"
    ledger.write_bytes(b'{"a ledger": 1}\n')  # refused before it is read
    assert "--plot lies inside WORKSPACE_OR_RELEASE" in refused(
        "inspect", workspace, "--plot", ledger
    )
    refused("inspect", ledger, "--plot", ledger)
    assert ledger.read_bytes() == b'{"a ledger": 1}\n'
    assert os.listdir(workspace) == ["ledger.jsonl"]


def test_dataset_never_replaces_the_folder_of_its_input(tmp_path):
    source = tmp_path / "mine"
    source.mkdir()
    table = source / "patients.csv"
    table.write_bytes(b"patient,outcome,x\n1,0,0.5\n2,1,0.7\n")
    base = ["dataset", "csv", "--input", table, "--label-column", "outcome"]
    assert "--out contains --input" in refused(*base, "--out", source, "--force")
    refused(*base, "--out", tmp_path, "--force")
    refused("dataset", "mnist", "--source-dir", source, "--out", source, "--force")
    assert table.read_bytes() == b"patient,outcome,x\n1,0,0.5\n2,1,0.7\n"
    assert os.listdir(source) == ["patients.csv"]
