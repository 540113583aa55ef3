"""The student bundle: everything needed to use the student, and nothing private.

Student file (``release/student.h5``, ``format = "pate-student"``)::

    params/<layer>/<name>          the student's weights
    preprocessing/mean, /std       normalisation (attr scale), fitted on public data
    attrs: format, version, model (architecture JSON), class_names, num_classes,
           privacy_statement (plain language), privacy (the JSON report, as text),
           schema (optional: the public dataset's schema, JSON text; see pate.data.schema)

It holds no teacher parameter, vote or private record, so it can be shipped as is. A student of the
user's own model (``kind`` custom) stores only the reference ``"factory": "package.module:factory"``:
that bundle is not self-contained, loading it (:func:`load_student`, ``pate predict``) imports the
module and calls the factory, so the module must be importable there, and a bundle from elsewhere
naming a custom model is to be trusted like code.

:func:`predict` is ``pate predict`` as one call: the student labels a ``pate-dataset`` file, and the
predictions go to a ``pate-predictions`` file (or a CSV file; a raw CSV input is encoded with the
schema the student carries, :func:`read_csv_records`) (``labels`` (N,), ``probabilities`` (N, C), attribute
``class_names``). Errors name the argument they are about in backquotes, as `out`; the command maps
each to its flag or argument.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
from flax import traverse_util

from pate.errors import PateError
from pate.io import (
    _attr_int,
    _attr_str,
    _attr_strings,
    atomic_file,
    check_fits_in_memory,
    h5_create,
    open_h5,
    read_dataset,
    require_format,
)
from pate.models import ModelConfig, Preprocessing
from pate.outputs import check_output
from pate.student import TrainedModel

STUDENT_FORMAT = "pate-student"
STUDENT_VERSION = 1
PREDICTIONS_FORMAT = "pate-predictions"


def save_student(
    path: str | os.PathLike,
    student: TrainedModel,
    *,
    class_names: tuple[str, ...],
    privacy: dict,
    statement: str,
    schema: str | None = None,
) -> None:
    """Write the student bundle atomically; ``schema``: the public dataset's schema (JSON text)."""
    with atomic_file(path) as tmp:
        with h5_create(tmp) as handle:
            handle.attrs["format"] = STUDENT_FORMAT
            handle.attrs["version"] = STUDENT_VERSION
            handle.attrs["model"] = student.model.to_json()
            handle.attrs["num_classes"] = student.model.num_classes
            handle.attrs["class_names"] = list(class_names) or [
                str(c) for c in range(student.model.num_classes)
            ]
            handle.attrs["privacy_statement"] = statement
            handle.attrs["privacy"] = json.dumps(privacy)
            if schema:
                handle.attrs["schema"] = schema
            for name, leaf in traverse_util.flatten_dict(student.params, sep="/").items():
                handle.create_dataset(f"params/{name}", data=np.asarray(leaf))
            prep = handle.create_group("preprocessing")
            prep.attrs["scale"] = student.preprocessing.scale
            prep.create_dataset("mean", data=student.preprocessing.mean)
            prep.create_dataset("std", data=student.preprocessing.std)


