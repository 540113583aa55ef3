"""The one output policy (design rule 11), missing parents, write failures as one line, one run per
output, and the canary audit's secrets. Everything here is refused or checked before a model is
trained, so the tests are fast: inputs are tiny files made here, or stand-ins the policy refuses
before reading them."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.data import build_dataset
from pate.distill import DistillJob, label_and_distill
from pate.errors import PateError
from pate.export import predict
from pate.inspection import inspect
from pate.io import Dataset, ensure_private_dir, write_dataset
from pate.outputs import check_output, kind_of, output_lock
from pate.partitioning import PartitionJob, partition
from pate.teachers import TeachersJob, train_teachers


def _dataset(path: Path, *, split: str = "private", n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    data = Dataset(
        rng.normal(size=(n, 3)).astype(np.float32),
        (np.arange(n) % 2).astype(np.int64),
        np.arange(n, dtype=np.int64),
        num_classes=2,
        split=split,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dataset(path, data, private=split == "private")
    return path


def _data_folder(folder: Path) -> Path:
    for split in ("private", "public", "test"):
        _dataset(folder / f"{split}.h5", split=split)
    return folder


def _release(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "privacy.json").write_text('{"format": "pate-privacy-report"}\n')
    (folder / "labels.h5").write_bytes(b"released labels")
    return folder


def _workspace(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "ledger.jsonl").write_text("{}\n")
    return folder


def _teachers(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "teachers.h5").write_bytes(b"teachers")
    return folder


def _cli(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(result, status: int, *parts: str) -> None:
    assert result.exit_code == status, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for part in parts:
        assert part in lines[0], result.output


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


# ----------------------------------------------------------------------------------------------------
# 1. One output policy


def test_kinds_are_recognised_by_their_own_markers(tmp_path):
    assert kind_of(_release(tmp_path / "r")) == "release"
    assert kind_of(_workspace(tmp_path / "w")) == "workspace"
    assert kind_of(_teachers(tmp_path / "t")) == "teachers"
    assert kind_of(_data_folder(tmp_path / "d")) == "data"
    assert kind_of(_dataset(tmp_path / "x.h5")) == "pate-dataset"
    (tmp_path / "e").mkdir()
    assert kind_of(tmp_path / "e") == "empty"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert kind_of(tmp_path / "mine") is None and kind_of(tmp_path / "nothing") is None


def test_predict_never_writes_into_a_release_nor_replaces_its_files(tmp_path):
    release = _release(tmp_path / "release")
    student, rows = _dataset(tmp_path / "student.h5"), _dataset(tmp_path / "rows.h5")
    before = _tree(release)
    with pytest.raises(PateError, match="lies inside the release folder") as raised:
        predict(student, rows, out=release / "predictions.csv")
    assert raised.value.exit_code == 2
    result = _cli("predict", student, rows, "--out", release / "privacy.json", "--force")
    _one_line_error(result, 2, "privacy.json", "lies inside the release folder")
    assert _tree(release) == before


def test_a_workspace_is_a_workspace_an_empty_folder_or_a_new_one(tmp_path):
    release = _release(tmp_path / "copy-of-a-release")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.jpg").write_bytes(b"x")
    for workspace, message in ((release, "is a release folder"), (mine, "is something else")):
        before = _tree(workspace)
        job = DistillJob(
            teachers=tmp_path / "teachers", public=tmp_path / "public.h5", workspace=workspace,
            out=tmp_path / "release-out",
        )  # fmt: skip
        with pytest.raises(PateError, match=message) as raised:
            label_and_distill(job)
        assert raised.value.exit_code == 4 and _tree(workspace) == before
        assert not (tmp_path / "release-out").exists()


def test_an_existing_folder_keeps_its_permissions(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # a shared folder with its sticky bit
    ensure_private_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    made = ensure_private_dir(tmp_path / "new" / "workspace")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_train_teachers_force_never_replaces_a_data_folder_or_a_release(tmp_path):
    shards = _dataset(tmp_path / "shards.h5")
    for folder in (_data_folder(tmp_path / "data"), _release(tmp_path / "release")):
        before = _tree(folder)
        with pytest.raises(
            PateError, match="already exists and is a (data|release) folder"
        ) as raised:
            train_teachers(TeachersJob(shards=shards, out=folder, force=True))
        assert raised.value.exit_code == 4 and _tree(folder) == before
        result = _cli("train-teachers", shards, "--out", folder, "--force")
        _one_line_error(result, 4, str(folder), "not teachers this command writes")
        assert _tree(folder) == before


@pytest.mark.parametrize("kind", ["release", "workspace", "data", "teachers"])
def test_audit_canaries_out_never_lies_inside_a_run_folder(tmp_path, kind):
    from pate.audit_canaries import CanaryConfig, audit_canaries

    make = {"release": _release, "workspace": _workspace, "data": _data_folder}
    folder = make.get(kind, _teachers)(tmp_path / kind)
    before = _tree(folder)
    jobs = dict(
        partition=SimpleNamespace(input=tmp_path / "private.h5"),
        teachers=SimpleNamespace(public=None),
        distill=SimpleNamespace(public=tmp_path / "public.h5"),
    )
    with pytest.raises(PateError, match=f"lies inside the {kind} folder"):
        audit_canaries(CanaryConfig(), out=folder / "audit", **jobs)
    assert _tree(folder) == before


def test_dataset_out_inside_a_release_or_holding_its_input_is_refused(tmp_path):
    release = _release(tmp_path / "release")
    before = _tree(release)
    with pytest.raises(PateError, match="lies inside the release folder"):
        build_dataset("adas", release / "data", vehicles=4)
    _one_line_error(
        _cli("dataset", "adas", "--vehicles", "4", "--out", release / "data"), 2, "lies inside"
    )
    assert _tree(release) == before
    folder = tmp_path / "in"
    folder.mkdir()
    table = folder / "all.csv"
    table.write_text("id,x,y\n" + "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(40)))
    before = _tree(folder)
    with pytest.raises(PateError, match="`out` contains `input`"):
        build_dataset(
            "csv", folder, input=table, label_column="y", individual_column="id", force=True
        )
    result = _cli("dataset", "csv", "--input", table, "--label-column", "y", "--individual-column",
                  "id", "--out", folder, "--force")  # fmt: skip
    _one_line_error(result, 2, "--out contains --input")
    assert _tree(folder) == before


def test_pate_run_stages_obey_the_policy(tmp_path):
    """`pate run` calls the library entry points, so its stages are refused as the commands are:
    a [dataset] out holding its input (it used to overwrite the input), a [partition] out inside a
    release."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "all.csv").write_text("id,x,y\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40)))
    release = _release(tmp_path / "release")
    private = _dataset(tmp_path / "private.h5")
    before = (_tree(folder), _tree(release))
    for table, message in (
        ('[dataset]\nname = "csv"\nout = "in"\ninput = "in/all.csv"\nlabel_column = "y"\n'
         'individual_column = "id"\n', "contains"),
        (f'[partition]\ninput = "{private}"\nout = "release/shards.h5"\nnum_teachers = 2\n',
         "lies inside the release folder"),
    ):  # fmt: skip
        (tmp_path / "pipeline.toml").write_text(table)
        result = _cli("run", tmp_path / "pipeline.toml")
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert (_tree(folder), _tree(release)) == before


