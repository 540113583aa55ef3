"""The student bundle: everything needed to use the student, and nothing private.

Student file (``release/student.h5``, ``format = "pate-student"``)::

    params/<layer>/<name>          the student's weights
    preprocessing/mean, /std       normalisation (attr scale), fitted on public data
    attrs: format, version, model (architecture JSON), class_names, num_classes,
           privacy_statement (plain language), privacy (the JSON report, as text)

It holds no teacher parameter, vote or private record, so it can be shipped as is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
from flax import traverse_util

from pate.io import atomic_file, open_h5, require_format
from pate.models import ModelConfig, Preprocessing
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
) -> None:
    """Write the student bundle atomically."""
    with atomic_file(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["format"] = STUDENT_FORMAT
            handle.attrs["version"] = STUDENT_VERSION
            handle.attrs["model"] = student.model.to_json()
            handle.attrs["num_classes"] = student.model.num_classes
            handle.attrs["class_names"] = list(class_names) or [
                str(c) for c in range(student.model.num_classes)
            ]
            handle.attrs["privacy_statement"] = statement
            handle.attrs["privacy"] = json.dumps(privacy)
            for name, leaf in traverse_util.flatten_dict(student.params, sep="/").items():
                handle.create_dataset(f"params/{name}", data=np.asarray(leaf))
            prep = handle.create_group("preprocessing")
            prep.attrs["scale"] = student.preprocessing.scale
            prep.create_dataset("mean", data=student.preprocessing.mean)
            prep.create_dataset("std", data=student.preprocessing.std)


def load_student(path: str | os.PathLike) -> tuple[TrainedModel, dict]:
    """Load a student bundle: ``(model, attrs)``; needs no teacher and no private file."""
    with open_h5(path, "student bundle") as handle:
        require_format(handle, path, STUDENT_FORMAT)
        flat = {}
        handle["params"].visititems(
            lambda name, obj: (
                flat.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
        preprocessing = Preprocessing(
            scale=float(handle["preprocessing"].attrs["scale"]),
            mean=handle["preprocessing/mean"][()],
            std=handle["preprocessing/std"][()],
        )
        attrs = {
            "class_names": tuple(
                v.decode() if isinstance(v, bytes) else str(v) for v in handle.attrs["class_names"]
            ),
            "privacy_statement": str(handle.attrs["privacy_statement"]),
            "privacy": json.loads(handle.attrs["privacy"]),
        }
        model = ModelConfig.from_json(handle.attrs["model"])
    params = traverse_util.unflatten_dict(flat, sep="/")
    return TrainedModel(params=params, model=model, preprocessing=preprocessing), attrs


def write_predictions(
    path: str | os.PathLike, labels: np.ndarray, probabilities: np.ndarray, class_names
) -> None:
    """Write predictions (``labels`` (N,), ``probabilities`` (N, C)) atomically."""
    with atomic_file(Path(path)) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["format"] = PREDICTIONS_FORMAT
            handle.attrs["version"] = 1
            handle.attrs["class_names"] = list(class_names)
            handle.create_dataset("labels", data=labels.astype(np.int64))
            handle.create_dataset("probabilities", data=probabilities.astype(np.float32))
