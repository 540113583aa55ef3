"""The schema of an imported table: which columns are features, how each is encoded, the labels.

Privacy (docs/release.md): the schema travels with the release (``student.h5@schema``), so every
constant in it comes from the **public** split or from what the user declared, never from the private
split:

* a column's kind: ``categorical`` when declared (``--categorical-columns``) or when a cell of the
  public split is not a number; else ``numeric``;
* a categorical column's vocabulary: the values seen in the public split, sorted, each one-hot
  encoded, plus an ``<other>`` indicator for values the public split never holds (and, with
  ``--missing fill``, a ``<missing>`` indicator);
* fill values, whatever the ``missing`` policy of the import (so ``pate predict`` can fill empty
  cells of new rows): a numeric column's median over the public split (absent only when the public
  split has no finite value and the policy is not ``fill``), a categorical column's ``<missing>``
  indicator under ``fill``, else its ``<other>`` indicator;
* the classes: declared (``--classes``), else the labels seen in the public and test splits (class
  ids ``0..C-1`` when they all read as integers, integral numbers such as ``1.0`` included, else names
  in sorted order). Inferred class ids must be dense: ``C = max + 1`` may be at most
  ``max(MIN_CLASS_IDS, 2 x the number of distinct ids seen)``, else the import asks for ``--classes``
  (a label ``1000000`` beside ``0`` and ``1`` is a typo or a wrong column, not a million classes).
  A private label outside the classes is an error.

Labels are compared as text after :func:`canonical_labels`: stripped, and a number with an integral
value written as an integer (``1.0`` -> ``1``), in the data and in ``--classes`` alike.

A schema is a JSON object (:func:`schema_json` writes it with sorted keys, so equal schemas are equal
text). :func:`encode_table` applies one to a table of raw text cells.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np

from pate.errors import PateError

SCHEMA_FORMAT = "pate-schema"
SCHEMA_VERSION = 1
MISSING_TOKENS = ("", "?", "na", "nan")
OTHER = "<other>"
MISSING = "<missing>"
MISSING_KEY = "\x00missing"  # stands for a missing cell while encoding (no cell holds a NUL)
POLICIES = ("error", "drop", "fill")
#: Inferred integer class ids ``0..C-1`` are refused when ``C`` exceeds this and twice the distinct ids.
MIN_CLASS_IDS = 10
#: A categorical column may have at most this many distinct values in the public split.
MAX_CATEGORIES = 10_000
FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_csv_raw(path: str | Path) -> tuple[list[str], np.ndarray]:
    """A CSV file with a header line as ``(header, cells)``: ``cells`` (N, columns) stripped text."""
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
    for record, row in enumerate(rows[1:], start=1):
        for name, cell in zip(header, row, strict=True):
            if "\x00" in cell:
                raise nul_error(path, name, record)
    cells = np.array([[cell.strip() for cell in row] for row in rows[1:]], dtype=str)
    return header, cells.reshape(len(rows) - 1, len(header))


def nul_error(path, column: str, record: int) -> PateError:
    return PateError(
        f"{path}: column {column!r} record {record} holds a NUL byte, expected text without NUL"
    )


def parse_numbers(cells: np.ndarray) -> np.ndarray | None:
    """``cells`` (text, none missing) as float64, or None when one of them is not a number (the
    rule of Python's ``float``)."""
    try:
        return np.asarray(cells, dtype=str).astype(np.float64)
    except ValueError:
        return None


def canonical_labels(raw: np.ndarray) -> np.ndarray:
    """Labels as stripped text, a number with an integral value written as an integer (``1.0``,
    ``1`` and ``1e0`` are ``1``); other text as it is."""
    text = as_text(raw)
    out = text.astype(object)
    unique, inverse = np.unique(text, return_inverse=True)
    canon = []
    for value in unique.tolist():
        try:
            number = float(value)
        except ValueError:
            canon.append(value)
            continue
        canon.append(str(int(number)) if math.isfinite(number) and number == int(number) else value)
    out = np.array(canon, dtype=object)[inverse.reshape(-1)] if len(text) else out
    return out.astype(str) if len(text) else np.array([], dtype=str)


#: Every spelling of a missing token, in any case (``NA``, ``nA``, ``NaN``, ...).
MISSING_SPELLINGS = tuple(
    sorted(
        {
            "".join(letters)
            for token in MISSING_TOKENS
            for letters in itertools.product(*[(c.lower(), c.upper()) for c in token])
        }
    )
)


def is_missing(cells: np.ndarray) -> np.ndarray:
    """Which cells are missing: empty, ``?``, ``NA`` or ``NaN`` (any case)."""
    return np.isin(np.strings.strip(np.asarray(cells).astype(str)), MISSING_SPELLINGS)


def column_of(header: list[str], cells: np.ndarray, name: str, path, option: str) -> np.ndarray:
    if name not in header:
        raise PateError(f"{path}: no column {name!r} (found {header}); check {option}")
    return cells[:, header.index(name)]


def infer_schema(
    header: list[str],
    public: np.ndarray,
    *,
    label_values: list[np.ndarray],
    label_column: str,
    individual_column: str | None,
    feature_columns: tuple[str, ...] | None,
    categorical_columns: tuple[str, ...],
    classes: tuple[str, ...] | None,
    missing: str,
    public_path,
) -> dict:
    """The schema from the public split's ``header`` and ``public`` cells, the labels of the public
    and test splits (``label_values``) and the user's declarations. Never sees private data."""
    if missing not in POLICIES:
        raise PateError(f"--missing: {missing!r}, expected one of {', '.join(POLICIES)}")
    feature_columns = resolve_feature_columns(
        header,
        label_column=label_column,
        individual_column=individual_column,
        feature_columns=feature_columns,
        categorical_columns=categorical_columns,
        public_path=public_path,
    )
    for name in feature_columns:
        column_of(header, public, name, public_path, "--feature-columns")
    stats = PublicStats(feature_columns, categorical_columns)
    stats.update(header, public)
    return schema_of(
        stats,
        label_values=label_values,
        label_column=label_column,
        individual_column=individual_column,
        classes=classes,
        missing=missing,
        public_path=public_path,
    )


def resolve_feature_columns(
    header: list[str],
    *,
    label_column: str,
    individual_column: str | None,
    feature_columns: tuple[str, ...] | None,
    categorical_columns: tuple[str, ...],
    public_path,
) -> tuple[str, ...]:
    """The feature columns: declared, else every column of the public ``header`` but the label and
    id columns; checked against the declarations."""
    if feature_columns is None:
        feature_columns = tuple(n for n in header if n not in (label_column, individual_column))
    if not feature_columns:
        raise PateError(f"{public_path}: no feature columns left, expected at least one")
    for name in (*feature_columns, *categorical_columns):
        if name in (label_column, individual_column):
            raise PateError(
                f"--feature-columns: {name!r} is the label or id column, expected a feature"
            )
    for name in categorical_columns:
        if name not in feature_columns:
            raise PateError(
                f"--categorical-columns: {name!r} is not a feature column "
                f"(features: {list(feature_columns)})"
            )
    return tuple(feature_columns)


def schema_of(
    stats: PublicStats,
    *,
    label_values: list[np.ndarray],
    label_column: str,
    individual_column: str | None,
    classes: tuple[str, ...] | None,
    missing: str,
    public_path,
) -> dict:
    """The schema from the public split's statistics, its and the test split's labels and the
    declarations."""
    columns, names = stats.columns(missing, public_path)
    class_names, num_classes = label_space(label_values, classes, label_column)
    return {
        "format": SCHEMA_FORMAT,
        "version": SCHEMA_VERSION,
        "columns": columns,
        "feature_names": names,
        "label_column": label_column,
        "individual_column": individual_column,
        "classes": list(class_names),
        "num_classes": num_classes,
        "missing": missing,
        "missing_tokens": list(MISSING_TOKENS),
        "source": "public split and declared options only",
    }


class PublicStats:
    """What the schema needs of the public split, gathered chunk by chunk: per feature column whether
    every present cell is a number, those numbers (for the median: 8 bytes per public record and
    numeric column) and up to :data:`MAX_CATEGORIES` distinct values."""

    def __init__(self, feature_columns, categorical_columns) -> None:
        self.names = tuple(feature_columns)
        self.declared = set(categorical_columns)
        self.numeric = {name: name not in self.declared for name in self.names}
        self.values: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        self.vocabulary: dict[str, set | None] = {name: set() for name in self.names}

    def update(self, header: list[str], cells: np.ndarray) -> None:
        for name in self.names:
            column = cells[:, header.index(name)]
            present = column[~is_missing(column)]
            if not len(present):
                continue
            if self.numeric[name]:
                numbers = parse_numbers(present)
                if numbers is None:
                    self.numeric[name] = False
                    self.values[name] = []
                else:
                    self.values[name].append(numbers)
            vocabulary = self.vocabulary[name]
            if vocabulary is not None:
                vocabulary.update(np.unique(present).tolist())
                if len(vocabulary) > MAX_CATEGORIES:
                    self.vocabulary[name] = None

    def columns(self, missing: str, public_path) -> tuple[list[dict], list[str]]:
        """The schema's column entries and feature names."""
        columns, names = [], []
        for name in self.names:
            if not self.numeric[name]:
                if self.vocabulary[name] is None:
                    raise PateError(
                        f"{public_path}: column {name!r} has more than {MAX_CATEGORIES} distinct "
                        "values in the public split, expected a categorical column with fewer "
                        "(leave it out with --feature-columns)"
                    )
                vocabulary = sorted(self.vocabulary[name])
                entry = {"name": name, "kind": "categorical", "categories": vocabulary}
                entry["fill"] = MISSING if missing == "fill" else OTHER
                indicators = [*vocabulary, OTHER] + ([MISSING] if missing == "fill" else [])
                names += [f"{name}={value}" for value in indicators]
            else:
                entry = {"name": name, "kind": "numeric"}
                values = np.concatenate(self.values[name]) if self.values[name] else np.zeros(0)
                values = values[np.isfinite(values)]
                if len(values):
                    entry["fill"] = float(np.median(values))
                elif missing == "fill":
                    raise PateError(
                        f"{public_path}: column {name!r} has no finite value in the public split, "
                        "expected one to compute its fill value (--missing fill)"
                    )
                names.append(name)
            columns.append(entry)
        return columns, names


def label_space(
    label_values: list[np.ndarray], classes: tuple[str, ...] | None, label_column: str
) -> tuple[tuple[str, ...], int]:
    """``(class_names, num_classes)``: declared, else from the non-private labels given.

    Integer labels without declared classes are class ids (``num_classes = max + 1``, no names).
    """
    if classes:
        if len(set(classes)) != len(classes) or len(classes) < 2:
            raise PateError(f"--classes: {list(classes)}, expected at least 2 distinct class names")
        return tuple(classes), len(classes)
    values = (
        np.concatenate([canonical_labels(v) for v in label_values])
        if label_values
        else np.array([])
    )
    values = values[~is_missing(values)] if len(values) else values
    if not len(values):
        raise PateError(
            f"--classes: missing, and neither the public nor the test split has column "
            f"{label_column!r}; expected the classes declared (--classes a,b,...)"
        )
    distinct = np.unique(values)
    numbers = parse_numbers(distinct)
    if numbers is not None and np.all(numbers == np.round(numbers)) and numbers.min() >= 0:
        num_classes = int(numbers.max()) + 1
        if num_classes < 2:
            raise PateError(
                f"column {label_column!r}: the public and test splits hold class ids up to "
                f"{num_classes - 1}, expected >= 2 classes (or declare them with --classes)"
            )
        allowed = max(MIN_CLASS_IDS, 2 * len(distinct))
        if num_classes > allowed:
            raise PateError(
                f"column {label_column!r}: the public and test splits hold class ids up to "
                f"{num_classes - 1} but only {len(distinct)} distinct ones, expected dense class "
                f"ids 0..C-1 with C at most {allowed} (max({MIN_CLASS_IDS}, 2 x distinct ids)); "
                "declare the classes with --classes"
            )
        return (), num_classes
    names = tuple(sorted(set(values.tolist())))
    if len(names) < 2:
        raise PateError(
            f"column {label_column!r}: the public and test splits hold 1 class ({names[0]!r}), "
            "expected at least 2 (or declare them with --classes)"
        )
    return names, len(names)


def as_text(raw: np.ndarray) -> np.ndarray:
    """Any 1-D array of labels as stripped text (integral floats as integers)."""
    if raw.dtype.kind in "SO":
        raw = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in raw], dtype=str)
    if raw.dtype.kind == "f":
        return np.array(
            [str(int(v)) if math.isfinite(v) and v == round(v) else str(v) for v in raw], dtype=str
        )
    if raw.dtype.kind == "b":
        raw = raw.astype(np.int64)
    return np.char.strip(raw.astype(str))


