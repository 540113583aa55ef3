"""pate.io: paths that must not overlap, atomic writes, schema checks, the dataset round trip."""

from __future__ import annotations

import doctest
import json
import os
import stat

import h5py
import numpy as np
import pytest

import pate.io
from pate.errors import PateError
from pate.io import (
    DATASET_FORMAT,
    Dataset,
    array_fingerprint,
    atomic_dir,
    atomic_file,
    check_features,
    check_labels,
    check_rows,
    decode_ids,
    file_fingerprint,
    json_default,
    open_h5,
    read_dataset,
    refuse_overlap,
    require_format,
    write_dataset,
)


def hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_docstring_examples():
    result = doctest.testmod(pate.io)
    assert result.attempted > 0 and result.failed == 0


# -- refuse_overlap ------------------------------------------------------------------------------------


def refusal(inputs: dict, outputs: dict) -> str:
    with pytest.raises(PateError) as error:
        refuse_overlap(inputs=inputs, outputs=outputs)
    message = str(error.value)
    assert "\n" not in message and error.value.exit_code == 2
    return message


def test_outputs_apart_from_every_input_pass(tmp_path):
    (tmp_path / "run").mkdir()
    refuse_overlap(
        inputs={"teachers": tmp_path / "run" / "teachers", "public": tmp_path / "public.h5"},
        outputs={"workspace": tmp_path / "run" / "ws", "out": tmp_path / "run" / "release"},
    )
    # A shared prefix of the name is not containment: run/ws-old is not inside run/ws.
    refuse_overlap(inputs={"a": tmp_path / "ws"}, outputs={"out": tmp_path / "ws-old"})
    refuse_overlap(inputs={"a": None}, outputs={"out": tmp_path / "x", "other": None})


def test_an_output_that_is_an_input_is_refused(tmp_path):
    message = refusal({"private": tmp_path / "d.h5"}, {"out": tmp_path / "d.h5"})
    assert message == (
        f"{tmp_path / 'd.h5'}: out is the same path as private ({tmp_path / 'd.h5'}), "
        "expected an output apart from every input"
    )
    # The same path spelled differently (a relative path, a '..' detour) is the same path.
    detour = tmp_path / "sub" / ".." / "d.h5"
    assert "is the same path as" in refusal({"private": tmp_path / "d.h5"}, {"out": detour})


def test_an_output_that_holds_or_lies_inside_an_input_is_refused(tmp_path):
    holds = refusal({"teachers": tmp_path / "run" / "teachers"}, {"out": tmp_path / "run"})
    assert "out contains teachers" in holds and holds.endswith("apart from every input")
    inside = refusal({"teachers": tmp_path / "teachers"}, {"out": tmp_path / "teachers" / "rel"})
    assert "out lies inside teachers" in inside


def test_outputs_that_overlap_each_other_are_refused(tmp_path):
    message = refusal({}, {"workspace": tmp_path / "ws", "out": tmp_path / "ws" / "release"})
    assert f"{tmp_path / 'ws'}: workspace contains out" in message
    assert message.endswith("apart from every output")
    assert "is the same path as" in refusal({}, {"workspace": tmp_path, "out": tmp_path})


def test_symbolic_links_are_resolved_before_comparing(tmp_path):
    (tmp_path / "teachers").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "teachers")
    message = refusal({"teachers": tmp_path / "teachers"}, {"out": tmp_path / "link"})
    assert message.startswith(f"{tmp_path / 'link'}: out is the same path as teachers")
    # A link to a folder that holds an input: the output would contain it.
    (tmp_path / "parent-link").symlink_to(tmp_path)
    assert "contains" in refusal(
        {"teachers": tmp_path / "teachers"}, {"out": tmp_path / "parent-link"}
    )
    # An output inside a linked input.
    assert "lies inside" in refusal(
        {"teachers": tmp_path / "link"}, {"out": tmp_path / "teachers" / "release"}
    )
    # A link to a file that does not exist yet resolves to its target too.
    (tmp_path / "dangling").symlink_to(tmp_path / "public.h5")
    assert "is the same path as" in refusal(
        {"public": tmp_path / "public.h5"}, {"out": tmp_path / "dangling"}
    )


# -- atomic writes -------------------------------------------------------------------------------------


