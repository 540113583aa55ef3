"""Hostile input files: each is refused with a one-line ``error:`` (exit 2), no traceback, nothing written.

The files are built with h5py in ``tmp_path``; a dataset that declares 10**10 rows is created chunked
and never written, so it stays a few KB on disk while claiming far more than any memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.errors import PateError
from pate.io import available_memory, read_dataset

HUGE = 10**10


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_refused(result, *fragments: str) -> None:
    """Exit 2, one line starting with ``error:``, no traceback, and the message names ``fragments``."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ") and result.output.strip().count("\n") == 0, (
        result.output
    )
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def assert_empty(folder: Path) -> None:
    """Nothing written, not even a temporary file."""
    assert sorted(p.name for p in folder.iterdir()) == []


def write_h5(path: Path, *, attrs: dict | None = None, **datasets) -> Path:
    with h5py.File(path, "w") as handle:
        handle.attrs.update(
            {"format": "pate-dataset", "version": 1, "num_classes": 2, **(attrs or {})}
        )
        for name, value in datasets.items():
            if isinstance(value, tuple):  # (shape, dtype): declared, never written
                shape, dtype = value
                handle.create_dataset(name, shape=shape, dtype=dtype, chunks=True)
            else:
                handle.create_dataset(name, data=value)
    return path


def small_dataset(path: Path, rows: int = 10, **overrides) -> Path:
    datasets = {
        "features": np.random.default_rng(0).normal(size=(rows, 3)).astype(np.float32),
        "labels": np.arange(rows) % 2,
        "individual_id": np.arange(rows),
    }
    attrs = overrides.pop("attrs", None)
    datasets.update(overrides)
    return write_h5(path, attrs=attrs, **datasets)


def huge_dataset(path: Path, *, labels: bool = True) -> Path:
    available = available_memory()
    if available is None or available >= 8 * HUGE:
        pytest.skip("the declared 10**10 rows would fit in this machine's memory")
    datasets = {"features": ((HUGE, 3), "f4"), "individual_id": ((HUGE,), "i8")}
    if labels:
        datasets["labels"] = ((HUGE,), "i8")
    return write_h5(path, **datasets)


# ----------------------------------------------------------------------------------------------------
# pate partition


def _huge(path):
    huge_dataset(path)
    return "more than the memory available"


def _ids_fixed_bytes(path):
    ids = np.array([b"\xff\xfe"] + [b"a%d" % i for i in range(9)], dtype="S3")
    small_dataset(path, individual_id=ids)
    return "'individual_id' holds bytes that are not UTF-8"


def _ids_vlen_bytes(path):
    small_dataset(path, individual_id=np.zeros(10, np.int64))
    with h5py.File(path, "a") as handle:
        del handle["individual_id"]
        column = handle.create_dataset("individual_id", (10,), dtype=h5py.vlen_dtype(bytes))
        for i in range(10):
            column[i] = b"\xff\xfe" if i == 3 else b"id%d" % i
    return "'individual_id' holds bytes that are not UTF-8"


def _labels_short(path):
    small_dataset(path, labels=np.arange(9) % 2)
    return "dataset 'labels' has 9 rows, expected 10"


def _num_classes_text(path):
    small_dataset(path, attrs={"num_classes": "ten"})
    return "attribute 'num_classes' is 'ten', expected an integer >= 2"


@pytest.mark.parametrize(
    "build", [_huge, _ids_fixed_bytes, _ids_vlen_bytes, _labels_short, _num_classes_text]
)
def test_partition_refuses_hostile_private_file(tmp_path, build):
    message = build(tmp_path / "private.h5")
    (tmp_path / "out").mkdir()
    result = invoke(
        "partition", tmp_path / "private.h5", "--teachers", 2, "--out", tmp_path / "out" / "s.h5"
    )
    assert_refused(result, str(tmp_path / "private.h5"), message)
    assert_empty(tmp_path / "out")


def test_huge_declared_file_stays_small(tmp_path):
    path = huge_dataset(tmp_path / "huge.h5")
    assert path.stat().st_size < 100_000


# ----------------------------------------------------------------------------------------------------
# read_dataset (the public set of label-and-distill, the input of predict)


