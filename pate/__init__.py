"""PATE: Private Aggregation of Teacher Ensembles, with per-individual guarantees.

The pipeline, one module per stage:

* :mod:`pate.data`         built-in and imported datasets (HDF5 ``pate-dataset`` files)
* :mod:`pate.partitioning` individual -> shard assignment (one individual, one shard); the stage as
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
* :mod:`pate.distill`      label-and-distill as one call: workspace and release folders;
  ``label_and_distill(DistillJob(...)) -> DistillResult``
* :mod:`pate.records`      the ledger's typed records
* :mod:`pate.pipeline`     ``pate run PIPELINE.toml``: the stages from one file
* :mod:`pate.student`      student training on public data and noisy labels
* :mod:`pate.export`       the student bundle, loading and prediction:
  ``predict(student, input, out=...) -> PredictionResult``
* :mod:`pate.report`       the privacy report and its plain-language statement
* :mod:`pate.inspection`   what ``pate inspect`` reads and plots
* :mod:`pate.io`           HDF5 schemas and atomic writes
"""

from __future__ import annotations

from pate._lazy import lazy_exports

__version__ = "0.1.0"

#: Stage calls and jobs importable from ``pate``, loaded on first use (``import pate`` stays free of
#: JAX): ``from pate import partition, PartitionJob, train_teachers, TeachersJob, ...``.
_STAGES = {
    "PartitionJob": "pate.partitioning",
    "PartitionSummary": "pate.partitioning",
    "partition": "pate.partitioning",
    "TeachersJob": "pate.teachers",
    "TeachersResult": "pate.teachers",
    "train_teachers": "pate.teachers",
    "DistillJob": "pate.distill",
    "DistillResult": "pate.distill",
    "label_and_distill": "pate.distill",
    "PredictionResult": "pate.export",
    "predict": "pate.export",
    "Pipeline": "pate.pipeline",
    "check_pipeline": "pate.pipeline",
    "load_pipeline": "pate.pipeline",
    "run_pipeline": "pate.pipeline",
}

__all__ = sorted(_STAGES)


__getattr__, __dir__ = lazy_exports(
    "pate",
    {name: (module.removeprefix("pate."), name) for name, module in _STAGES.items()},
    globals(),
)