def test_atomic_file_renames_into_place_only_on_success(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.") and tmp.exists()
        assert not target.exists()
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert hidden(tmp_path) == []

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise Boom
    assert target.read_bytes() == b"complete"  # the old file is untouched
    assert hidden(tmp_path) == []  # and no temporary is left behind

    with atomic_file(tmp_path / "private.bin", private=True) as tmp:
        tmp.write_bytes(b"secret")
    assert stat.S_IMODE((tmp_path / "private.bin").stat().st_mode) == 0o600


def test_atomic_file_refuses_a_missing_folder(tmp_path):
    with pytest.raises(PateError, match=r"out\.bin: folder .*missing does not exist"):
        with atomic_file(tmp_path / "missing" / "out.bin"):
            pass
    assert not (tmp_path / "missing").exists()


def test_atomic_dir_success_and_failure(tmp_path):
    folder = tmp_path / "release"
    with atomic_dir(folder) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".release.")
        (tmp / "a.txt").write_text("one")
        assert not folder.exists()
    assert sorted(os.listdir(folder)) == ["a.txt"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755

    with pytest.raises(ZeroDivisionError):
        with atomic_dir(tmp_path / "failed") as tmp:
            (tmp / "a.txt").write_text("half")
            1 / 0  # noqa: B018
    assert not (tmp_path / "failed").exists()
    assert hidden(tmp_path) == []

    with atomic_dir(tmp_path / "private", private=True) as tmp:
        (tmp / "x").write_text("x")
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700


def test_atomic_dir_replaces_only_with_force_and_only_when_complete(tmp_path):
    folder = tmp_path / "release"
    with atomic_dir(folder) as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(PateError, match="already exists and holds another run") as error:
        with atomic_dir(folder) as tmp:
            pytest.fail("the block must not run")
    assert error.value.exit_code == 4
    # A forced replacement that fails keeps the old folder.
    with pytest.raises(RuntimeError):
        with atomic_dir(folder, force=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError
    assert sorted(os.listdir(folder)) == ["old.txt"]
    assert hidden(tmp_path) == []
    # One that succeeds replaces it whole.
    with atomic_dir(folder, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(os.listdir(folder)) == ["new.txt"]
    assert hidden(tmp_path) == []


def test_atomic_dir_never_replaces_a_folder_holding_a_ledger(tmp_path):
    folder = tmp_path / "run"
    (folder / "deep" / "ws").mkdir(parents=True)
    (folder / "deep" / "ws" / "ledger.jsonl").write_text("{}\n")
    with pytest.raises(PateError, match=r"holds a privacy ledger \(ledger\.jsonl\)") as error:
        with atomic_dir(folder, force=True):
            pytest.fail("the block must not run")
    assert error.value.exit_code == 4
    assert (folder / "deep" / "ws" / "ledger.jsonl").read_text() == "{}\n"


def test_atomic_dir_refuses_a_missing_parent(tmp_path):
    with pytest.raises(PateError, match="does not exist"):
        with atomic_dir(tmp_path / "no" / "release"):
            pytest.fail("the block must not run")
    assert not (tmp_path / "no").exists()


# -- schema checks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([[0, 1]]), r"has shape \(1, 2\), expected \(N,\)"),
        (np.array([0.0, 1.5]), "holds non-integer values"),
        (np.array([0.0, np.nan]), "holds non-integer values"),
        (np.array(["a", "b"]), "has dtype <U1, expected integers"),
        (np.array([0, 3]), r"holds 3, expected labels in 0\.\.2"),
        (np.array([-1, 0]), r"holds -1, expected labels in 0\.\.2"),
    ],
)
def test_check_labels_refuses(labels, message):
    with pytest.raises(PateError, match=rf"^f\.h5: dataset 'labels' {message}"):
        check_labels(labels, 3, "f.h5")


def test_check_labels_accepts_integral_floats_and_unsigned():
    out = check_labels(np.array([0.0, 2.0]), 3, "f.h5")
    assert out.dtype == np.int64 and out.tolist() == [0, 2]
    assert check_labels(np.array([1, 2], np.uint8), 3, "f.h5").dtype == np.int64
    assert check_labels(np.array([], np.int64), 3, "f.h5").tolist() == []


def test_check_features_names_the_first_bad_record():
    features = np.zeros((5, 2, 2), np.float32)
    features[3, 1, 0] = np.inf
    features[4, 0, 0] = np.nan
    with pytest.raises(PateError, match=r"^f\.h5: dataset 'features' has NaN or inf in record 13,"):
        check_features(features, "f.h5", start=10)
    check_features(np.zeros((2, 3), np.uint8), "f.h5")
    check_features(np.ones((2, 3), np.float32), "f.h5")
    with pytest.raises(PateError, match="has dtype <U1, expected float32 or uint8"):
        check_features(np.array([["a"]]), "f.h5")


def test_decode_ids():
    assert decode_ids(np.array([3, 1], np.int32)).dtype == np.int64
    decoded = decode_ids(np.array([b"car-1", "car-2"], dtype=object))
    assert decoded.dtype.kind == "U" and decoded.tolist() == ["car-1", "car-2"]
    assert decode_ids(np.array([b"a", b"bc"])).tolist() == ["a", "bc"]
    with pytest.raises(PateError) as error:
        decode_ids(np.array([b"ok", b"\xff\xfe"], dtype=object), path="p.h5", column="vehicle")
    assert str(error.value) == (
        "p.h5: dataset 'vehicle' holds bytes that are not UTF-8 in record 1, "
        "expected UTF-8 strings or integers"
    )


def test_open_h5_and_require_format_name_the_file(tmp_path):
    with pytest.raises(PateError, match=r"missing\.h5: no such dataset file"):
        with open_h5(tmp_path / "missing.h5", "dataset file"):
            pass
    with pytest.raises(PateError, match="is a folder, expected an HDF5 file"):
        with open_h5(tmp_path):
            pass
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(PateError, match="not an HDF5 file, expected an HDF5 votes file"):
        with open_h5(tmp_path / "text.h5", "votes file"):
            pass
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.attrs["format"] = "something-else"
        handle.create_dataset("features", data=np.zeros((2, 1)))
        handle.create_dataset("labels", data=np.zeros((3,)))
    with open_h5(tmp_path / "other.h5") as handle:
        with pytest.raises(
            PateError, match="'format' is 'something-else', expected 'pate-dataset'"
        ):
            require_format(handle, "other.h5", DATASET_FORMAT)
        with pytest.raises(PateError, match="dataset 'labels' has 3 rows, expected 2"):
            check_rows(handle, "other.h5", "labels")


# -- datasets ------------------------------------------------------------------------------------------


def sample(ids) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        features=rng.normal(size=(len(ids), 3, 2)).astype(np.float32),
        labels=rng.integers(0, 4, len(ids)),
        individual_id=np.asarray(ids),
        num_classes=4,
        class_names=("a", "b", "c", "d"),
        feature_names=("x", "y", "z"),
        name="toy",
        split="private",
        extra_attrs={"source": "test"},
    )


