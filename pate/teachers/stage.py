"""The teachers stage as one call: :func:`train_teachers` runs a :class:`~pate.teachers.TeachersJob`.

It refuses an output that is or holds an input, opens the shards, checks the test set against them,
chooses the model (and for the ``public`` strategy learns the extractor from the public set alone and
chooses the head), trains the ensemble, evaluates each teacher on the test set, writes the teachers
folder atomically and removes the checkpoints. It never prints or exits; progress goes to an optional
callback. In a multi-host run every process calls it (after
:func:`~pate.teachers.initialize_distributed`); only process 0 evaluates and writes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pate.errors import PateError
from pate.io import Dataset, atomic_dir, read_dataset, refuse_overlap
from pate.models import ModelConfig
from pate.outputs import check_output, output_lock
from pate.report import (
    SIGNIFICANCE,
    accuracy_interval,
    accuracy_text,
    beats_majority,
    majority_rate,
)
from pate.teachers.config import DEFAULT_HEAD_HIDDEN, DEFAULT_HIDDEN, TeachersJob, resolve_strategy
from pate.teachers.ensemble import EnsembleResult, Progress, train_ensemble
from pate.teachers.shards import ShardsFile, open_shards
from pate.teachers.store import TEACHERS_FILE, save_teachers
from pate.teachers.votes import ensemble_predictions, teacher_accuracy


@dataclass(frozen=True)
class TeachersResult:
    """What :func:`train_teachers` did. ``path`` is the teachers file, None on processes other than
    0 (which write nothing); ``accuracy`` per teacher on the test set, None without one (or off
    process 0); ``model`` says which teachers were trained (e.g. ``public extractor + linear head``)."""

    job: TeachersJob
    path: Path | None
    num_teachers: int
    model: str
    ensemble: EnsembleResult
    accuracy: np.ndarray | None
    majority_rate: float | None = None
    test_records: int | None = None

    @property
    def mean_accuracy_text(self) -> str | None:
        """The teachers' mean test accuracy with a conservative 95% interval (see
        :attr:`warnings`), or None without a test set."""
        if self.accuracy is None or not self.test_records:
            return None
        return accuracy_text(float(self.accuracy.mean()), self.test_records)

    @property
    def warnings(self) -> list[str]:
        """Warnings for the operator (private: they speak about teachers of private data).

        The teachers' mean accuracy must beat the test majority rate *significantly*: a one-sided
        exact binomial test at 5% of ``mean accuracy x n`` correct of ``n`` test records. The mean
        over teachers of each record's share of right teachers lies in [0, 1], so its variance is
        at most a Bernoulli's: the binomial test and interval are conservative for it.
        """
        if self.accuracy is None or self.majority_rate is None:
            return []
        mean = float(self.accuracy.mean())
        n = self.test_records or 0
        beats = beats_majority(mean, n, self.majority_rate) if n else mean > self.majority_rate
        if not beats:
            shown = self.mean_accuracy_text or f"{mean:.4f}"
            return [
                f"the teachers' mean test accuracy {shown} does not beat always predicting the "
                f"test set's most common class ({self.majority_rate:.4f}) significantly "
                f"(one-sided exact binomial test at {SIGNIFICANCE:.0%}); their votes may carry "
                "little signal: fewer, larger shards or another model may help"
            ]
        return []

    def summary(self) -> dict[str, Any]:
        """The run in plain values (the command's ``--json`` report)."""
        ensemble, accuracy = self.ensemble, self.accuracy
        return {
            "teachers_dir": str(self.job.out),
            "teachers": self.num_teachers,
            "model": self.model,
            "strategy": ensemble.strategy,
            "devices": ensemble.devices,
            "processes": ensemble.processes,
            "teacher_chunk": ensemble.teacher_chunk,
            "seconds": round(ensemble.seconds, 2),
            "resumed_chunks": ensemble.resumed_chunks,
            "steps_min": int(ensemble.steps.min()),
            "steps_max": int(ensemble.steps.max()),
            "accuracy_min": None if accuracy is None else float(accuracy.min()),
            "accuracy_mean": None if accuracy is None else float(accuracy.mean()),
            "accuracy_max": None if accuracy is None else float(accuracy.max()),
            "accuracy_mean_interval": None
            if accuracy is None or not self.test_records
            else list(
                accuracy_interval(float(accuracy.mean()) * self.test_records, self.test_records)
            ),
            "test_records": self.test_records,
            "test_majority_rate": self.majority_rate,
            "warnings": self.warnings,
            "teacher_seconds_mean": float(ensemble.teacher_seconds.mean()),
        }


def train_teachers(
    job: TeachersJob,
    *,
    progress: Callable[[Progress], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> TeachersResult:
    """Train, evaluate and save the teachers of ``job`` (see the module docstring).

    The output policy (:func:`pate.outputs.check_output`) runs first: ``out`` and the checkpoints
    apart from every input and outside every run folder; an existing ``out`` replaced only with
    ``force`` and only if it is a teachers folder (never a dataset folder or a release); missing
    parents created with mode 0700. The run then holds a lock on ``out``: a second run on the same
    ``out`` refuses at once (exit code 4) instead of sharing its checkpoints.

    ``on_phase(name)`` is called when a phase starts, after every check on the inputs passed:
    ``compiling and first steps`` (XLA compiles the step before the first one runs; the caller may
    start ``training teachers`` at the first ``progress`` report with steps done), then
    ``evaluating teachers`` (with a test set) and ``writing teachers``.
    """
    inputs = {"shards": job.shards, "test": job.test, "public": job.public}
    main_process = jax.process_index() == 0
    if not main_process:
        return _train_teachers(job, progress, on_phase)
    check_output(
        job.out, kinds=("teachers",), folder=True, inputs=inputs, force=job.force, private=True
    )
    check_output(
        job.checkpoint_path,
        kinds=("checkpoints",),
        folder=True,
        inputs=inputs,
        private=True,
        exists_ok=True,
        name="checkpoint_dir",
    )
    with output_lock(job.out, "train-teachers"):
        return _train_teachers(job, progress, on_phase)


def _train_teachers(job: TeachersJob, progress, on_phase) -> TeachersResult:
    phase = on_phase or (lambda name: None)
    refuse_overlap(
        inputs={"shards": job.shards, "test": job.test, "public": job.public},
        outputs={"out": job.out, "checkpoints": job.checkpoint_path},
    )
    main_process = jax.process_index() == 0
    shards = open_shards(job.shards)
    test = _read_test_set(job, shards)
    if job.custom_model:  # imports and checks the user's factory before anything is written
        kind = job.model
        model = ModelConfig(
            kind="custom",
            factory=job.model,
            input_shape=tuple(shards.feature_shape),
            num_classes=shards.num_classes,
            hidden=(),
        )
    else:
        kind = job.model if job.model != "auto" else _auto_model(shards)
        model = ModelConfig(
            kind=kind,
            input_shape=tuple(shards.feature_shape),
            num_classes=shards.num_classes,
            hidden=DEFAULT_HIDDEN if job.hidden is None else job.hidden,
        )
    strategy = resolve_strategy(job.train.strategy, model, public=job.public is not None)
    extractor = head = None
    if strategy == "public":
        from pate.extractor import fit_extractor_from_file

        extractor = fit_extractor_from_file(job.public)
        if tuple(extractor.input_shape) != tuple(shards.feature_shape):
            raise PateError(
                f"{job.public}: images of shape {tuple(extractor.input_shape)}, expected "
                f"{tuple(shards.feature_shape)} as in {job.shards}"
            )
        head = ModelConfig(
            kind="mlp",
            input_shape=(extractor.num_features,),
            num_classes=shards.num_classes,
            hidden=DEFAULT_HEAD_HIDDEN if job.hidden is None else job.hidden,
        )
        kind = "public extractor + " + ("linear" if not head.hidden else "mlp") + " head"

    phase("compiling and first steps")
    ensemble = train_ensemble(
        shards,
        model,
        job.train,
        progress=progress,
        extractor=extractor,
        head=head,
        checkpoint_dir=job.checkpoint_path,
        checkpoint_every=job.checkpoint_every,
    )
    if not main_process:
        return TeachersResult(job, None, shards.num_teachers, kind, ensemble, None)
    accuracy = majority = None
    if test is not None:
        phase("evaluating teachers")
        majority = majority_rate(test.labels, shards.num_classes)
        predictions = ensemble_predictions(
            ensemble.params,
            ensemble.model,
            ensemble.scale,
            ensemble.mean,
            ensemble.std,
            test.features,
            extractor=ensemble.extractor,
        )
        accuracy = teacher_accuracy(predictions, test.labels)
    stored = np.full(shards.num_teachers, np.nan) if accuracy is None else accuracy
    phase("writing teachers")
    with atomic_dir(job.out, force=job.force, private=True) as tmp:
        save_teachers(tmp, ensemble, model, job.train, shards, stored)
    if job.checkpoint_path is not None:
        shutil.rmtree(job.checkpoint_path, ignore_errors=True)
    return TeachersResult(
        job,
        job.out / TEACHERS_FILE,
        shards.num_teachers,
        kind,
        ensemble,
        accuracy,
        majority,
        None if test is None else len(test.labels),
    )


def _auto_model(shards: ShardsFile) -> str:
    """``cnn`` for images (height, width, channels), ``mlp`` otherwise."""
    return "cnn" if len(shards.feature_shape) == 3 else "mlp"


def _read_test_set(job: TeachersJob, shards: ShardsFile) -> Dataset | None:
    """The labelled test set, checked against the shards' feature shape and classes."""
    if job.test is None:
        return None
    test = read_dataset(job.test, require_labels=True)
    if test.feature_shape != tuple(shards.feature_shape):
        raise PateError(
            f"{job.test}: features have shape {test.feature_shape}, expected "
            f"{tuple(shards.feature_shape)} as in {job.shards}"
        )
    if test.num_classes != shards.num_classes:
        raise PateError(
            f"{job.test}: {test.num_classes} classes, expected {shards.num_classes} as in "
            f"{job.shards}"
        )
    return test
