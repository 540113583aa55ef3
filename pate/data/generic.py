"""``csv``, ``parquet``, ``npz``, ``h5``: import your own data and split it into private, public and test
by individual.

The input holds features, a label column and, normally, an individual-id column:

* **CSV** and **Parquet** (:mod:`pate.data.tables`: streamed through pyarrow, memory bounded by a
  chunk plus what the schema needs of the public split): a header, then one record per line (row).
  ``label_column`` and ``individual_column`` name columns; the features are ``feature_columns``
  (default: every other column). Every cell is read as text (a Parquet number as its shortest
  decimal, a null as empty). Numeric columns stay numbers; text columns (a non-numeric cell in the
  public split) and ``categorical_columns`` are one-hot encoded, with an ``<other>`` indicator for
  values the public split lacks. Missing cells (empty, ``NA``, ``NaN``, ``?``) follow ``missing``:
  ``error`` (one line listing every column with missing cells and their counts), ``drop`` the
  record, or ``fill`` (the public split's median, or a ``<missing>`` indicator; records without a
  label are then left out of the private and test splits, and kept in the public one). Either
  ``input`` (one file, split by individual) or three files ``private``, ``public`` (may lack the
  label column) and ``test``.
* **NPZ** (``numpy.savez``): arrays named ``features_array`` (``(N, ...)``), ``label_column`` and
  ``individual_column`` (``(N,)`` each). Pickled object arrays are refused.
* **HDF5**: the same, as datasets at the file's top level (a ``pate-dataset`` file qualifies).

Every constant that can reach a release comes from the public split or the user's declarations,
never from the private split (:mod:`pate.data.schema`): column kinds, vocabularies, fill values and
the classes: ``classes`` as declared, else the labels of the public and test splits (dense integer
class ids, integral numbers such as ``1.0`` included, or names in sorted order). A private label
outside them is an error. The schema is written as ``schema.json`` beside the split files and as
their ``schema`` attribute. Features are stored as ``uint8`` when they are ``uint8`` (or booleans),
else as ``float32``; NaN, infinite values, values beyond float32 and NUL bytes are refused with one
line naming the file, the column and the record.

Ids are normalised one way in every file and format (:func:`normalise_ids`): stripped; a number with
an integral value that fits int64 (``0``, ``0.0``, ``007``, ``1e3``) is that integer; any other id is
its text. So ``0.0`` in one file and ``0`` in another are one individual.

The split (:func:`pate.data.splits.split_by_individual`, :func:`pate.data.splits.split_codes`) puts
each individual in private, public or test by a keyed hash of its own normalised id and ``seed``,
with ``public_fraction`` and ``test_fraction`` as its probabilities: adding or removing one
individual leaves every other individual where it was, so the public and test files (and the schema)
of neighbouring inputs are identical (issue 20). This is what PATE's per-individual guarantee needs
(design, privacy rules 1 and 8): all of one individual's records sit in one split, and a private
individual's in one shard. The individuals placed in the public and test splits of the user's file
get **no** protection (their records are public data); the import says so on stderr. Without an
individual column, pass ``records_are_individuals=True``: each record is then treated as its own
individual (record-level privacy), which is only right if no person contributed two records; the
files' ``individual_note`` says which case applies. Split from one file, such a record's id is a
hash of its own cells (:func:`content_ids`), never its position, which depends on the other records.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np

from pate.data.schema import (
    FLOAT32_MAX,
    POLICIES,
    SCHEMA_FORMAT,
    SCHEMA_VERSION,
    encode_labels_with,
    label_space,
    nul_error,
    schema_json,
)
from pate.data.splits import Part, check_fractions, split_by_individual, write_splits
from pate.data.tables import StreamImport, canonical_id, notify, open_source
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
        raw = np.array([_text(v, path, "label", i) for i, v in enumerate(raw)], dtype=str)
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
    """Ids normalised one way in every file and format (:func:`pate.data.tables.canonical_id`):
    text is stripped; an id that reads as a number with an integral value fitting int64 (``0``,
    ``0.0``, ``007``, ``1e3``) is that integer; any other id is its stripped text. The result is
    int64 when every id is an integer, else text (integers written in decimal), so ``0.0`` in one
    file and ``0`` in another are one individual. Numeric arrays must hold integral values."""
    if raw.dtype.kind in "SOU":
        text = [_text(v, path, column, i) for i, v in enumerate(raw.tolist())]
        canon = [canonical_id(v) for v in text]
        for i, v in enumerate(text):
            if not v.strip():
                raise PateError(f"{path}: {column!r} of record {i + 1} is empty, expected an id")
        if all(is_int for _, is_int in canon):
            return np.array([int(v) for v, _ in canon], dtype=np.int64)
        return np.array([v for v, _ in canon], dtype=str)
    if raw.dtype.kind in "iub":
        return raw.astype(np.int64)
    if raw.dtype.kind == "f":
        if np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
            return raw.astype(np.int64)
        raise PateError(
            f"{path}: {column!r} holds non-integer numbers, expected integer or string ids"
        )
    raise PateError(f"{path}: {column!r} has dtype {raw.dtype}, expected integer or string ids")


def _text(value, path, column: str, index: int) -> str:
    """A string or bytes cell of an array file as text; a NUL byte is refused."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    if "\x00" in text:
        raise nul_error(path, column, index + 1)
    return text


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
    if kind not in ("csv", "parquet", "npz", "h5"):
        raise PateError(f"kind: {kind!r}, expected 'csv', 'parquet', 'npz' or 'h5'")
    tabular = kind in ("csv", "parquet")
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
        if not tabular:
            raise PateError(
                f"`private`: {kind} input, expected CSV or Parquet files (dataset 'csv' or "
                "'parquet')"
            )
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
    if not tabular and (categorical_columns or missing != "error"):
        raise PateError(
            f"--categorical-columns/--missing: {kind} input, expected CSV or Parquet (arrays are "
            "numeric)"
        )
    if not tabular:
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
        sources = {"all": open_source(input, kind)}
        name = Path(input).stem
    else:
        sources = {split: open_source(value, kind) for split, value in separate.items()}
        name = Path(public).stem
    stream = StreamImport(
        sources,
        label_column=label_column,
        individual_column=individual_column,
        feature_columns=tuple(feature_columns) if feature_columns is not None else None,
        categorical_columns=tuple(categorical_columns),
        classes=tuple(classes) if classes else None,
        missing=missing,
        public_fraction=public_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    stream.run_scan()
    schema = stream.schema()
    if input is not None:
        path = Path(input)
        note = (
            _content_note(path.name)
            if records_are_individuals
            else f"individual_id is column {individual_column!r} of {path.name}; all records of "
            "an individual are in one split"
        )
        split_note = _split_note(seed, public_fraction, test_fraction, stream.scan.counts)
    elif individual_column:
        note = (
            f"individual_id is column {individual_column!r} of the private, public and test files; "
            "an individual in two of them is refused (ids compared normalised)"
        )
        split_note = "private, public and test from separate files"
    else:
        note = _record_note("its file (prefixed private-, public- or test-)")
        split_note = "private, public and test from separate files"
    # No count of the private split in the attributes: they go on the public file too.
    attrs = {
        "source": f"imported from {name} ({kind})",
        "split_note": split_note,
        "individual_note": note,
        "unit_of_privacy": "record" if records_are_individuals else "individual",
    }
    paths = stream.write(Path(out_dir), name=name, schema=schema, attrs=attrs)
    with atomic_file(Path(out_dir) / SCHEMA_FILE) as tmp:
        tmp.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    for message in stream.notes(schema):
        notify(message)
    return paths


def _split_note(seed, public_fraction, test_fraction, counts) -> str:
    """How the one file was split; public and test counts only (they depend on those splits' own
    individuals), never the private count (the note goes on the public file too)."""
    return (
        f"split by individual: each individual's split is a keyed hash of its id with seed {seed} "
        f"(public with probability {public_fraction:g}, test {test_fraction:g}); records: "
        f"{counts['public']} public, {counts['test']} test"
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


def _record_note(name: str) -> str:
    return (
        "each record is its own individual (--records-are-individuals): individual_id is the "
        f"record's index in {name}; the privacy guarantee is per record, and holds per person "
        "only if no person contributed two records"
    )


def _content_note(name: str) -> str:
    return (
        "each record is its own individual (--records-are-individuals): individual_id is 'r' and "
        f"16 hex digits of SHA-256 of the record's cells in {name} (not its position, which "
        "depends on the other records; identical records count as one individual); the privacy "
        "guarantee is per record, and holds per person only if no person contributed two records"
    )


def content_ids(rows: list[bytes]) -> np.ndarray:
    """Ids of records without an id column, split from one file: a hash of each record's own
    content, so that its split and its id do not depend on the other records."""
    return np.array(
        ["r" + hashlib.sha256(row).hexdigest()[:16] for row in rows], dtype=object
    ).astype(str)


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
        bad = (np.abs(features.reshape(len(features), -1)) > FLOAT32_MAX).any(axis=1)
        if bad.any():
            raise PateError(
                f"{path}: record {int(np.argmax(bad)) + 1} of {features_array!r} overflows "
                f"float32, expected values within |x| <= {FLOAT32_MAX:.4g}"
            )
        features = features.astype(np.float32)
    encode_labels(raw_labels, path)  # checks each label (the classes come from the schema)
    if raw_ids is None:
        flat = features.reshape(len(features), -1)
        ids = content_ids(
            [flat[i].tobytes() + repr(raw_labels[i].item()).encode() for i in range(len(flat))]
        )
        note = _content_note(path.name)
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
    paths = _write(
        out_dir,
        name=path.stem,
        parts=parts,
        schema=schema,
        attrs={
            "source": f"imported from {path.name} ({kind})",
            # No count of the private split: these attributes go on the public file too.
            "split_note": _split_note(seed, public_fraction, test_fraction, counts),
            "individual_note": note,
            "unit_of_privacy": "record" if records_are_individuals else "individual",
        },
    )
    notify(
        f"the individuals placed in the public and test splits of {path} get no privacy "
        "protection: their records are used as public data. Only the private split is protected."
    )
    return paths


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
    options = {name: value for name, value in locals().items() if name != "out_dir"}
    return import_table(out_dir, kind="csv", **options)


def build_parquet(out_dir: str | Path, **options) -> dict[str, Path]:
    """Import a Parquet file, or separate private, public and test Parquet files: the options and
    rules of :func:`build_csv` (every cell read as text: a number as its shortest decimal, a null
    empty)."""
    return import_table(out_dir, kind="parquet", **options)


# The dataset registry reads a builder's options from its signature: Parquet takes CSV's.
build_parquet.__signature__ = inspect.signature(build_csv)


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
