"""``csv``, ``npz``, ``h5``: import your own data and split it into private, public and test by individual.

The input holds features, a label column and, normally, an individual-id column:

* **CSV**: a header line, then one record per line. ``label_column`` and ``individual_column`` name
  columns; the features are ``feature_columns`` (default: every other column), all numeric.
* **NPZ** (``numpy.savez``): arrays named ``features_array`` (``(N, ...)``), ``label_column`` and
  ``individual_column`` (``(N,)`` each). Pickled object arrays are refused.
* **HDF5**: the same, as datasets at the file's top level (a ``pate-dataset`` file qualifies).

Labels may be non-negative integers (used as class ids, ``num_classes = max + 1``) or strings (mapped
to class ids in sorted order, the names kept as ``class_names``). Features are stored as ``uint8`` when
they are ``uint8`` (or booleans), else as ``float32``; NaN or infinite values are refused.

The split (:func:`pate.data.splits.split_by_individual`) puts every individual's records in exactly one
of private, public and test, which is what PATE's per-individual guarantee needs (design, privacy
rules 1 and 8): the neighbouring relation is adding or removing one individual, all of whose records
then sit in one shard of the private file and in neither the public nor the test file. Without an
individual column, pass ``records_are_individuals=True``: each record is then treated as its own
individual (record-level privacy), which is only right if no person contributed two records; the
files' ``individual_note`` says which case applies.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pate.data.splits import Part, check_fractions, split_by_individual, write_splits
from pate.errors import PateError
from pate.io import open_h5

DEFAULT_PUBLIC_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1


# ----------------------------------------------------------------------------------------------------
# Readers: each returns (features, raw labels, raw ids or None, feature names)


def read_csv_table(
    path: str | Path,
    *,
    label_column: str,
    individual_column: str | None,
    feature_columns: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Read a CSV file with a header line into ``(features float64, labels str, ids str, names)``."""
    path = Path(path)
    if not path.is_file():
        raise PateError(f"{path}: no such file, expected a CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle, skipinitialspace=True) if row]
    except UnicodeDecodeError as exc:
        raise PateError(f"{path}: not UTF-8 text ({exc.reason}), expected a CSV file") from None
    except csv.Error as exc:
        raise PateError(f"{path}: malformed CSV ({exc}), expected a CSV file") from None
    if len(rows) < 2:
        raise PateError(f"{path}: {len(rows)} non-empty lines, expected a header and records")
    header = [name.strip() for name in rows[0]]
    if len(set(header)) != len(header):
        duplicate = next(name for name in header if header.count(name) > 1)
        raise PateError(f"{path}: column {duplicate!r} appears twice, expected unique column names")
    for record, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise PateError(
                f"{path}: record {record} has {len(row)} fields, "
                f"expected {len(header)} as in the header"
            )
    table = np.array([[cell.strip() for cell in row] for row in rows[1:]], dtype=str)

    def column(name: str, option: str) -> np.ndarray:
        if name not in header:
            raise PateError(f"{path}: no column {name!r} (found {header}); check {option}")
        return table[:, header.index(name)]

    labels = column(label_column, "--label-column")
    ids = column(individual_column, "--individual-column") if individual_column else None
    if feature_columns is None:
        feature_columns = tuple(n for n in header if n not in (label_column, individual_column))
    if not feature_columns:
        raise PateError(f"{path}: no feature columns left, expected at least one")
    for name in feature_columns:
        if name in (label_column, individual_column):
            raise PateError(
                f"--feature-columns: {name!r} is the label or id column, expected a feature"
            )
    features = np.empty((len(table), len(feature_columns)), dtype=np.float64)
    for j, name in enumerate(feature_columns):
        cells = column(name, "--feature-columns")
        try:
            features[:, j] = cells.astype(np.float64)
        except ValueError:
            for i, cell in enumerate(cells):
                try:
                    float(cell)
                except ValueError:
                    raise PateError(
                        f"{path}: column {name!r} record {i + 1} holds {str(cell)!r}, "
                        "expected a number"
                    ) from None
        bad = ~np.isfinite(features[:, j])
        if bad.any():
            i = int(np.argmax(bad))
            raise PateError(
                f"{path}: column {name!r} record {i + 1} holds {str(cells[i])!r}, "
                "expected a finite number"
            )
    return features, labels, ids, tuple(feature_columns)


def read_array_file(
    path: str | Path,
    *,
    kind: str,
    features_array: str,
    label_column: str,
    individual_column: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Read named arrays from an ``.npz`` (``kind="npz"``) or HDF5 (``kind="h5"``) file."""
    path = Path(path)
    wanted = {"--features-array": features_array, "--label-column": label_column}
    if individual_column:
        wanted["--individual-column"] = individual_column
    arrays: dict[str, np.ndarray] = {}
    if kind == "npz":
        if not path.is_file():
            raise PateError(f"{path}: no such file, expected an .npz file")
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PateError(
                f"{path}: cannot be read as .npz ({exc}), expected numpy.savez"
            ) from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise PateError(
                f"{path}: a single .npy array, expected an .npz archive of named arrays"
            )
        with archive:
            for option, name in wanted.items():
                if name not in archive.files:
                    raise PateError(
                        f"{path}: no array {name!r} (found {archive.files}); check {option}"
                    )
                try:
                    arrays[name] = archive[name]
                except ValueError:
                    raise PateError(
                        f"{path}: array {name!r} holds Python objects, expected numbers or strings"
                    ) from None
    else:
        with open_h5(path, "HDF5 input file") as handle:
            for option, name in wanted.items():
                if name not in handle or not hasattr(handle[name], "shape"):
                    found = sorted(k for k in handle.keys() if hasattr(handle[k], "shape"))
                    raise PateError(f"{path}: no dataset {name!r} (found {found}); check {option}")
                arrays[name] = handle[name][()]
    features = arrays[features_array]
    if features.ndim < 2:
        raise PateError(
            f"{path}: {features_array!r} has shape {features.shape}, expected (N, ...) with N records"
        )
    n = len(features)
    for name in wanted.values():
        if name != features_array and (arrays[name].ndim != 1 or len(arrays[name]) != n):
            raise PateError(f"{path}: {name!r} has shape {arrays[name].shape}, expected ({n},)")
    if features.dtype.kind == "b":
        features = features.astype(np.uint8)
    if features.dtype.kind not in "uif":
        raise PateError(
            f"{path}: {features_array!r} has dtype {features.dtype}, expected numeric features"
        )
    if features.dtype.kind == "f":
        bad = ~np.isfinite(features.reshape(n, -1)).all(axis=1)
        if bad.any():
            raise PateError(
                f"{path}: {features_array!r} has NaN or inf in record {int(np.argmax(bad)) + 1}, "
                "expected finite values"
            )
    ids = arrays[individual_column] if individual_column else None
    return features, arrays[label_column], ids, ()


# ----------------------------------------------------------------------------------------------------
# Labels and ids


def encode_labels(raw: np.ndarray, path: str | Path) -> tuple[np.ndarray, int, tuple[str, ...]]:
    """Turn raw labels into class ids: ``(labels int64, num_classes, class_names)``.

    Integers (or integral floats, or strings that all read as integers) are class ids and must be
    >= 0; other strings are class names, numbered in sorted order. At least two classes are needed.
    """
    if raw.dtype.kind in "SO":
        raw = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in raw], dtype=str)
    if raw.dtype.kind == "U":
        raw = np.char.strip(raw)
        if (raw == "").any():
            i = int(np.argmax(raw == ""))
            raise PateError(f"{path}: label of record {i + 1} is empty, expected a label")
        try:
            as_number = raw.astype(np.float64)
        except ValueError:
            as_number = None
        if as_number is None:
            class_names, labels = np.unique(raw, return_inverse=True)
            if len(class_names) < 2:
                raise PateError(
                    f"{path}: labels hold 1 class ({str(class_names[0])!r}), expected at least 2"
                )
            return labels.astype(np.int64), len(class_names), tuple(str(c) for c in class_names)
        raw = as_number
    if raw.dtype.kind == "b":
        raw = raw.astype(np.int64)
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw) | (raw != np.round(raw))
        if bad.any():
            i = int(np.argmax(bad))
            raise PateError(
                f"{path}: label of record {i + 1} is {raw[i].item()!r}, expected an integer class id"
            )
        raw = raw.astype(np.int64)
    if raw.dtype.kind not in "iu":
        raise PateError(f"{path}: labels have dtype {raw.dtype}, expected integers or strings")
    labels = raw.astype(np.int64)
    if len(labels) and labels.min() < 0:
        i = int(np.argmax(labels < 0))
        raise PateError(
            f"{path}: label of record {i + 1} is {labels[i]}, expected class ids >= 0 "
            "(or string class names)"
        )
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    if num_classes < 2:
        raise PateError(
            f"{path}: labels hold class ids up to {num_classes - 1}, expected >= 2 classes"
        )
    return labels, num_classes, ()


def normalise_ids(raw: np.ndarray, path: str | Path, column: str) -> np.ndarray:
    """Ids as int64 when they are integers (or strings of integers), else as str."""
    if raw.dtype.kind in "SO":
        raw = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in raw], dtype=str)
    if raw.dtype.kind == "U":
        raw = np.char.strip(raw)
        if (raw == "").any():
            i = int(np.argmax(raw == ""))
            raise PateError(f"{path}: {column!r} of record {i + 1} is empty, expected an id")
        try:
            return raw.astype(np.int64)
        except ValueError:
            return raw
    if raw.dtype.kind in "iub":
        return raw.astype(np.int64)
    if raw.dtype.kind == "f":
        if np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
            return raw.astype(np.int64)
        raise PateError(
            f"{path}: {column!r} holds non-integer numbers, expected integer or string ids"
        )
    raise PateError(f"{path}: {column!r} has dtype {raw.dtype}, expected integer or string ids")


# ----------------------------------------------------------------------------------------------------
# The importer


def import_table(
    out_dir: str | Path,
    *,
    kind: str,
    input: str | Path,
    label_column: str,
    individual_column: str | None = None,
    records_are_individuals: bool = False,
    features_array: str = "features",
    feature_columns: tuple[str, ...] | None = None,
    public_fraction: float = DEFAULT_PUBLIC_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> dict[str, Path]:
    """Import ``input`` (``kind`` = ``"csv"``, ``"npz"`` or ``"h5"``) and write the three split files.

    Exactly one of ``individual_column`` and ``records_are_individuals`` must be given.
    """
    if kind not in ("csv", "npz", "h5"):
        raise PateError(f"kind: {kind!r}, expected 'csv', 'npz' or 'h5'")
    if bool(individual_column) == bool(records_are_individuals):
        raise PateError(
            "--individual-column: "
            + ("given together with --records-are-individuals" if individual_column else "missing")
            + ", expected exactly one of them (one individual's records must stay together)"
        )
    if individual_column is not None and individual_column == label_column:
        raise PateError(
            f"--individual-column: {individual_column!r} is also the label column, "
            "expected another column"
        )
    check_fractions(public_fraction, test_fraction)
    path = Path(input)
    if kind == "csv":
        features, raw_labels, raw_ids, feature_names = read_csv_table(
            path,
            label_column=label_column,
            individual_column=individual_column,
            feature_columns=feature_columns,
        )
        features = features.astype(np.float32)
    else:
        features, raw_labels, raw_ids, feature_names = read_array_file(
            path,
            kind=kind,
            features_array=features_array,
            label_column=label_column,
            individual_column=individual_column,
        )
        if features.dtype != np.uint8:
            features = features.astype(np.float32)
    if features.dtype == np.float32:
        bad = ~np.isfinite(features.reshape(len(features), -1)).all(axis=1)
        if bad.any():
            raise PateError(
                f"{path}: record {int(np.argmax(bad)) + 1} overflows float32, expected finite values"
            )
    labels, num_classes, class_names = encode_labels(raw_labels, path)
    if raw_ids is None:
        ids = np.arange(len(labels), dtype=np.int64)
        note = (
            "each record is its own individual (--records-are-individuals): individual_id is the "
            f"record's index in {path.name}; the privacy guarantee is per record, and holds per person "
            "only if no person contributed two records"
        )
    else:
        ids = normalise_ids(raw_ids, path, individual_column)
        note = (
            f"individual_id is column {individual_column!r} of {path.name}; all records of an "
            "individual are in one split"
        )
    indices = split_by_individual(
        ids, public_fraction=public_fraction, test_fraction=test_fraction, seed=seed
    )
    parts = {
        split: Part(features[index], labels[index], ids[index]) for split, index in indices.items()
    }
    counts = {split: len(index) for split, index in indices.items()}
    return write_splits(
        out_dir,
        name=path.stem,
        parts=parts,
        num_classes=num_classes,
        class_names=class_names,
        feature_names=feature_names,
        attrs={
            "source": f"imported from {path.name} ({kind})",
            "split_note": f"split by individual with seed {seed}: public_fraction "
            f"{public_fraction:g}, test_fraction {test_fraction:g} of records "
            f"(records: {counts['private']} private, {counts['public']} public, "
            f"{counts['test']} test)",
            "individual_note": note,
            "unit_of_privacy": "record" if records_are_individuals else "individual",
        },
    )


def build_csv(
    out_dir: str | Path,
    *,
    input: str | Path,
    label_column: str,
    individual_column: str | None = None,
    records_are_individuals: bool = False,
    feature_columns: tuple[str, ...] | None = None,
    public_fraction: float = DEFAULT_PUBLIC_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> dict[str, Path]:
    """Import a CSV file (see the module docstring)."""
    return import_table(
        out_dir,
        kind="csv",
        input=input,
        label_column=label_column,
        individual_column=individual_column,
        records_are_individuals=records_are_individuals,
        feature_columns=feature_columns,
        public_fraction=public_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )


def build_npz(
    out_dir: str | Path,
    *,
    input: str | Path,
    label_column: str,
    individual_column: str | None = None,
    records_are_individuals: bool = False,
    features_array: str = "features",
    public_fraction: float = DEFAULT_PUBLIC_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> dict[str, Path]:
    """Import an ``.npz`` archive (see the module docstring)."""
    return import_table(
        out_dir,
        kind="npz",
        input=input,
        label_column=label_column,
        individual_column=individual_column,
        records_are_individuals=records_are_individuals,
        features_array=features_array,
        public_fraction=public_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )


def build_h5(
    out_dir: str | Path,
    *,
    input: str | Path,
    label_column: str,
    individual_column: str | None = None,
    records_are_individuals: bool = False,
    features_array: str = "features",
    public_fraction: float = DEFAULT_PUBLIC_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> dict[str, Path]:
    """Import an HDF5 file (see the module docstring)."""
    return import_table(
        out_dir,
        kind="h5",
        input=input,
        label_column=label_column,
        individual_column=individual_column,
        records_are_individuals=records_are_individuals,
        features_array=features_array,
        public_fraction=public_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
