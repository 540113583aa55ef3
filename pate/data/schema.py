"""The schema of an imported table: which columns are features, how each is encoded, the labels.

Privacy (docs/release.md): the schema travels with the release (``student.h5@schema``), so every
constant in it comes from the **public** split or from what the user declared, never from the private
split:

* a column's kind: ``categorical`` when declared (``--categorical-columns``) or when a cell of the
  public split is not a number; else ``numeric``;
* a categorical column's vocabulary: the values seen in the public split, sorted, each one-hot
  encoded, plus an ``<other>`` indicator for values the public split never holds (and, with
  ``--missing fill``, a ``<missing>`` indicator);
* fill values (``--missing fill``): a numeric column's median over the public split;
* the classes: declared (``--classes``), else the labels seen in the public and test splits (class
  ids ``0..max`` when they all read as integers, else names in sorted order). A private label outside
  them is an error.

A schema is a JSON object (:func:`schema_json` writes it with sorted keys, so equal schemas are equal
text). :func:`encode_table` applies one to a table of raw text cells.
"""

from __future__ import annotations

import csv
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
POLICIES = ("error", "drop", "fill")


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
    cells = np.array([[cell.strip() for cell in row] for row in rows[1:]], dtype=str)
    return header, cells.reshape(len(rows) - 1, len(header))


def is_missing(cells: np.ndarray) -> np.ndarray:
    """Which cells are missing: empty, ``?``, ``NA`` or ``NaN`` (any case)."""
    return np.isin(np.char.lower(np.char.strip(cells.astype(str))), MISSING_TOKENS)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def column_of(header: list[str], cells: np.ndarray, name: str, path, option: str) -> np.ndarray:
    if name not in header:
        raise PateError(f"{path}: no column {name!r} (found {header}); check {option}")
    return cells[:, header.index(name)]


def missing_report(tables: dict[str, tuple[list[str], np.ndarray]], columns: list[str]) -> str:
    """``file: 'a' 2, 'b' 1; file2: ...`` for the columns with missing cells, or ``""``."""
    parts = []
    for path, (header, cells) in tables.items():
        counts = [
            f"{name!r} {int(is_missing(cells[:, header.index(name)]).sum())}"
            for name in columns
            if name in header and is_missing(cells[:, header.index(name)]).any()
        ]
        if counts:
            parts.append(f"{path}: " + ", ".join(counts))
    return "; ".join(parts)


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
    columns = []
    names: list[str] = []
    for name in feature_columns:
        cells = column_of(header, public, name, public_path, "--feature-columns")
        present = cells[~is_missing(cells)]
        numeric = all(_is_number(c) for c in present)
        if name in categorical_columns or not numeric:
            vocabulary = sorted(set(present.tolist()))
            entry = {"name": name, "kind": "categorical", "categories": vocabulary}
            indicators = [*vocabulary, OTHER] + ([MISSING] if missing == "fill" else [])
            names += [f"{name}={value}" for value in indicators]
        else:
            entry = {"name": name, "kind": "numeric"}
            if missing == "fill":
                values = present.astype(np.float64)
                values = values[np.isfinite(values)]
                if not len(values):
                    raise PateError(
                        f"{public_path}: column {name!r} has no finite value in the public split, "
                        "expected one to compute its fill value (--missing fill)"
                    )
                entry["fill"] = float(np.median(values))
            names.append(name)
        columns.append(entry)
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
    values = np.concatenate([as_text(v) for v in label_values]) if label_values else np.array([])
    values = values[~is_missing(values)] if len(values) else values
    if not len(values):
        raise PateError(
            f"--classes: missing, and neither the public nor the test split has column "
            f"{label_column!r}; expected the classes declared (--classes a,b,...)"
        )
    try:
        numbers = values.astype(np.float64)
    except ValueError:
        numbers = None
    if numbers is not None and np.all(numbers == np.round(numbers)) and numbers.min() >= 0:
        num_classes = int(numbers.max()) + 1
        if num_classes < 2:
            raise PateError(
                f"column {label_column!r}: the public and test splits hold class ids up to "
                f"{num_classes - 1}, expected >= 2 classes (or declare them with --classes)"
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
    rows = np.arange(1, len(text) + 1) if rows is None else rows
    if schema["classes"]:
        lookup = {name: i for i, name in enumerate(schema["classes"])}
    else:
        lookup = {str(i): i for i in range(schema["num_classes"])}
    labels = np.empty(len(text), dtype=np.int64)
    for i, value in enumerate(text.tolist()):
        if value not in lookup:
            known = schema["classes"] or f"class ids 0..{schema['num_classes'] - 1}"
            raise PateError(
                f"{path}: column {column!r} record {int(rows[i])} holds {value!r}, outside the "
                f"classes {known} (declared or seen in the public and test splits); "
                "declare every class with --classes"
            )
        labels[i] = lookup[value]
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
            for i in np.flatnonzero(~missing):
                try:
                    values[i] = float(column[i])
                except ValueError:
                    raise PateError(
                        f"{path}: column {name!r} record {int(rows[i])} holds {str(column[i])!r}, "
                        "expected a number (the column is numeric in the public split; declare it "
                        "with --categorical-columns to treat it as categories)"
                    ) from None
                if not math.isfinite(values[i]):
                    raise PateError(
                        f"{path}: column {name!r} record {int(rows[i])} holds "
                        f"{str(column[i])!r}, expected a finite number"
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
            block = np.zeros((len(column), len(indicators)), dtype=np.float64)
            for i, value in enumerate(column.tolist()):
                if missing[i]:
                    if not fill:
                        raise _missing_error(path, name, missing, rows)
                    block[i, len(indicators) - 1] = 1
                else:
                    block[i, index.get(value, len(entry["categories"]))] = 1
            blocks.append(block)
    features = np.concatenate(blocks, axis=1).astype(np.float32)
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise PateError(f"{path}: record {int(rows[i])} overflows float32, expected finite values")
    return features


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