def load_student(path: str | os.PathLike) -> tuple[TrainedModel, dict]:
    """Load a student bundle: ``(model, attrs)``; needs no teacher and no private file.

    Everything is validated before use, each failure a one-line :class:`PateError` naming the file and
    the field: the ``model`` attribute (JSON describing a buildable model), ``num_classes`` and
    ``class_names`` (consistent with it), ``privacy`` (a JSON object), every parameter (exactly the
    leaves and shapes the model's initialisation gives, finite floats; shapes are checked before any
    weight is read) and the preprocessing (``mean`` finite, ``std`` finite and > 0, both broadcast to
    the input shape, ``scale`` finite and > 0).
    """
    with open_h5(path, "student bundle") as handle:
        require_format(handle, path, STUDENT_FORMAT)
        model = _read_model(handle, path)
        num_classes = _attr_int(handle.attrs.get("num_classes"))
        if num_classes != model.num_classes:
            found = handle.attrs.get("num_classes")
            found = num_classes if num_classes is not None else _attr_str(found) or found
            raise PateError(
                f"{path}: attribute 'num_classes' is {found!r}, expected {model.num_classes} (the "
                "number of classes of the model in attribute 'model')"
            )
        class_names = _attr_strings(_required_attr(handle, path, "class_names", "the class names"))
        if len(class_names) != model.num_classes:
            raise PateError(
                f"{path}: attribute 'class_names' has {len(class_names)} names, expected "
                f"{model.num_classes} (one per class)"
            )
        statement = _attr_str(
            _required_attr(handle, path, "privacy_statement", "the privacy statement as text")
        )
        attrs = {
            "class_names": class_names,
            "privacy_statement": statement,
            "privacy": _read_privacy(handle, path),
        }
        if "schema" in handle.attrs:
            attrs["schema"] = _attr_str(handle.attrs["schema"])
        flat = _read_params(handle, path, model)
        preprocessing = _read_preprocessing(handle, path, model)
    params = traverse_util.unflatten_dict(flat, sep="/")
    return TrainedModel(params=params, model=model, preprocessing=preprocessing), attrs


def _required_attr(handle: h5py.Group, path, name: str, expected: str):
    if name not in handle.attrs:
        raise PateError(f"{path}: missing attribute {name!r}, expected {expected}")
    return handle.attrs[name]


def _json_kind(value) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null"


def _read_json_object(handle: h5py.Group, path, name: str, expected: str) -> dict:
    text = _required_attr(handle, path, name, expected)
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise PateError(
            f"{path}: attribute {name!r} is not valid JSON ({exc}), expected {expected}"
        ) from None
    if not isinstance(value, dict):
        raise PateError(f"{path}: attribute {name!r} is {_json_kind(value)}, expected {expected}")
    return value


def _read_privacy(handle: h5py.Group, path) -> dict:
    return _read_json_object(handle, path, "privacy", "the privacy report as a JSON object")


def _read_model(handle: h5py.Group, path) -> ModelConfig:
    expected = "the architecture as a JSON object with kind, input_shape, num_classes and hidden"
    raw = _read_json_object(handle, path, "model", expected)
    missing = [key for key in ("kind", "input_shape", "num_classes", "hidden") if key not in raw]
    if missing:
        raise PateError(f"{path}: attribute 'model' has no key {missing[0]!r}, expected {expected}")
    if not isinstance(raw.get("factory"), (str, type(None))):
        raise PateError(
            f"{path}: attribute 'model' has factory {raw['factory']!r}, expected a string "
            "package.module:factory"
        )
    for key in ("input_shape", "hidden"):
        value = raw[key]
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
        ):
            raise PateError(
                f"{path}: attribute 'model' has {key} {value!r}, expected a list of positive integers"
            )
    if not isinstance(raw["num_classes"], int) or isinstance(raw["num_classes"], bool):
        raise PateError(
            f"{path}: attribute 'model' has num_classes {raw['num_classes']!r}, expected an integer >= 2"
        )
    try:
        return ModelConfig.from_json(json.dumps(raw))
    except PateError as exc:
        message = str(exc).replace("`", "'")
        raise PateError(f"{path}: attribute 'model' is not a valid model ({message})") from None


def expected_param_shapes(model: ModelConfig) -> dict[str, tuple[int, ...]]:
    """``"layer/name" -> shape`` of every parameter of ``model``, from its initialisation's shapes
    (``jax.eval_shape``: nothing is computed or allocated)."""
    import jax
    import jax.numpy as jnp

    sample = jax.ShapeDtypeStruct((1, *model.input_shape), jnp.float32)
    shapes = jax.eval_shape(model.build().init, jax.random.key(0), sample)["params"]
    return {
        name: tuple(leaf.shape)
        for name, leaf in traverse_util.flatten_dict(shapes, sep="/").items()
    }


