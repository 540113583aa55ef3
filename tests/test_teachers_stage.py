"""The teachers stage as one library call: the command's teachers file, its refusals, its imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from teacher_data import toy_dataset, toy_shards, write_shards

from cli.main import app as cli
from pate import TeachersJob, train_teachers
from pate.errors import PateError
from pate.teachers import Progress, TrainConfig, load_teachers, open_shards

ROOT = Path(__file__).resolve().parents[1]
SIZES = [40, 25, 33, 10, 50]
TRAIN = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, strategy="vmap", teacher_chunk=2)
CLI_TRAIN = ["--epochs", "2", "--batch-size", "8", "--learning-rate", "0.01", "--strategy", "vmap"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stage")
    toy_shards(folder / "shards.h5", SIZES)
    toy_dataset(folder / "test.h5", 60, (6,))
    return folder


def file_contents(path: Path) -> tuple[dict, dict]:
    """Every dataset and attribute of a teachers file, but the wall-clock ones."""
    datasets, attrs = {}, {}
    with h5py.File(path) as handle:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name != "report/seconds":
                datasets[name] = obj[()]

        handle.visititems(visit)
        attrs = {k: v for k, v in handle.attrs.items() if k != "seconds"}
    return datasets, attrs


def test_the_library_call_writes_the_commands_teachers_file(data, tmp_path):
    shards, test = data / "shards.h5", data / "test.h5"
    seen: list[Progress] = []
    job = TeachersJob(shards=shards, out=tmp_path / "lib", test=test, hidden=(16,), train=TRAIN)
    result = train_teachers(job, progress=seen.append)
    assert result.path == tmp_path / "lib" / "teachers.h5" and result.num_teachers == 5
    assert result.model == "mlp" and result.ensemble.strategy == "vmap"
    assert seen[-1].steps_done == seen[-1].steps_total == result.ensemble.steps.sum()
    assert not (tmp_path / "lib.checkpoints").exists()  # removed after success
    args = [str(shards), "--out", str(tmp_path / "cli"), "--test", str(test), "--hidden", "16"]
    run = CliRunner().invoke(cli, ["train-teachers", *args, *CLI_TRAIN, "--teacher-chunk", "2"])
    assert run.exit_code == 0, run.output
    lib_data, lib_attrs = file_contents(result.path)
    cli_data, cli_attrs = file_contents(tmp_path / "cli" / "teachers.h5")
    assert lib_attrs == cli_attrs and lib_data.keys() == cli_data.keys()
    for name, value in lib_data.items():
        np.testing.assert_array_equal(value, cli_data[name], err_msg=name)
    np.testing.assert_array_equal(load_teachers(result.path).accuracy, result.accuracy)
    assert result.summary()["accuracy_mean"] == pytest.approx(result.accuracy.mean())


def test_defaults_are_the_commands():
    job = TeachersJob(shards="s.h5", out="t")
    assert job.train == TrainConfig() and (job.train.epochs, job.train.learning_rate) == (40, 3e-3)
    assert job.checkpoint_path == Path("t.checkpoints") and job.model == "auto"
    assert TeachersJob(shards="s.h5", out="t", checkpoints=False).checkpoint_path is None


def test_a_bad_job_is_refused_naming_the_field():
    with pytest.raises(PateError, match="`strategy` public: needs `public`"):
        TeachersJob(shards="s.h5", out="t", train=TrainConfig(strategy="public"))
    with pytest.raises(PateError, match="`public`: only used by `strategy` public or auto"):
        TeachersJob(shards="s.h5", out="t", public="p.h5", train=TrainConfig(strategy="loop"))
    with pytest.raises(PateError, match="`model`"):
        TeachersJob(shards="s.h5", out="t", model="cnn-huge")
    with pytest.raises(PateError, match="`checkpoint_every`"):
        TeachersJob(shards="s.h5", out="t", checkpoint_every=-1)


def test_an_output_that_is_an_input_is_refused(data, tmp_path):
    shards = tmp_path / "shards.h5"
    shards.write_bytes((data / "shards.h5").read_bytes())
    before = shards.read_bytes()
    # --out the shards file itself, or the run folder that holds it (which --force would replace).
    for out, message in ((shards, "is a file"), (tmp_path, "out contains shards")):
        for extra in ([], ["--force"]):
            args = ["train-teachers", str(shards), "--out", str(out), *CLI_TRAIN, *extra]
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 2 and message in result.output, result.output
            assert "Traceback" not in result.output
    assert shards.read_bytes() == before
    job = TeachersJob(shards=shards, out=tmp_path / "t", checkpoint_dir=tmp_path / "t")
    with pytest.raises(PateError, match="out is the same path as checkpoints"):
        train_teachers(job)
    with pytest.raises(PateError, match="`out` is the same path as `shards`"):
        train_teachers(TeachersJob(shards=shards, out=shards, force=True))
    assert shards.read_bytes() == before


def test_library_fields_are_said_as_flags(data, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["train-teachers", str(data / "shards.h5"), "--out", str(tmp_path / "t")]
        + ["--strategy", "loop", "--public", str(data / "test.h5")],
    )
    assert result.exit_code == 2
    assert (
        "--public: only used by --strategy public or auto, found --strategy loop" in result.output
    )


def test_opening_shards_reverifies_one_individual_one_shard(tmp_path):
    x = np.zeros((3, 6), np.float32)
    path = write_shards(tmp_path / "split.h5", [x, x], [np.zeros(3), np.zeros(3)], 3)
    with h5py.File(path, "a") as handle:
        handle["individual_id"][...] = [0, 1, 2, 3, 1, 5]  # individual 1 in shards 0 and 1
    with pytest.raises(PateError, match="individual 1 has records in shards 0 and 1"):
        open_shards(path)


def test_the_commands_defaults_import_no_jax():
    code = "import sys, cli.train_teachers, pate; assert 'jax' not in sys.modules, 'jax imported'"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


def test_teachers_are_shown_against_the_majority_rate_and_warned_about(data, tmp_path):
    from pate.io import read_dataset, write_dataset

    test = read_dataset(data / "test.h5")
    labels = np.bincount(test.labels, minlength=test.num_classes)
    job = TeachersJob(
        shards=data / "shards.h5", out=tmp_path / "a", test=data / "test.h5", train=TRAIN
    )
    result = train_teachers(job)
    assert result.majority_rate == pytest.approx(labels.max() / len(test.labels))
    assert result.summary()["test_majority_rate"] == result.majority_rate
    # A test set of one class: always predicting it is right every time; no teacher beats that.
    one = type(test)(**{**test.__dict__, "labels": np.zeros_like(test.labels), "path": ""})
    write_dataset(tmp_path / "one.h5", one)
    args = [
        str(data / "shards.h5"),
        "--out",
        str(tmp_path / "b"),
        "--test",
        str(tmp_path / "one.h5"),
    ]
    run = CliRunner().invoke(cli, ["train-teachers", *args, *CLI_TRAIN])
    assert run.exit_code == 0, run.output
    assert "does not beat always predicting the test set's most common class (1.0000)" in run.output
