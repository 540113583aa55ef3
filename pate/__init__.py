"""PATE: Private Aggregation of Teacher Ensembles, with per-individual guarantees.

The pipeline, one module per stage:

* :mod:`pate.data`         built-in and imported datasets (HDF5 ``pate-dataset`` files)
* :mod:`pate.partition`    individual -> shard assignment (one individual, one shard); the stage as
  one call: ``partition(PartitionJob(...)) -> PartitionSummary``
* :mod:`pate.models`       flax modules (MLP for tabular data, CNN for images)
* :mod:`pate.teachers`     training all teachers as one program over a stacked teacher axis; the stage
  as one call: ``train_teachers(TeachersJob(...)) -> TeachersResult``
* :mod:`pate.extractor`    a feature extractor learned from public data only (no privacy cost)
* :mod:`pate.noise`        exact integer noise from the OS CSPRNG
* :mod:`pate.aggregate`    LNMax, GNMax, Confident-GNMax, Interactive-GNMax
* :mod:`pate.accounting`   Renyi-DP bounds of the PATE papers and conversion to (epsilon, delta)
* :mod:`pate.ledger`       write-ahead privacy ledger
* :mod:`pate.labeling`     the answering loop: charge, then release
* :mod:`pate.distill`      label-and-distill as one call: workspace and release folders
* :mod:`pate.student`      student training on public data and noisy labels
* :mod:`pate.export`       the student bundle, loading and prediction:
  ``predict(student, input, out=...) -> PredictionResult``
* :mod:`pate.report`       the privacy report and its plain-language statement
* :mod:`pate.inspection`   what ``pate inspect`` reads and plots
* :mod:`pate.io`           HDF5 schemas and atomic writes
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

#: Stage calls importable from ``pate``, loaded on first use (``import pate`` stays free of JAX).
_STAGES = {
    "PartitionJob": "pate.partition",
    "PartitionSummary": "pate.partition",
    "partition": "pate.partition",
    "TeachersJob": "pate.teachers",
    "TeachersResult": "pate.teachers",
    "train_teachers": "pate.teachers",
    "PredictionResult": "pate.export",
    "predict": "pate.export",
}


def __getattr__(name: str):
    if name not in _STAGES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_STAGES[name]), name)


class _Package(types.ModuleType):
    """``pate`` itself. Importing a submodule sets it as an attribute of its package; for
    :mod:`pate.partition` that would hide the stage call of the same name, so that attribute is not
    set and ``pate.partition`` stays the function. ``from pate.partition import ...`` and
    ``importlib.import_module("pate.partition")`` still give the module (they read ``sys.modules``);
    ``import pate.partition as name`` gives the function."""

    def __setattr__(self, name: str, value) -> None:
        if name in _STAGES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