@pytest.mark.parametrize("ids", [[7, 7, 9, 11], ["car-1", "car-1", "car-é", "car-3"]])
def test_dataset_round_trip(tmp_path, ids):
    data = sample(ids)
    path = tmp_path / "data.h5"
    write_dataset(path, data, private=True, extra_arrays={"evaluation_labels": np.arange(4)})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = read_dataset(path, require_labels=True)
    np.testing.assert_array_equal(back.features, data.features)
    assert back.features.dtype == np.float32 and back.labels.dtype == np.int64
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.individual_id.tolist() == list(ids)
    assert back.individual_id.dtype.kind == ("i" if isinstance(ids[0], int) else "U")
    assert (back.num_classes, back.class_names, back.feature_names) == (
        4,
        data.class_names,
        ("x", "y", "z"),
    )
    assert (back.name, back.split, back.path) == ("toy", "private", str(path))
    assert len(back) == 4 and back.feature_shape == (3, 2)
    with h5py.File(path) as handle:
        assert handle.attrs["format"] == DATASET_FORMAT and handle.attrs["version"] == 1
        assert handle.attrs["source"] == "test"
        assert handle["evaluation_labels"][()].tolist() == [0, 1, 2, 3]
    assert hidden(tmp_path) == []


def test_an_unlabelled_dataset_round_trips_and_is_refused_where_labels_are_needed(tmp_path):
    data = Dataset(
        features=np.arange(6, dtype=np.uint8).reshape(3, 2),
        labels=None,
        individual_id=np.arange(3),
        num_classes=2,
        split="public",
    )
    write_dataset(tmp_path / "public.h5", data)
    assert stat.S_IMODE((tmp_path / "public.h5").stat().st_mode) == 0o644
    back = read_dataset(tmp_path / "public.h5")
    assert back.labels is None and back.features.dtype == np.uint8
    with pytest.raises(PateError, match=r"missing dataset 'labels', expected labels in 0\.\.1"):
        read_dataset(tmp_path / "public.h5", require_labels=True)
    with pytest.raises(PateError, match="missing id column 'vehicle'"):
        read_dataset(tmp_path / "public.h5", individual_column="vehicle")