def test_build_dataset_refuses_an_existing_folder_unless_forced(tmp_path):
    out = tmp_path / "adas"
    build_dataset("adas", out, vehicles=4, seed=1)
    before = _tree(out)
    with pytest.raises(PateError, match="already exists.*pass `force`") as raised:
        build_dataset("adas", out, vehicles=4, seed=2)
    assert raised.value.exit_code == 4 and _tree(out) == before
    build_dataset("adas", out, vehicles=4, seed=2, force=True)
    assert _tree(out) != before


def test_build_dataset_into_an_empty_folder_keeps_the_folder_and_its_permissions(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    os.chmod(out, 0o1777)
    inode = out.stat().st_ino
    paths = build_dataset("adas", out, vehicles=4)
    assert sorted(p.name for p in paths.values()) == ["private.h5", "public.h5", "test.h5"]
    assert out.stat().st_ino == inode and stat.S_IMODE(out.stat().st_mode) == 0o1777
    assert sorted(os.listdir(tmp_path)) == ["shared"]


def test_inspect_plot_never_replaces_a_file_that_is_not_a_plot(tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("my notes")
    with pytest.raises(PateError, match="already exists and is something else, not png"):
        inspect(_release(tmp_path / "release"), plot=notes)
    assert notes.read_text() == "my notes"


# ----------------------------------------------------------------------------------------------------
# 2. Missing parents


def test_partition_creates_missing_parents_private(tmp_path):
    private = _dataset(tmp_path / "data" / "private.h5")
    out = tmp_path / "run" / "deeper" / "shards.h5"
    partition(PartitionJob(private, out, num_teachers=2))
    assert out.is_file()
    for folder in (tmp_path / "run", tmp_path / "run" / "deeper"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_readme_partition_line_works_in_an_empty_folder(tmp_path, monkeypatch):
    _dataset(tmp_path / "data" / "adas" / "private.h5")
    monkeypatch.chdir(tmp_path)
    result = _cli("partition", "data/adas/private.h5", "--teachers", "2", "--out", "run/shards.h5")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "shards.h5").is_file()


def test_parents_are_never_created_inside_a_run_folder(tmp_path):
    private = _dataset(tmp_path / "private.h5")
    workspace = _workspace(tmp_path / "workspace")
    with pytest.raises(PateError, match="lies inside the workspace folder"):
        partition(PartitionJob(private, workspace / "new" / "shards.h5", num_teachers=2))
    assert not (workspace / "new").exists()


# ----------------------------------------------------------------------------------------------------
# 3. Write failures are one line


@pytest.mark.parametrize("under", ["afile", "/dev/null"])
def test_impossible_outputs_are_found_before_any_work(tmp_path, under, monkeypatch):
    (tmp_path / "afile").write_text("a file")
    monkeypatch.chdir(tmp_path)
    private = _dataset(tmp_path / "private.h5")
    for args in (
        ["dataset", "adas", "--vehicles", "4", "--out", f"{under}/d"],
        ["partition", private, "--teachers", "2", "--out", f"{under}/shards.h5"],
        ["train-teachers", private, "--out", f"{under}/t"],
    ):
        _one_line_error(_cli(*args), 2, under)
    assert sorted(os.listdir(tmp_path)) == ["afile", "private.h5"]


def test_an_unwritable_release_is_found_before_the_first_charge(tmp_path, monkeypatch):
    import pate.io

    real = pate.io._create_temporary

    def read_only(path, parent, *args, **kwargs):
        if Path(parent).name == "public-side":
            raise OSError(errno.EROFS, "Read-only file system")
        return real(path, parent, *args, **kwargs)

    monkeypatch.setattr(pate.io, "_create_temporary", read_only)
    (tmp_path / "public-side").mkdir()
    job = DistillJob(
        teachers=tmp_path / "teachers", public=tmp_path / "public.h5",
        workspace=tmp_path / "workspace", out=tmp_path / "public-side" / "release",
    )  # fmt: skip
    with pytest.raises(PateError, match="release: cannot write \\(Read-only file system\\)") as err:
        label_and_distill(job)
    assert err.value.exit_code == 2
    assert not (tmp_path / "workspace").exists()  # nothing read, nothing charged


def test_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    import pate.io

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pate.io, "_write_image", full)
    result = _cli("dataset", "adas", "--vehicles", "4", "--out", tmp_path / "d")
    _one_line_error(result, 2, "d/private.h5", "cannot write (No space left on device)")
    assert os.listdir(tmp_path) == []


def test_partition_asks_for_the_space_it_needs_first(tmp_path, monkeypatch):
    private = _dataset(tmp_path / "private.h5")
    real = os.statvfs

    def almost_full(path):
        s = real(path)
        return SimpleNamespace(f_bavail=0, f_frsize=s.f_frsize)

    monkeypatch.setattr(os, "statvfs", almost_full)
    result = _cli("partition", private, "--teachers", "2", "--out", tmp_path / "s.h5")
    _one_line_error(result, 2, "s.h5: cannot write (No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["private.h5"]


def test_an_oserror_no_library_code_wrapped_is_one_line(tmp_path, monkeypatch):
    import pate.data

    def broken(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(pate.data, "make_dataset", broken)
    monkeypatch.setattr("cli.dataset.make_dataset", broken)
    result = _cli("dataset", "adas", "--out", tmp_path / "d")
    _one_line_error(result, 2, "x: cannot write (Permission denied)")


def _big_csv(path: Path) -> list[str]:
    """A table whose import does not fit in 2 MiB: 60,000 records of 8 random numbers."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(60_000, 8))
    with open(path, "w") as handle:
        handle.write("person,label," + ",".join(f"x{i}" for i in range(8)) + "\n")
        for row, cells in enumerate(values):
            handle.write(f"{row},{row % 2}," + ",".join(f"{v:.6f}" for v in cells) + "\n")
    return ["csv", "--input", str(path), "--label-column", "label", "--individual-column", "person"]


@pytest.mark.parametrize("dataset", ["adas", "csv"])
def test_a_real_full_disk_ends_in_one_line_not_a_crash(tmp_path, dataset):
    """On a 2 MiB tmpfs (root only; skipped where mounting is refused): `pate dataset adas` used to
    end in an OSError traceback, then a segmentation fault closing the HDF5 file (exit 139). The
    streaming table import writes to disk block by block: its failed file is left open, not closed
    into a crash."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    source = ["adas", "--vehicles", "2000"] if dataset == "adas" else _big_csv(tmp_path / "t.csv")
    try:
        run = subprocess.run(
            [sys.executable, "-m", "cli.main", "dataset", *source, "--out", str(mount / "d")],
            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1],
        )  # fmt: skip
        assert run.returncode == 2, (run.returncode, run.stderr)
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
        assert re.fullmatch(
            rf"error: {re.escape(str(mount / 'd'))}/\w+\.h5: cannot write \(No space left on "
            r"device\), expected a writable output",
            errors[0],
        ), errors[0]
        assert run.stderr.strip().splitlines()[-1] == errors[0]
        assert os.listdir(mount) == []
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


# ----------------------------------------------------------------------------------------------------
# 4. One run per output


def test_a_second_train_teachers_on_one_out_refuses_at_once(tmp_path):
    out = tmp_path / "teachers"
    with output_lock(out, "train-teachers"):
        with pytest.raises(PateError, match="in use by another train-teachers run") as raised:
            train_teachers(TeachersJob(shards=_dataset(tmp_path / "shards.h5"), out=out))
        assert raised.value.exit_code == 4
    assert not out.exists() and os.listdir(tmp_path) == ["shards.h5"]


def test_a_second_label_and_distill_on_one_workspace_refuses_before_any_work(tmp_path):
    workspace = tmp_path / "workspace"
    job = DistillJob(
        teachers=tmp_path / "teachers", public=tmp_path / "public.h5", workspace=workspace,
        out=tmp_path / "release",
    )  # fmt: skip
    with output_lock(workspace, "label-and-distill"):
        with pytest.raises(PateError, match="in use by another label-and-distill run") as raised:
            label_and_distill(job)
        assert raised.value.exit_code == 4
    assert not workspace.exists() and not (tmp_path / "release").exists()


def test_the_lock_is_released_when_its_process_ends(tmp_path):
    out = tmp_path / "teachers"
    code = (
        "import os, sys; from pate.outputs import output_lock\n"
        f"with output_lock({str(out)!r}, 'x'): os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
    with output_lock(out, "x"):
        pass
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------
# The field names


def test_check_output_names_fields_in_backquotes(tmp_path):
    with pytest.raises(PateError, match="`plot` is the same path as `path`"):
        check_output(tmp_path, kinds=("png",), folder=False, inputs={"path": tmp_path}, name="plot")


def test_write_errors_say_the_output_and_the_os_reason_in_one_line(tmp_path):
    from pate.outputs import write_error

    hdf5 = OSError(
        errno.ENOSPC,
        "Can't synchronously write data (file write failed: time = Tue Dec  8 00:59:41 2026\n"
        ", filename = 'x', file descriptor = 3, errno = 28, error message = 'No space left on "
        "device', buf = 0x1, total write size = 14565)",
    )
    tmp = tmp_path / ".shards.h5.123@host.0a1b2c3d.tmp"
    hdf5.filename = str(tmp)
    message = str(write_error(tmp_path / "shards.h5", hdf5))
    assert message == (
        f"{tmp_path / 'shards.h5'}: cannot write (No space left on device), expected a writable "
        "output"
    )
    read = OSError(errno.ENOENT, "No such file or directory", str(tmp_path / "source.csv"))
    assert str(write_error(tmp_path / "out", read)) == (
        f"{tmp_path / 'source.csv'}: No such file or directory"
    )


def test_a_name_too_long_is_one_line_and_leaves_no_parent_behind(tmp_path):
    private = _dataset(tmp_path / "private.h5")
    out = tmp_path / "run" / "deeper" / ("x" * 300 + ".h5")
    result = _cli("partition", private, "--teachers", "2", "--out", out)
    _one_line_error(result, 2, "cannot write (File name too long)")
    assert os.listdir(tmp_path) == ["private.h5"]


def test_a_probe_left_by_a_killed_run_is_removed_by_the_next_write(tmp_path):
    import socket

    dead = subprocess.Popen(["true"])
    dead.wait()
    private = _dataset(tmp_path / "private.h5")
    stale = tmp_path / f".shards.h5.{dead.pid}@{socket.gethostname()}.0a1b2c3d.probe"
    stale.write_bytes(b"")
    partition(PartitionJob(private, tmp_path / "shards.h5", num_teachers=2))
    assert sorted(os.listdir(tmp_path)) == ["private.h5", "shards.h5"]