def test_read_dataset_refuses_a_declared_size_beyond_memory(tmp_path):
    path = huge_dataset(tmp_path / "public.h5", labels=False)
    with pytest.raises(PateError, match="more than the memory available") as info:
        read_dataset(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "'features'" in str(info.value)


def test_read_dataset_refuses_zero_records(tmp_path):
    path = small_dataset(tmp_path / "empty.h5", rows=0)
    with pytest.raises(PateError, match="expected at least one record"):
        read_dataset(path)


def test_read_dataset_refuses_short_labels_naming_the_dataset(tmp_path):
    path = small_dataset(tmp_path / "d.h5", labels=np.arange(9) % 2)
    with pytest.raises(PateError, match=r"dataset 'labels' has 9 rows, expected 10"):
        read_dataset(path)


def test_available_memory_is_positive():
    assert available_memory() is None or available_memory() > 0


@pytest.fixture(scope="module")
def teachers(tiny_adas, tmp_path_factory):
    out = tmp_path_factory.mktemp("teachers")
    for args in (
        ["partition", tiny_adas["private"], "--teachers", 6, "--out", out / "shards.h5"],
        ["train-teachers", out / "shards.h5", "--out", out / "teachers"]
        + ["--epochs", 3, "--hidden", 16],
    ):
        result = invoke(*args)
        assert result.exit_code == 0, (result.output, result.exception)
    return out / "teachers"


@pytest.mark.parametrize("rows", [0, HUGE])
def test_label_and_distill_refuses_hostile_public_set(teachers, tmp_path, rows):
    if rows == HUGE:
        # tiny_adas's public set has 6 features
        write_h5(
            tmp_path / "public.h5",
            attrs={"num_classes": 3},
            features=((HUGE, 6), "f4"),
            individual_id=((HUGE,), "i8"),
        )
        message = "more than the memory available"
    else:
        write_h5(
            tmp_path / "public.h5",
            attrs={"num_classes": 3},
            features=np.zeros((0, 6), np.float32),
            individual_id=np.zeros(0, np.int64),
        )
        message = "expected at least one record"
    (tmp_path / "out").mkdir()
    result = invoke(
        "label-and-distill",
        teachers,
        "--public",
        tmp_path / "public.h5",
        "--workspace",
        tmp_path / "out" / "ws",
        "--out",
        tmp_path / "out" / "release",
        "--noise-seed",
        1,
    )
    assert_refused(result, str(tmp_path / "public.h5"), message)
    assert_empty(tmp_path / "out")


# ----------------------------------------------------------------------------------------------------
# pate predict


@pytest.fixture(scope="module")
def student_file(tmp_path_factory) -> Path:
    """A valid student bundle of an untrained 3 -> 4 -> 2 MLP (weights from the model's init)."""
    import jax

    from pate.export import save_student
    from pate.models import ModelConfig, Preprocessing
    from pate.student import TrainedModel

    model = ModelConfig("mlp", (3,), 2, hidden=(4,))
    params = model.build().init(jax.random.key(0), np.zeros((1, 3), np.float32))["params"]
    student = TrainedModel(
        params=jax.tree.map(np.asarray, params),
        model=model,
        preprocessing=Preprocessing(1.0, np.zeros(3, np.float32), np.ones(3, np.float32)),
    )
    path = tmp_path_factory.mktemp("student") / "student.h5"
    save_student(path, student, class_names=("a", "b"), privacy={"epsilon": 1.0}, statement="s")
    return path


def corrupt(source: Path, target: Path, change) -> Path:
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "a") as handle:
        change(handle)
    return target


def _set_dataset(name, value):
    def change(handle):
        del handle[name]
        handle[name] = value

    return change


def _set_attr(name, value):
    return lambda handle: handle.attrs.__setitem__(name, value)


