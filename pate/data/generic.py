"""``csv``, ``npz``, ``h5``: import your own data and split it into private, public and test by individual.

The input holds features, a label column and, normally, an individual-id column:

* **CSV**: a header line, then one record per line. ``label_column`` and ``individual_column`` name
  columns; the features are ``feature_columns`` (default: every other column). Numeric columns stay
  numbers; text columns (a non-numeric cell in the public split) and ``categorical_columns`` are
  one-hot encoded, with an ``<other>`` indicator for values the public split lacks. Missing cells
  (empty, ``NA``, ``NaN``, ``?``) follow ``missing``: ``error`` (one line listing every column with
  missing cells and their counts), ``drop`` the record, or ``fill`` (the public split's median, or a
  ``<missing>`` indicator). Either ``input`` (one file, split by individual) or three files
  ``private``, ``public`` (may lack the label column) and ``test``.
* **NPZ** (``numpy.savez``): arrays named ``features_array`` (``(N, ...)``), ``label_column`` and
  ``individual_column`` (``(N,)`` each). Pickled object arrays are refused.
* **HDF5**: the same, as datasets at the file's top level (a ``pate-dataset`` file qualifies).

Every constant that can reach a release comes from the public split or the user's declarations,
never from the private split (:mod:`pate.data.schema`): column kinds, vocabularies, fill values and
the classes: ``classes`` as declared, else the labels of the public and test splits (integer class
ids, ``num_classes = max + 1``, or names in sorted order). A private label outside them is an error.
The schema is written as ``schema.json`` beside the split files and as their ``schema`` attribute.
Features are stored as ``uint8`` when they are ``uint8`` (or booleans), else as ``float32``; NaN or
infinite values are refused.

The split (:func:`pate.data.splits.split_by_individual`) puts every individual's records in exactly one
of private, public and test, which is what PATE's per-individual guarantee needs (design, privacy
rules 1 and 8): the neighbouring relation is adding or removing one individual, all of whose records
then sit in one shard of the private file and in neither the public nor the test file. Without an
individual column, pass ``records_are_individuals=True``: each record is then treated as its own
individual (record-level privacy), which is only right if no person contributed two records; the
files' ``individual_note`` says which case applies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pate.data.schema import (
    POLICIES,
    SCHEMA_FORMAT,
    SCHEMA_VERSION,
    column_of,
    encode_labels_with,
    encode_table,
    infer_schema,
    is_missing,
    label_space,
    missing_report,
    read_csv_raw,
    schema_json,
)
from pate.data.splits import Part, check_fractions, split_by_individual, write_splits
from pate.errors import PateError
from pate.io import atomic_file, open_h5

DEFAULT_PUBLIC_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1
SCHEMA_FILE = "schema.json"


# ----------------------------------------------------------------------------------------------------
# Readers: each returns (features, raw labels, raw ids or None, feature names)


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
    input: str | Path | None = None,
    private: str | Path | None = None,
    public: str | Path | None = None,
    test: str | Path | None = None,
    label_column: str,
    individual_column: str | None = None,
    records_are_individuals: bool = False,
    features_array: str = "features",
    feature_columns: tuple[str, ...] | None = None,
    categorical_columns: tuple[str, ...] = (),
    classes: tuple[str, ...] | None = None,
    missing: str = "error",
    public_fraction: float = DEFAULT_PUBLIC_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> dict[str, Path]:
    """Import ``input`` (``kind`` = ``"csv"``, ``"npz"`` or ``"h5"``), or the separate CSV files
    ``private``, ``public`` and ``test``, and write the three split files and ``schema.json``.

    Exactly one of ``individual_column`` and ``records_are_individuals`` must be given. Every constant
    of the schema comes from the public split or the declarations (:mod:`pate.data.schema`).
    """
    if kind not in ("csv", "npz", "h5"):
        raise PateError(f"kind: {kind!r}, expected 'csv', 'npz' or 'h5'")
    separate = {"private": private, "public": public, "test": test}
    given = [split for split, value in separate.items() if value is not None]
    if input is not None and given:
        raise PateError(
            f"`{given[0]}`: given together with `input`, expected either `input` (one file, split "
            "by individual) or `private`, `public` and `test`"
        )
    if input is None:
        if not given:
            raise PateError(
                "`input`: missing, expected it for dataset 'csv' (or `private`, `public` and "
                "`test`)"
            )
        lacking = [split for split in separate if separate[split] is None]
        if lacking:
            raise PateError(f"`{lacking[0]}`: missing, expected `private`, `public` and `test`")
        if kind != "csv":
            raise PateError(f"`private`: {kind} input, expected CSV files (dataset 'csv')")
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
    if missing not in POLICIES:
        raise PateError(f"--missing: {missing!r}, expected one of {', '.join(POLICIES)}")
    if kind != "csv" and (categorical_columns or missing != "error"):
        raise PateError(
            f"--categorical-columns/--missing: {kind} input, expected CSV (arrays are numeric)"
        )
    if kind != "csv":
        return _import_arrays(
            out_dir,
            kind=kind,
            path=Path(input),
            label_column=label_column,
            individual_column=individual_column,
            records_are_individuals=records_are_individuals,
            features_array=features_array,
            classes=classes,
            public_fraction=public_fraction,
            test_fraction=test_fraction,
            seed=seed,
        )
    if input is not None:
        check_fractions(public_fraction, test_fraction)
        tables, note, split_note = _split_one_csv(
            Path(input),
            label_column=label_column,
            individual_column=individual_column,
            feature_columns=feature_columns,
            missing=missing,
            public_fraction=public_fraction,
            test_fraction=test_fraction,
            seed=seed,
        )
        name = Path(input).stem
    else:
        tables, note, split_note = _read_csv_files(
            {split: Path(value) for split, value in separate.items()},
            label_column=label_column,
            individual_column=individual_column,
            feature_columns=feature_columns,
            missing=missing,
        )
        name = Path(public).stem
    header, cells = tables["public"].header, tables["public"].cells
    label_values = [
        tables[split].labels for split in ("public", "test") if tables[split].labels is not None
    ]
    schema = infer_schema(
        header,
        cells,
        label_values=label_values,
        label_column=label_column,
        individual_column=individual_column,
        feature_columns=feature_columns,
        categorical_columns=tuple(categorical_columns),
        classes=tuple(classes) if classes else None,
        missing=missing,
        public_path=tables["public"].path,
    )
    parts = {}
    for split, table in tables.items():
        features = encode_table(schema, table.header, table.cells, table.path, table.rows)
        labels = None
        if table.labels is not None:
            labels = encode_labels_with(schema, table.labels, table.path, table.rows)
        parts[split] = Part(features, labels, table.ids)
    return _write(
        out_dir,
        name=name,
        parts=parts,
        schema=schema,
        attrs={
            "source": f"imported from {name} (csv)",
            "split_note": split_note,
            "individual_note": note,
            "unit_of_privacy": "record" if records_are_individuals else "individual",
        },
    )


def _write(out_dir, *, name: str, parts: dict, schema: dict, attrs: dict) -> dict[str, Path]:
    """The three split files and ``schema.json``; the schema also as attribute ``schema``."""
    text = schema_json(schema)
    paths = write_splits(
        out_dir,
        name=name,
        parts=parts,
        num_classes=schema["num_classes"],
        class_names=tuple(schema["classes"]),
        feature_names=tuple(schema["feature_names"]),
        attrs={**attrs, "schema": text},
    )
    with atomic_file(Path(out_dir) / SCHEMA_FILE) as tmp:
        tmp.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    return paths


@dataclass(frozen=True)
class _Table:
    """One split's raw cells: ``rows`` are record numbers in ``path`` (for errors), ``labels`` the
    raw label cells (None when the file has no label column)."""

    path: Path
    header: list[str]
    cells: np.ndarray
    rows: np.ndarray
    labels: np.ndarray | None
    ids: np.ndarray


def _feature_names_in(header, label_column, individual_column, feature_columns):
    if feature_columns is not None:
        return [name for name in feature_columns if name in header]
    return [name for name in header if name not in (label_column, individual_column)]


def _handle_missing(
    files: dict[Path, tuple[list[str], np.ndarray]],
    *,
    label_column: str,
    individual_column: str | None,
    feature_columns,
    missing: str,
) -> dict[Path, np.ndarray]:
    """Apply the missing-value policy: each file's rows to keep. ``error`` lists every column with
    missing cells and their counts, file by file, in one line."""
    if missing == "error":
        report = missing_report(
            {path: (header, cells) for path, (header, cells) in files.items()},
            sorted(
                {
                    name
                    for header, _ in files.values()
                    for name in _feature_names_in(
                        header, label_column, individual_column, feature_columns
                    )
                },
                key=lambda n: next(h.index(n) for h, _ in files.values() if n in h),
            ),
        )
        if report:
            raise PateError(
                f"missing cells (count per column) in {report}; expected none "
                "(or pass --missing drop or --missing fill)"
            )
    keep = {}
    for path, (header, cells) in files.items():
        rows = np.ones(len(cells), dtype=bool)
        if label_column in header:
            empty = is_missing(cells[:, header.index(label_column)])
            if missing == "drop":
                rows &= ~empty
            elif empty.any():
                i = int(np.argmax(empty))
                raise PateError(f"{path}: label of record {i + 1} is empty, expected a label")
        if missing == "drop":
            names = _feature_names_in(header, label_column, individual_column, feature_columns)
            for name in names:
                rows &= ~is_missing(cells[:, header.index(name)])
        keep[path] = np.flatnonzero(rows)
    return keep


def _split_one_csv(
    path: Path,
    *,
    label_column,
    individual_column,
    feature_columns,
    missing,
    public_fraction,
    test_fraction,
    seed,
) -> tuple[dict[str, _Table], str, str]:
    header, cells = read_csv_raw(path)
    column_of(header, cells, label_column, path, "--label-column")
    if individual_column:
        column_of(header, cells, individual_column, path, "--individual-column")
    for name in feature_columns or ():
        column_of(header, cells, name, path, "--feature-columns")
    keep = _handle_missing(
        {path: (header, cells)},
        label_column=label_column,
        individual_column=individual_column,
        feature_columns=feature_columns,
        missing=missing,
    )[path]
    cells, rows = cells[keep], keep + 1
    if not len(cells):
        raise PateError(f"{path}: no record left after --missing drop, expected records")
    raw_labels = cells[:, header.index(label_column)]
    encode_labels(raw_labels, path)  # checks each label (the classes come from the schema)
    if individual_column:
        ids = normalise_ids(cells[:, header.index(individual_column)], path, individual_column)
        note = (
            f"individual_id is column {individual_column!r} of {path.name}; all records of an "
            "individual are in one split"
        )
    else:
        ids = rows.astype(np.int64) - 1
        note = _record_note(path.name)
    indices = split_by_individual(
        ids, public_fraction=public_fraction, test_fraction=test_fraction, seed=seed
    )
    tables = {
        split: _Table(path, header, cells[index], rows[index], raw_labels[index], ids[index])
        for split, index in indices.items()
    }
    counts = {split: len(index) for split, index in indices.items()}
    split_note = (
        f"split by individual with seed {seed}: public_fraction {public_fraction:g}, "
        f"test_fraction {test_fraction:g} of records (records: {counts['public']} public, "
        f"{counts['test']} test; no private count, as the note goes on the public file too)"
    )
    return tables, note, split_note


def _record_note(name: str) -> str:
    return (
        "each record is its own individual (--records-are-individuals): individual_id is the "
        f"record's index in {name}; the privacy guarantee is per record, and holds per person "
        "only if no person contributed two records"
    )


def _read_csv_files(
    paths: dict[str, Path], *, label_column, individual_column, feature_columns, missing
) -> tuple[dict[str, _Table], str, str]:
    files = {}
    for split, path in paths.items():
        header, cells = read_csv_raw(path)
        if split != "public":
            column_of(header, cells, label_column, path, "--label-column")
        if individual_column:
            column_of(header, cells, individual_column, path, "--individual-column")
        files[path] = (header, cells)
    public_header = files[paths["public"]][0]
    names = _feature_names_in(public_header, label_column, individual_column, feature_columns)
    for name in feature_columns or ():
        column_of(
            public_header, files[paths["public"]][1], name, paths["public"], "--feature-columns"
        )
    for split in ("private", "test"):
        header, cells = files[paths[split]]
        for name in names:
            column_of(header, cells, name, paths[split], "the public file's feature columns")
    keep = _handle_missing(
        files,
        label_column=label_column,
        individual_column=individual_column,
        feature_columns=tuple(names),
        missing=missing,
    )
    tables = {}
    for split, path in paths.items():
        header, cells = files[path]
        rows = keep[path] + 1
        cells = cells[keep[path]]
        if not len(cells):
            raise PateError(f"{path}: no record left after --missing drop, expected records")
        labels = cells[:, header.index(label_column)] if label_column in header else None
        if individual_column:
            ids = normalise_ids(cells[:, header.index(individual_column)], path, individual_column)
        else:  # names, not numbers: a numbering across files would depend on the private count
            ids = np.char.add(f"{split}-", (rows - 1).astype(str))
        tables[split] = _Table(path, header, cells, rows, labels, ids)
    if individual_column:
        note = (
            f"individual_id is column {individual_column!r} of the private, public and test files; "
            "an individual in two of them is refused"
        )
    else:
        note = _record_note("its file (prefixed private-, public- or test-)")
    # No count of the private file here: the public and test files depend on their inputs only.
    return tables, note, "private, public and test from separate files"


def _import_arrays(
    out_dir,
    *,
    kind,
    path: Path,
    label_column,
    individual_column,
    records_are_individuals,
    features_array,
    classes,
    public_fraction,
    test_fraction,
    seed,
) -> dict[str, Path]:
    check_fractions(public_fraction, test_fraction)
    features, raw_labels, raw_ids, _ = read_array_file(
        path,
        kind=kind,
        features_array=features_array,
        label_column=label_column,
        individual_column=individual_column,
    )
    if features.dtype != np.uint8:
        features = features.astype(np.float32)
        bad = ~np.isfinite(features.reshape(len(features), -1)).all(axis=1)
        if bad.any():
            raise PateError(
                f"{path}: record {int(np.argmax(bad)) + 1} overflows float32, expected finite values"
            )
    encode_labels(raw_labels, path)  # checks each label (the classes come from the schema)
    if raw_ids is None:
        ids = np.arange(len(raw_labels), dtype=np.int64)
        note = _record_note(path.name)
    else:
        ids = normalise_ids(raw_ids, path, individual_column)
        note = (
            f"individual_id is column {individual_column!r} of {path.name}; all records of an "
            "individual are in one split"
        )
    indices = split_by_individual(
        ids, public_fraction=public_fraction, test_fraction=test_fraction, seed=seed
    )
    class_names, num_classes = label_space(
        [raw_labels[indices["public"]], raw_labels[indices["test"]]],
        tuple(classes) if classes else None,
        label_column,
    )
    schema = {
        "format": SCHEMA_FORMAT,
        "version": SCHEMA_VERSION,
        "columns": None,
        "feature_names": [],
        "feature_shape": list(features.shape[1:]),
        "label_column": label_column,
        "individual_column": individual_column,
        "classes": list(class_names),
        "num_classes": num_classes,
        "missing": "error",
        "source": "public split and declared options only",
    }
    parts = {
        split: Part(
            features[index],
            encode_labels_with(schema, raw_labels[index], path, index + 1),
            ids[index],
        )
        for split, index in indices.items()
    }
    counts = {split: len(index) for split, index in indices.items()}
    return _write(
        out_dir,
        name=path.stem,
        parts=parts,
        schema=schema,
        attrs={
            "source": f"imported from {path.name} ({kind})",
            # No count of the private split: these attributes go on the public file too.
            "split_note": f"split by individual with seed {seed}: public_fraction "
            f"{public_fraction:g}, test_fraction {test_fraction:g} of records "
            f"(records: {counts['public']} public, {counts['test']} test)",
            "individual_note": note,
            "unit_of_privacy": "record" if records_are_individuals else "individual",
        },
    )


def build_csv(
    out_dir: str | Path,
    *,
    input: str | Path | None = None,
    private: str | Path | None = None,
    public: str | Path | None = None,
    test: str | Path | None = None,
    label_column: str,
    individual_column: str | None = None,
    records_are_individuals: bool = False,
    feature_columns: tuple[str, ...] | None = None,
    categorical_columns: tuple[str, ...] = (),
    classes: tuple[str, ...] | None = None,
    missing: str = "error",
    public_fraction: float = DEFAULT_PUBLIC_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> dict[str, Path]:
    """Import a CSV file, or separate private, public and test CSV files (module docstring)."""
    return import_table(
        out_dir,
        kind="csv",
        input=input,
        private=private,
        public=public,
        test=test,
        label_column=label_column,
        individual_column=individual_column,
        records_are_individuals=records_are_individuals,
        feature_columns=feature_columns,
        categorical_columns=categorical_columns,
        classes=classes,
        missing=missing,
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
    classes: tuple[str, ...] | None = None,
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
        classes=classes,
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
    classes: tuple[str, ...] | None = None,
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
        classes=classes,
        public_fraction=public_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