def encode_labels_with(
    schema: dict, raw: np.ndarray, path, rows: np.ndarray | None = None
) -> np.ndarray:
    """Class ids of the raw labels under the schema; a label outside it is an error naming the
    file, the column and the value."""
    column = schema["label_column"]
    text = as_text(raw)
    canon = canonical_labels(text)
    rows = np.arange(1, len(text) + 1) if rows is None else rows
    if schema["classes"]:
        names = canonical_labels(np.array(schema["classes"], dtype=str)).tolist()
        lookup = {name: i for i, name in enumerate(names)}
        known = f"{schema['classes']}"
    else:
        lookup = {str(i): i for i in range(schema["num_classes"])}
        known = f"class ids 0..{schema['num_classes'] - 1}"
    labels = np.empty(len(text), dtype=np.int64)
    unique, inverse = np.unique(canon, return_inverse=True)
    codes = np.array([lookup.get(value, -1) for value in unique.tolist()], dtype=np.int64)
    labels = codes[inverse.reshape(-1)] if len(text) else labels
    if len(text) and (labels < 0).any():
        i = int(np.argmax(labels < 0))
        read = f" (read as {str(canon[i])!r})" if canon[i] != text[i] else ""
        raise PateError(
            f"{path}: column {column!r} record {int(rows[i])} holds {str(text[i])!r}{read}, "
            f"outside the classes {known} (declared or seen in the public and test splits); "
            "declare every class with --classes"
        )
    return labels