STUDENT_DAMAGE = {
    "no params": (lambda h: h.__delitem__("params"), "missing group 'params'"),
    "no privacy": (lambda h: h.attrs.__delitem__("privacy"), "missing attribute 'privacy'"),
    "privacy not JSON": (_set_attr("privacy", "{oops"), "attribute 'privacy' is not valid JSON"),
    "privacy a list": (_set_attr("privacy", "[1, 2]"), "attribute 'privacy' is a list"),
    "model not JSON": (_set_attr("model", "not json"), "attribute 'model' is not valid JSON"),
    "model missing a key": (
        _set_attr("model", json.dumps({"kind": "mlp"})),
        "attribute 'model'",
    ),
    "kernel of the wrong shape": (
        _set_dataset("params/Dense_0/kernel", np.zeros((3, 5), np.float32)),
        "dataset 'params/Dense_0/kernel' has shape (3, 5), expected (3, 4)",
    ),
    "missing bias": (
        lambda h: h.__delitem__("params/Dense_1/bias"),
        "missing dataset 'params/Dense_1/bias'",
    ),
    "num_classes contradicts": (
        _set_attr("num_classes", 5),
        "attribute 'num_classes' is 5, expected 2",
    ),
    "NaN weights": (
        _set_dataset("params/Dense_1/kernel", np.full((4, 2), np.nan, np.float32)),
        "dataset 'params/Dense_1/kernel' holds NaN or inf",
    ),
    "std zero": (
        _set_dataset("preprocessing/std", np.array([1, 0, 1], np.float32)),
        "dataset 'preprocessing/std' holds 0.0, expected finite values > 0",
    ),
    "std inf": (
        _set_dataset("preprocessing/std", np.array([1, np.inf, 1], np.float32)),
        "dataset 'preprocessing/std' holds inf, expected finite values > 0",
    ),
    "mean NaN": (
        _set_dataset("preprocessing/mean", np.array([0, np.nan, 0], np.float32)),
        "dataset 'preprocessing/mean' holds NaN or inf",
    ),
    "mean of the wrong shape": (
        _set_dataset("preprocessing/mean", np.zeros(4, np.float32)),
        "dataset 'preprocessing/mean' has shape (4,)",
    ),
}


@pytest.fixture()
def predict_input(tmp_path) -> Path:
    return small_dataset(tmp_path / "input.h5", rows=5)


def test_a_valid_student_predicts(student_file, predict_input, tmp_path):
    result = invoke("predict", student_file, predict_input, "--out", tmp_path / "p.h5")
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / "p.h5").exists()


@pytest.mark.parametrize("damage", list(STUDENT_DAMAGE))
def test_predict_refuses_a_damaged_student(student_file, predict_input, tmp_path, damage):
    change, message = STUDENT_DAMAGE[damage]
    student = corrupt(student_file, tmp_path / "student.h5", change)
    (tmp_path / "out").mkdir()
    result = invoke("predict", student, predict_input, "--out", tmp_path / "out" / "p.h5")
    assert_refused(result, str(student), message)
    assert_empty(tmp_path / "out")


def test_predict_refuses_an_input_of_zero_rows(student_file, tmp_path):
    data = small_dataset(tmp_path / "input.h5", rows=0)
    (tmp_path / "out").mkdir()
    result = invoke("predict", student_file, data, "--out", tmp_path / "out" / "p.h5")
    assert_refused(result, str(data), "expected at least one record")
    assert_empty(tmp_path / "out")


# ----------------------------------------------------------------------------------------------------
# pate inspect


def make_workspace(folder: Path, votes: np.ndarray) -> Path:
    """A workspace as label-and-distill leaves it: a ledger over ``votes`` and the votes file."""
    from pate.aggregate import GNMaxConfig
    from pate.io import array_fingerprint
    from pate.labeling import BudgetConfig, run_labeling
    from pate.noise import SeededNoise
    from pate.records import RunHeader

    folder.mkdir(mode=0o700)
    config = GNMaxConfig(2.0)
    header = RunHeader(
        run_id="r",
        teachers_sha256="t",
        public_sha256="p",
        votes_sha256=array_fingerprint(votes),
        num_queries=int(len(votes)),
        num_classes=int(votes.shape[1]),
        num_teachers=int(votes.sum(axis=1).max()),
        aggregator=config.to_dict(),
        delta=1e-5,
        max_epsilon=50.0,
        orders="default",
        conversion="improved",
        noise="seeded(seed=1), NOT PRIVATE",
        noise_private=False,
        noise_seed=1,
        stages=None,
    )
    run_labeling(
        votes,
        config,
        BudgetConfig(max_epsilon=50.0),
        folder / "ledger.jsonl",
        noise=SeededNoise(1),
        noise_seed=1,
        header=header,
    )
    with h5py.File(folder / "votes.h5", "w") as handle:
        handle.attrs.update({"format": "pate-votes", "version": 1})
        handle.create_dataset("votes", data=votes)
    os.chmod(folder / "votes.h5", 0o600)
    return folder


VOTES = np.array([[5, 1, 0], [2, 2, 2], [0, 6, 0], [1, 0, 5]] * 3, np.int64)