def _read_params(handle: h5py.Group, path, model: ModelConfig) -> dict[str, np.ndarray]:
    group = handle.get("params")
    if not isinstance(group, h5py.Group):
        raise PateError(f"{path}: missing group 'params', expected the student's weights")
    found: dict[str, h5py.Dataset] = {}
    group.visititems(
        lambda name, obj: found.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None
    )
    try:
        expected = expected_param_shapes(model)
    except Exception as exc:  # flax/jax refuse a model they cannot build: one line, not a traceback
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PateError(
            f"{path}: attribute 'model' describes no buildable model ({detail})"
        ) from None
    for name, shape in expected.items():
        if name not in found:
            raise PateError(
                f"{path}: missing dataset 'params/{name}', expected shape {shape} for the model in "
                "attribute 'model'"
            )
        if found[name].shape != shape:
            raise PateError(
                f"{path}: dataset 'params/{name}' has shape {found[name].shape}, expected {shape} for "
                "the model in attribute 'model'"
            )
        if found[name].dtype.kind != "f":
            raise PateError(
                f"{path}: dataset 'params/{name}' has dtype {found[name].dtype}, expected floats"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise PateError(
            f"{path}: dataset 'params/{extra[0]}' is not a parameter of the model in attribute "
            f"'model', expected only {', '.join(sorted(expected))}"
        )
    check_fits_in_memory(handle, path, [f"params/{name}" for name in expected])
    flat = {}
    for name in expected:
        value = found[name][()]
        if not np.all(np.isfinite(value)):
            raise PateError(
                f"{path}: dataset 'params/{name}' holds NaN or inf, expected finite weights"
            )
        flat[name] = value
    return flat


def _read_preprocessing(handle: h5py.Group, path, model: ModelConfig) -> Preprocessing:
    group = handle.get("preprocessing")
    if not isinstance(group, h5py.Group):
        raise PateError(
            f"{path}: missing group 'preprocessing', expected datasets 'mean' and 'std' and "
            "attribute 'scale'"
        )
    scale = group.attrs.get("scale")
    if (
        not isinstance(scale, (int, float, np.integer, np.floating))
        or not np.isfinite(scale)
        or scale <= 0
    ):
        raise PateError(
            f"{path}: attribute 'scale' of group 'preprocessing' is {scale!r}, expected a finite "
            "number > 0"
        )
    input_shape = tuple(model.input_shape)
    values = {}
    for name in ("mean", "std"):
        dataset = group.get(name)
        if not isinstance(dataset, h5py.Dataset):
            raise PateError(
                f"{path}: missing dataset 'preprocessing/{name}', expected an array broadcasting to "
                f"the input shape {input_shape}"
            )
        try:
            fits = np.broadcast_shapes(dataset.shape, input_shape) == input_shape
        except ValueError:
            fits = False
        if not fits:
            raise PateError(
                f"{path}: dataset 'preprocessing/{name}' has shape {dataset.shape}, expected a shape "
                f"that broadcasts to the input shape {input_shape}"
            )
        if dataset.dtype.kind not in ("f", "i", "u"):
            raise PateError(
                f"{path}: dataset 'preprocessing/{name}' has dtype {dataset.dtype}, expected numbers"
            )
        values[name] = dataset[()]
    if not np.all(np.isfinite(values["mean"])):
        raise PateError(
            f"{path}: dataset 'preprocessing/mean' holds NaN or inf, expected finite values"
        )
    std = values["std"]
    bad = ~(np.isfinite(std) & (std > 0))
    if np.any(bad):
        raise PateError(
            f"{path}: dataset 'preprocessing/std' holds {float(std[bad].flat[0])!r}, expected finite "
            "values > 0"
        )
    return Preprocessing(scale=float(scale), mean=values["mean"], std=std)


def public_schema(path: str | os.PathLike) -> str | None:
    """The ``schema`` attribute (JSON text) of a public dataset file, or None: what the student
    bundle carries, taken from the public input only."""
    with open_h5(path, "dataset file") as handle:
        return _attr_str(handle.attrs.get("schema"))


class Records(NamedTuple):
    """The records :func:`predict` labels: ``features``; ``labels`` as the student's class ids, -1
    where the input's label is empty or not one of the student's classes (None: the input has no
    labels); ``ids`` and the name of the column they came from (None: rows only by order); and
    ``filled``, how many empty cells took the schema's fill value."""

    features: np.ndarray
    labels: np.ndarray | None
    ids: np.ndarray | None
    id_column: str | None
    filled: int


def read_csv_records(
    student_path, schema_text: str | None, input_path, id_column: str | None = None
) -> Records:
    """The :class:`Records` of a raw CSV file under the student's schema: the import's one-hot
    encoding, unseen categories as ``<other>``, and empty cells filled with the schema's values
    from the public split whatever ``missing`` policy the import used (a numeric column's fill
    value; a categorical column's ``fill`` category, else its ``<missing>`` indicator under
    ``fill``, else ``<other>`` when the schema names a fill). Labels when the file has the label
    column (cells the schema does not know are -1). Ids from ``id_column``, else from the schema's
    individual column when the file has it."""
    from pate.data.schema import (
        OTHER,
        encode_labels_with,
        encode_table,
        is_missing,
        load_schema,
        read_csv_raw,
    )

    if not schema_text:
        raise PateError(
            f"{student_path}: has no schema, so `input_path` {input_path} (CSV) cannot be encoded; "
            "expected a pate-dataset .h5 file, or a student of a dataset from `pate dataset csv`"
        )
    schema = load_schema(schema_text, student_path)
    if not schema["columns"]:
        raise PateError(
            f"{student_path}: its schema has no columns (array data), expected a pate-dataset .h5 "
            f"file as `input_path`, not {input_path}"
        )
    header, cells = read_csv_raw(input_path)
    if id_column is not None and id_column not in header:
        raise PateError(
            f"`id_column` {id_column!r}: not a column of {input_path} (columns: {', '.join(header)})"
        )
    id_column = id_column or (
        schema.get("individual_column") if schema.get("individual_column") in header else None
    )
    ids = None if id_column is None else cells[:, header.index(id_column)].copy()
    filled = 0
    widest = max([cells.dtype.itemsize // 4, len(OTHER) + 1, 1])
    for entry in schema["columns"]:
        if entry["name"] not in header:
            continue  # encode_table names the missing column
        j = header.index(entry["name"])
        missing = is_missing(cells[:, j])
        if not missing.any():
            continue
        if entry["kind"] == "numeric":
            filled += int(missing.sum()) if "fill" in entry else 0
            continue
        if schema["missing"] == "fill" and entry.get("fill", "<missing>") == "<missing>":
            filled += int(missing.sum())  # encode_table's <missing> indicator
            continue
        if "fill" not in entry:
            continue  # no fill value: encode_table refuses the empty cells in one line
        # Stand-in text for the fill: the category itself, or a value the vocabulary lacks
        # (hence <other>), so that encode_table needs no knowledge of the import's policy.
        value = entry["fill"]
        if value not in entry["categories"]:
            value = OTHER
            while value in entry["categories"]:
                value += "_"
        cells = cells.astype(f"<U{max(widest, len(value))}")
        cells[missing, j] = value
        filled += int(missing.sum())
    features = encode_table(schema, header, cells, input_path)
    labels = None
    if schema["label_column"] in header:
        raw = cells[:, header.index(schema["label_column"])]
        labels = np.full(len(raw), -1, dtype=np.int64)
        known = ~is_missing(raw)
        values, inverse = np.unique(raw[known], return_inverse=True)
        codes = np.full(len(values), -1, dtype=np.int64)
        for k, value in enumerate(values.tolist()):
            try:
                codes[k] = encode_labels_with(schema, np.array([value]), input_path)[0]
            except PateError:
                pass  # a label the student does not know: predicted, left out of the accuracy
        labels[known] = codes[inverse.reshape(-1)]
    return Records(features, labels, ids, id_column, filled)


def write_predictions_csv(
    path: str | os.PathLike,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names,
    ids: np.ndarray | None = None,
    id_column: str | None = None,
) -> None:
    """Write predictions as CSV atomically, owner-only (0600: the input may be private): one row
    per record, the predicted class name, then the record's id (column ``id_column``, when given),
    then one probability column per class (``p_<class>``)."""
    import csv

    with atomic_file(Path(path), private=True) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            first = ["predicted"] + ([] if ids is None else [id_column or "id"])
            writer.writerow([*first, *(f"p_{name}" for name in class_names)])
            for i, (label, row) in enumerate(zip(labels, probabilities, strict=True)):
                record = [class_names[int(label)]] + ([] if ids is None else [_text(ids[i])])
                writer.writerow([*record, *(repr(float(p)) for p in row)])


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def write_predictions(
    path: str | os.PathLike,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names,
    ids: np.ndarray | None = None,
    id_column: str | None = None,
) -> None:
    """Write predictions (``labels`` (N,), ``probabilities`` (N, C), and with ``ids`` the dataset
    ``ids`` (N,) with attribute ``id_column``) atomically, owner-only (0600: the input may be
    private)."""
    with atomic_file(Path(path), private=True) as tmp:
        with h5_create(tmp) as handle:
            handle.attrs["format"] = PREDICTIONS_FORMAT
            handle.attrs["version"] = 1
            handle.attrs["class_names"] = list(class_names)
            handle.create_dataset("labels", data=labels.astype(np.int64))
            handle.create_dataset("probabilities", data=probabilities.astype(np.float32))
            if ids is not None:
                if ids.dtype.kind in "iu":
                    handle.create_dataset("ids", data=ids)
                else:
                    text = [_text(v) for v in ids]
                    handle.create_dataset("ids", data=text, dtype=h5py.string_dtype())
                handle["ids"].attrs["id_column"] = id_column or "id"


@dataclass(frozen=True)
class PredictionResult:
    """What :func:`predict` computed. ``labels`` (N,) and ``probabilities`` (N, C) of the input's
    records; ``accuracy`` against the input's labels on the ``accuracy_records`` records whose label
    is one of the student's classes, None if there are none; ``labels_skipped`` records whose label
    is empty or unknown (predicted all the same); ``filled_cells`` empty cells filled with the
    schema's values; ``id_column`` the input column whose ids the predictions carry (None: rows
    only by order); ``out`` the predictions file written, or None."""

    student: Path
    input: Path
    out: Path | None
    class_names: tuple[str, ...]
    labels: np.ndarray
    probabilities: np.ndarray
    accuracy: float | None
    accuracy_records: int = 0
    labels_skipped: int = 0
    filled_cells: int = 0
    id_column: str | None = None

    @property
    def class_counts(self) -> dict[str, int]:
        """Predicted records per class, by class name."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(count) for name, count in zip(self.class_names, counts, strict=True)}

    def summary(self) -> dict[str, Any]:
        """The run in plain values (the command's ``--json`` report)."""
        return {
            "records": len(self.labels),
            "accuracy": self.accuracy,
            "accuracy_records": self.accuracy_records,
            "labels_skipped": self.labels_skipped,
            "filled_cells": self.filled_cells,
            "id_column": self.id_column,
            "out": None if self.out is None else str(self.out),
            "class_counts": self.class_counts,
        }


def _id_name(dataset_path: Path) -> str:
    """The name of a dataset file's ids: the table column they were imported from (its schema's
    individual column), else ``individual_id``."""
    text = public_schema(dataset_path)
    try:
        column = json.loads(text).get("individual_column") if text else None
    except (ValueError, AttributeError):
        column = None
    return column if isinstance(column, str) and column else "individual_id"


def predict(
    student_path: str | os.PathLike,
    input_path: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    force: bool = False,
    id_column: str | None = None,
) -> PredictionResult:
    """Label the records of ``input_path`` (a ``pate-dataset`` file, or a raw ``.csv`` file when the
    student carries a schema) with the student bundle at ``student_path``, and with ``out`` write the
    predictions there (atomically, owner-only: the input may be private): a ``pate-predictions``
    HDF5 file, or CSV when ``out`` ends in ``.csv`` (:func:`write_predictions_csv`). The records'
    ids go along: a dataset file's ``individual_id``; a CSV file's ``id_column``, else the schema's
    individual column when the file has it (a dataset file's ids are named after the column they
    were imported from, when its schema says so).

    Labels in the input serve only to measure accuracy: a record whose label is empty or not one of
    the student's classes is predicted like any other and left out of the accuracy (counted in
    ``labels_skipped``). Empty cells of a CSV input take the schema's fill values, whatever
    ``missing`` policy the import used.

    Refuses, before anything is read, what the output policy refuses
    (:func:`pate.outputs.check_output`): an ``out`` that is, holds or lies inside an input, or lies
    inside a release, workspace, teachers, data or audit folder (``force`` or not), or exists and is
    not a predictions file; then a student that does not load, an ``id_column`` with a dataset file
    or not in the CSV file, an input whose features do not have the student's input shape, and an
    existing ``out`` without ``force`` (exit code 4).
    """
    check_output(
        out,
        kinds=(PREDICTIONS_FORMAT, "predictions-csv"),
        folder=False,
        inputs={"student_path": student_path, "input_path": input_path},
        force=force,
    )
    student_path, input_path = Path(student_path), Path(input_path)
    out = Path(out) if out else None
    student, attrs = load_student(student_path)
    if input_path.suffix.lower() == ".csv":
        records = read_csv_records(student_path, attrs.get("schema"), input_path, id_column)
    else:
        if id_column is not None:
            raise PateError(
                f"`id_column` {id_column!r}: only for a CSV input; {input_path} is a dataset file, "
                "whose records carry their individual_id"
            )
        data = read_dataset(input_path)
        true_labels = None
        if data.labels is not None:
            true_labels = np.asarray(data.labels, dtype=np.int64)
            unknown = (true_labels < 0) | (true_labels >= len(attrs["class_names"]))
            true_labels = np.where(unknown, -1, true_labels)
        records = Records(data.features, true_labels, data.individual_id, _id_name(input_path), 0)
    features = records.features
    feature_shape = tuple(features.shape[1:])
    if feature_shape != tuple(student.model.input_shape):
        raise PateError(
            f"{input_path}: features have shape {feature_shape}, expected "
            f"{tuple(student.model.input_shape)} as the student in {student_path}"
        )
    probabilities = student.probabilities(features)
    labels = probabilities.argmax(axis=1)
    carried = (records.ids, records.id_column)
    if out is not None and out.suffix.lower() == ".csv":
        write_predictions_csv(out, labels, probabilities, attrs["class_names"], *carried)
    elif out is not None:
        write_predictions(out, labels, probabilities, attrs["class_names"], *carried)
    accuracy, known = None, 0
    if records.labels is not None:
        mask = records.labels >= 0
        known = int(mask.sum())
        if known:
            accuracy = float((labels[mask] == records.labels[mask]).mean())
    return PredictionResult(
        student=student_path,
        input=input_path,
        out=out,
        class_names=tuple(attrs["class_names"]),
        labels=labels,
        probabilities=probabilities,
        accuracy=accuracy,
        accuracy_records=known,
        labels_skipped=0 if records.labels is None else len(labels) - known,
        filled_cells=records.filled,
        id_column=records.id_column if records.ids is not None else None,
    )