def encode_table(
    schema: dict, header: list[str], cells: np.ndarray, path, rows: np.ndarray | None = None
) -> np.ndarray:
    """The ``(N, features)`` float32 features of raw ``cells`` under ``schema``: numbers as they are,
    categories one-hot (unseen values in ``<other>``), missing cells filled from the schema's public
    values (or an error when the schema has none)."""
    rows = np.arange(1, len(cells) + 1) if rows is None else rows
    blocks = []
    for entry in schema["columns"]:
        name = entry["name"]
        column = column_of(header, cells, name, path, "the schema's columns")
        missing = is_missing(column)
        if entry["kind"] == "numeric":
            values = np.zeros(len(column), dtype=np.float64)
            present = np.flatnonzero(~missing)
            numbers = parse_numbers(column[present])
            if numbers is None:  # find the first cell that is not a number, for the message
                for i in present:
                    if parse_numbers(column[i : i + 1]) is None:
                        raise PateError(
                            f"{path}: column {name!r} record {int(rows[i])} holds "
                            f"{str(column[i])!r}, expected a number (the column is numeric in the "
                            "public split; declare it with --categorical-columns to treat it as "
                            "categories)"
                        )
            values[present] = numbers
            bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
            if bad.any():
                i = int(np.argmax(bad))
                raise PateError(
                    f"{path}: column {name!r} record {int(rows[i])} holds {str(column[i])!r}, "
                    f"expected a finite number within float32 range (|x| <= {FLOAT32_MAX:.4g})"
                )
            if missing.any():
                if "fill" not in entry:
                    raise _missing_error(path, name, missing, rows)
                values[missing] = entry["fill"]
            blocks.append(values[:, None])
        else:
            indicators = [*entry["categories"], OTHER]
            fill = schema["missing"] == "fill"
            if fill:
                indicators.append(MISSING)
            index = {value: j for j, value in enumerate(entry["categories"])}
            index[MISSING_KEY] = indicators.index(entry.get("fill", MISSING if fill else OTHER))
            if missing.any() and not fill and "fill" not in entry:
                raise _missing_error(path, name, missing, rows)
            keys = np.where(missing, MISSING_KEY, column)
            unique, inverse = np.unique(keys, return_inverse=True)
            for value in unique.tolist():
                if "\x00" in value and value != MISSING_KEY:
                    i = int(np.argmax(keys == value))
                    raise nul_error(path, name, int(rows[i]))
            codes = np.array(
                [index.get(value, len(entry["categories"])) for value in unique.tolist()],
                dtype=np.int64,
            )
            block = np.zeros((len(column), len(indicators)), dtype=np.float32)
            if len(column):
                block[np.arange(len(column)), codes[inverse.reshape(-1)]] = 1
            blocks.append(block)
    if not blocks:
        return np.zeros((len(cells), 0), dtype=np.float32)
    return np.concatenate(blocks, axis=1).astype(np.float32)


def _missing_error(path, name: str, missing: np.ndarray, rows: np.ndarray) -> PateError:
    return PateError(
        f"{path}: column {name!r} has {int(missing.sum())} missing cells (first in record "
        f"{int(rows[int(np.argmax(missing))])}), expected none: the schema has no fill value "
        "(import with --missing fill)"
    )


def schema_json(schema: dict) -> str:
    """The schema as JSON text with sorted keys."""
    return json.dumps(schema, sort_keys=True)


def load_schema(text: str, where) -> dict:
    """A schema from JSON text, checked for the fields :func:`encode_table` uses."""
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise PateError(f"{where}: schema is not JSON ({exc})") from None
    if not isinstance(schema, dict) or schema.get("format") != SCHEMA_FORMAT:
        raise PateError(f"{where}: schema has no format {SCHEMA_FORMAT!r}")
    for key in ("columns", "feature_names", "label_column", "classes", "num_classes", "missing"):
        if key not in schema:
            raise PateError(f"{where}: schema lacks {key!r}")
    return schema
