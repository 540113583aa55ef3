"""The portable student: a serialized ``jax.export`` program that runs with JAX alone.

The file (``student.jax`` in a release) is ``jax.export.Exported.serialize()`` of the student's
prediction function with its weights and input normalisation folded in as constants: it maps a batch of
raw records ``(b, *input_shape)`` of the public data's dtype to class probabilities ``(b, C)``, for any
batch size ``b``. It is StableHLO inside, so it needs neither ``pate`` nor flax::

    from jax import export
    program = export.deserialize(open("release/student.jax", "rb").read())
    probabilities = program.call(records)

It is a function of the student only (post-processing of the release), so it may be published with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from pate.errors import PateError
from pate.io import atomic_file
from pate.models import preprocess
from pate.student import TrainedModel

PORTABLE_FILE = "student.jax"


def export_student(student: TrainedModel, input_dtype: np.dtype) -> export.Exported:
    """The student's probabilities as an exported program with a symbolic batch dimension."""
    module = student.model.build()
    params = jax.tree_util.tree_map(jnp.asarray, student.params)
    prep = student.preprocessing
    mean, std = jnp.asarray(prep.mean), jnp.asarray(prep.std)

    def probabilities(records):
        logits = module.apply({"params": params}, preprocess(records, prep.scale, mean, std))
        return jax.nn.softmax(logits, axis=-1)

    shape = tuple(student.model.input_shape)
    dims = ", ".join(["b", *(str(d) for d in shape)])
    spec = jax.ShapeDtypeStruct(export.symbolic_shape(dims), np.dtype(input_dtype))
    return export.export(jax.jit(probabilities))(spec)


def save_portable(path: str | os.PathLike, student: TrainedModel, input_dtype: np.dtype) -> None:
    """Write the portable student atomically."""
    data = bytes(export_student(student, input_dtype).serialize())
    with atomic_file(Path(path)) as tmp:
        tmp.write_bytes(data)


def load_portable(path: str | os.PathLike) -> export.Exported:
    """Read a portable student back (with JAX only; this function is a convenience)."""
    path = Path(path)
    if not path.is_file():
        raise PateError(f"{path}: no such portable student, expected a serialized jax.export file")
    try:
        return export.deserialize(bytearray(path.read_bytes()))
    except Exception as exc:  # noqa: BLE001 (the deserializer raises many kinds)
        raise PateError(f"{path}: not a serialized jax.export program ({exc})") from None