def test_dataset_rows_must_agree():
    with pytest.raises(PateError, match="labels has 2 rows, expected 3"):
        Dataset(np.zeros((3, 1)), np.zeros(2, np.int64), np.arange(3), num_classes=2)
    with pytest.raises(PateError, match="individual_id has 4 rows, expected 3"):
        Dataset(np.zeros((3, 1)), None, np.arange(4), num_classes=2)


# -- fingerprints and JSON -----------------------------------------------------------------------------


def test_fingerprints(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert file_fingerprint(tmp_path / "a") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # SHA-256 of "abc"
    )
    x = np.arange(6, dtype=np.int64)
    assert array_fingerprint(x) == array_fingerprint(x.copy())
    assert array_fingerprint(x) != array_fingerprint(x.reshape(2, 3))  # the shape counts
    assert array_fingerprint(x) != array_fingerprint(x.astype(np.int32))  # and the dtype
    assert array_fingerprint(x, x) != array_fingerprint(x)


def test_json_default_serialises_numpy_values():
    value = {
        "flag": np.bool_(True),
        "count": np.int64(3),
        "ratio": np.float32(0.5),
        "array": np.arange(3),
    }
    assert json.loads(json.dumps(value, default=json_default)) == {
        "flag": True,
        "count": 3,
        "ratio": 0.5,
        "array": [0, 1, 2],
    }
    with pytest.raises(TypeError, match="set is not JSON-serialisable"):
        json.dumps({"s": {1}}, default=json_default)


@pytest.mark.parametrize("writer", ["file", "dir", "dir-replacing"])
def test_an_interrupt_just_after_the_temporary_is_created_leaves_nothing(
    tmp_path, monkeypatch, writer
):
    """SIGINT and SIGTERM raise in the main thread at the first bytecode after a system call: the
    one that creates the temporary too. That must already be inside the cleanup's reach."""
    if writer == "dir-replacing":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "previous.txt").write_text("previous")
    real = {"open": os.open, "mkdir": os.mkdir}
    fired = []

    def interrupted(name):
        def call(target, *args, **kwargs):
            result = real[name](target, *args, **kwargs)
            if os.path.basename(target).startswith(".out.") and not fired:
                fired.append(target)
                raise KeyboardInterrupt  # as the signal handler would, right after the call
            return result

        return call

    monkeypatch.setattr(os, "open", interrupted("open"))
    monkeypatch.setattr(os, "mkdir", interrupted("mkdir"))
    with pytest.raises(KeyboardInterrupt):
        if writer == "file":
            with atomic_file(tmp_path / "out"):
                pytest.fail("the block must not run")
        else:
            with atomic_dir(tmp_path / "out", force=True):
                pytest.fail("the block must not run")
    monkeypatch.undo()
    assert fired and hidden(tmp_path) == []
    if writer == "dir-replacing":
        assert (tmp_path / "out" / "previous.txt").read_text() == "previous"


def test_an_interrupt_between_the_renames_of_a_replacement_puts_the_old_folder_back(
    tmp_path, monkeypatch
):
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "student.h5").write_text("previous")
    real = os.replace
    calls = []

    def replace(source, target):
        calls.append(target)
        real(source, target)
        if len(calls) == 1:  # the old folder was moved aside; the new one is not in place yet
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(folder, force=True) as tmp:
            (tmp / "student.h5").write_text("new")
            monkeypatch.setattr(os, "replace", replace)
    monkeypatch.undo()
    assert (folder / "student.h5").read_text() == "previous"
    assert hidden(tmp_path) == []