@pytest.fixture()
def workspace(tmp_path) -> Path:
    return make_workspace(tmp_path / "ws", VOTES)


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _no_votes_dataset(path: Path) -> None:
    with h5py.File(path, "w") as handle:
        handle.attrs["format"] = "pate-votes"
        handle["other"] = np.zeros(3)


def _fewer_rows(path: Path) -> None:
    with h5py.File(path, "w") as handle:
        handle.attrs["format"] = "pate-votes"
        handle["votes"] = VOTES[:2]


def _one_class(path: Path) -> None:
    with h5py.File(path, "w") as handle:
        handle.attrs["format"] = "pate-votes"
        handle["votes"] = VOTES[:, :1]


def _other_run(path: Path) -> None:
    with h5py.File(path, "w") as handle:
        handle.attrs["format"] = "pate-votes"
        handle["votes"] = VOTES[::-1]


@pytest.mark.parametrize(
    "damage", [_random_bytes, _no_votes_dataset, _fewer_rows, _one_class, _other_run]
)
def test_inspect_with_damaged_votes_shows_the_table_and_refuses_the_plot(
    workspace, tmp_path, damage
):
    damage(workspace / "votes.h5")
    result = invoke("inspect", workspace)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "queries seen" in result.output
    assert json.loads(invoke("inspect", workspace, "--json").output)["queries_seen"] == len(VOTES)
    (tmp_path / "out").mkdir()
    result = invoke("inspect", workspace, "--plot", tmp_path / "out" / "plot.png")
    assert_refused(result, str(workspace / "votes.h5"))
    assert_empty(tmp_path / "out")


def test_inspect_as_one_call(workspace, tmp_path):
    from pate.inspection import inspect

    inspection = inspect(workspace, plot=tmp_path / "plot.png")
    assert inspection.kind == "workspace" and inspection.report["queries_seen"] == len(VOTES)
    summary = inspection.summary()
    assert list(summary)[-2:] == ["kind", "statement"] and summary["kind"] == "workspace"
    assert oct(os.stat(tmp_path / "plot.png").st_mode & 0o777) == "0o600"
    with pytest.raises(PateError, match="`plot` lies inside `path`"):
        inspect(workspace, plot=workspace / "plot.png")
    _no_votes_dataset(workspace / "votes.h5")
    with pytest.raises(PateError, match=r"missing dataset 'votes'.*needed for `plot`"):
        inspect(workspace, plot=tmp_path / "other.png")
    assert not (tmp_path / "other.png").exists()


def test_workspace_plot_is_private_and_works_with_one_query(tmp_path):
    workspace = make_workspace(tmp_path / "ws", np.array([[3, 1]], np.int64))
    result = invoke("inspect", workspace, "--plot", tmp_path / "plot.png")
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert oct(os.stat(tmp_path / "plot.png").st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "ws"]


@pytest.fixture()
def release(workspace, tmp_path) -> Path:
    from pate.inspection import inspect_path

    report = dict(inspect_path(workspace).report)
    report.update(epsilon_data_dependent=None, order_data_dependent=None, stop_reason="budget")
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "privacy.json").write_text(json.dumps(report))
    return folder


def test_release_plot_is_public(release, tmp_path):
    result = invoke("inspect", release, "--plot", tmp_path / "plot.png")
    assert result.exit_code == 0, (result.output, result.exception)
    assert oct(os.stat(tmp_path / "plot.png").st_mode & 0o777) == "0o644"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("epsilon"), "missing key 'epsilon'"),
        (lambda r: r.pop("parameters"), "missing key 'parameters'"),
        (lambda r: r.update(delta="small"), "key 'delta' is 'small', expected a number"),
        (lambda r: [1, 2], "is a list, expected a JSON object"),
    ],
)
@pytest.mark.parametrize("plot", [False, True])
def test_inspect_refuses_a_damaged_release_report(release, tmp_path, change, message, plot):
    report = json.loads((release / "privacy.json").read_text())
    changed = change(report)
    report = changed if isinstance(changed, list) else report
    (release / "privacy.json").write_text(json.dumps(report))
    (tmp_path / "out").mkdir()
    args = ["--plot", tmp_path / "out" / "plot.png"] if plot else []
    result = invoke("inspect", release, *args)
    assert_refused(result, str(release / "privacy.json"), message)
    assert_empty(tmp_path / "out")
