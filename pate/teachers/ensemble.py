"""Training the ensemble: one teacher per shard, chunk by chunk, resumable.

Isolation (design rule 2; the property behind the sensitivity of Papernot et al. 2017, Theorem 2, and
2018, §3): teacher ``t``'s parameters are a function of its own shard, its own key and the public
configuration only (model, training config, the padded length ``max_n``, the teacher count, and for the
``public`` strategy the extractor, itself a function of public data only). Concretely:

* each teacher draws its batches from a permutation of *its own* rows, from its own key and size
  (:mod:`pate.teachers.keys`), and takes a number of steps set by its own size (:mod:`.steps`);
* normalisation constants of tabular inputs are fitted per teacher on its own shard;
* no operation mixes teachers: the teacher axis is a ``vmap`` axis or a Python loop, never reduced
  (:mod:`.runners`).

``tests/test_teachers.py`` checks that changing one shard leaves every other teacher's parameters
bit-identical, under every strategy.

Teachers are trained in chunks of ``teacher_chunk`` (shards read from HDF5 chunk by chunk, so memory is
bounded by the chunk and the parameters, not by the dataset), laid over devices and processes as
:mod:`.mesh` says, and checkpointed as :mod:`.checkpoints` says.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from pate.errors import PateError
from pate.extractor import Extractor
from pate.models import ModelConfig
from pate.teachers.checkpoints import Checkpoints
from pate.teachers.config import TrainConfig, parameter_count, resolve_strategy
from pate.teachers.mesh import plan_layout
from pate.teachers.runners import ChunkData, RunPlan, runner_for
from pate.teachers.shards import Shards, ShardsFile, fit_teacher_preprocessing
from pate.teachers.steps import TeacherFunctions, teacher_functions


@dataclass(frozen=True)
class Progress:
    """What a progress callback is told after each unit of work."""

    steps_done: int
    steps_total: int
    teachers_done: int
    teachers_total: int


@dataclass
class EnsembleResult:
    params: dict  # stacked pytree, leading axis = teacher
    scale: float
    mean: np.ndarray
    std: np.ndarray
    steps: np.ndarray  # (T,) optimiser steps taken per teacher
    seconds: float
    strategy: str
    model: ModelConfig | None = None  # the trained model (the head for the public strategy)
    extractor: Extractor | None = None
    train_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    teacher_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    teacher_chunk: int = 0
    devices: int = 1
    processes: int = 1
    resumed_chunks: int = 0


def train_ensemble(
    shards: Shards | ShardsFile,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    progress: Callable[[Progress], None] | None = None,
    teacher_ids: Sequence[int] | None = None,
    extractor: Extractor | None = None,
    head: ModelConfig | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 5,
) -> EnsembleResult:
    """Train one teacher per shard and return their stacked parameters (see the module docstring).

    ``shards`` is read chunk by chunk. ``teacher_ids`` are the global indices of its teachers (keys
    depend on them; default ``0..T-1``). ``extractor`` is required by the ``public`` strategy, whose
    heads are ``head`` (default: a linear head). Every process of a multi-host run calls this with the
    same arguments and gets every teacher's parameters back.
    """
    if tuple(model_config.input_shape) != tuple(shards.feature_shape):
        raise PateError(
            f"{shards.path}: features have shape {tuple(shards.feature_shape)}, but the model "
            f"expects {tuple(model_config.input_shape)}"
        )
    strategy = resolve_strategy(config.strategy, model_config, public=extractor is not None)
    num_teachers = shards.num_teachers
    ids = np.arange(num_teachers) if teacher_ids is None else np.asarray(list(teacher_ids))
    if len(ids) != num_teachers:
        raise PateError(f"`teacher_ids`: {len(ids)} ids, expected {num_teachers}")
    sizes = np.asarray(shards.sizes, np.int64)
    if (sizes < 1).any():
        raise PateError(f"{shards.path}: a shard has no records, expected at least one")
    max_n = int(shards.max_size)
    trained = model_config
    if strategy == "public":
        if extractor is None:
            raise PateError("`strategy` public: needs `extractor`, a public feature extractor")
        if tuple(extractor.input_shape) != tuple(shards.feature_shape):
            raise PateError(
                f"{shards.path}: features have shape {tuple(shards.feature_shape)}, but the public "
                f"extractor was learned on {tuple(extractor.input_shape)}"
            )
        trained = head or ModelConfig(
            kind="mlp",
            input_shape=(extractor.num_features,),
            num_classes=model_config.num_classes,
            hidden=(),
        )
    if shards.num_classes != trained.num_classes:
        raise PateError(
            f"{shards.path}: {shards.num_classes} classes, but the model has {trained.num_classes}"
        )
    conv = "patches" if strategy == "fold" and trained.is_convolutional else "xla"
    feature_bytes = int(np.prod(trained.input_shape)) * (
        4 if strategy == "public" else np.dtype(shards.feature_dtype).itemsize
    )
    per_teacher_bytes = max_n * feature_bytes + 4 * 4 * parameter_count(trained)
    layout = plan_layout(config, strategy, per_teacher_bytes, num_teachers)
    chunk_size = layout.chunk
    fingerprint = {
        "shards": shards.sha256,
        "model": trained.to_json(),
        "training": config.to_json(),
        "strategy": strategy,
        "chunk": chunk_size,
        "teachers": [int(ids[0]), int(ids[-1]), num_teachers],
        "extractor": None if extractor is None else extractor.config.to_json(),
        "public": None if extractor is None else extractor.public_sha256,
    }
    checkpoints = (
        Checkpoints(checkpoint_dir, fingerprint, config.epochs) if checkpoint_dir else None
    )
    steps = config.epochs * np.ceil(sizes / config.batch_size).astype(np.int64)
    total_steps = int(steps.sum())
    chunks = [
        range(first, min(first + chunk_size, num_teachers))
        for first in range(0, num_teachers, chunk_size)
    ]
    scale = _input_scale(shards, strategy)

    start = time.perf_counter()
    functions: TeacherFunctions | None = None
    finished: dict[int, dict] = {}
    if checkpoints is not None and checkpoints.has_finished():
        functions = teacher_functions(trained, config, max_n, scale, conv)
        template = _chunk_template(functions, chunk_size, trained, shards, strategy)
        finished = checkpoints.finished(template)
    resumed = len(finished)
    steps_done = sum(int(steps[list(chunks[index])].sum()) for index in finished)
    teachers_done = sum(len(chunks[index]) for index in finished)

    def report(step_count: int, teacher_count: int) -> None:
        if progress is not None:
            progress(Progress(step_count, total_steps, teacher_count, num_teachers))

    report(steps_done, teachers_done)
    run = runner_for(strategy)
    try:
        for index, teachers in enumerate(chunks):
            if index in finished:
                continue
            chunk_start = time.perf_counter()
            positions = [p for p in layout.local_positions if p < len(teachers)]
            local_teachers = [teachers[p] for p in positions]
            # Pad the chunk with copies of a teacher of this process (dropped afterwards), so that
            # every chunk has one compiled shape; a process left without a teacher in the last
            # chunk pads with the chunk's first teacher.
            pad_to = len(layout.local_positions) - len(local_teachers)
            local_teachers = local_teachers + [(local_teachers or [teachers[0]])[-1]] * pad_to
            data = shards.read(local_teachers, max_n=max_n)
            if strategy == "public":
                data = _extract(data, extractor)
            _, mean, std = fit_teacher_preprocessing(data)
            if functions is None:
                functions = teacher_functions(trained, config, max_n, scale, conv)
            plan = RunPlan(
                functions=functions,
                strategy=strategy,
                epochs=config.epochs,
                batch_size=config.batch_size,
                layout=layout,
                checkpoints=checkpoints,
                checkpoint_every=checkpoint_every,
                per_step=conv == "xla"
                and trained.is_convolutional
                and jax.default_backend() == "cpu",
            )
            chunk = ChunkData(
                index=index,
                features=data.features,
                labels=data.labels,
                sizes=sizes[np.asarray(local_teachers)],
                mean=mean,
                std=std,
                teacher_ids=ids[np.asarray(local_teachers)].astype(np.int32),
                steps=steps[list(teachers)],
            )
            result = run(
                chunk,
                plan,
                lambda teachers_in, steps_in, _s=steps_done, _t=teachers_done: report(
                    _s + steps_in, _t + teachers_in
                ),
            )
            count = len(teachers)
            params = jax.tree_util.tree_map(lambda leaf, _n=count: leaf[:_n], result.params)
            elapsed = time.perf_counter() - chunk_start
            if layout.sharding is not None:
                # Normalisation constants of the other processes' teachers.
                gathered = layout.to_host(layout.put({"mean": mean, "std": std}))
                mean, std = gathered["mean"], gathered["std"]
            finished[index] = {
                "params": params,
                "mean": mean[:count],
                "std": std[:count],
                "loss": np.asarray(result.loss)[:count],
                "seconds": np.full(count, elapsed / count),
            }
            if checkpoints is not None:
                checkpoints.save_finished(index, finished[index])
            steps_done += int(steps[list(teachers)].sum())
            teachers_done += count
            report(steps_done, teachers_done)
    finally:
        if checkpoints is not None:
            checkpoints.close()

    ordered = [finished[index] for index in range(len(chunks))]
    stacked = jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves), *ordered)
    return EnsembleResult(
        params=stacked["params"],
        scale=scale,
        mean=stacked["mean"],
        std=stacked["std"],
        steps=steps,
        seconds=time.perf_counter() - start,
        strategy=strategy,
        model=trained,
        extractor=extractor if strategy == "public" else None,
        train_loss=stacked["loss"],
        teacher_seconds=stacked["seconds"],
        teacher_chunk=chunk_size,
        devices=len(layout.devices),
        processes=jax.process_count(),
        resumed_chunks=resumed,
    )


def _input_scale(shards: Shards | ShardsFile, strategy: str) -> float:
    """What the trained model's inputs are multiplied by: 1/255 for integer images, else 1 (the
    public strategy's heads see extractor features)."""
    if strategy == "public":
        return 1.0
    return 1.0 / 255.0 if np.dtype(shards.feature_dtype).kind in ("u", "i") else 1.0


def _chunk_template(
    functions: TeacherFunctions,
    chunk_size: int,
    trained: ModelConfig,
    shards: Shards | ShardsFile,
    strategy: str,
) -> dict:
    """Shapes of a finished chunk's checkpoint (for restoring)."""
    params, _ = jax.eval_shape(functions.init, jnp.zeros((), jnp.int32))
    if strategy == "public" or np.dtype(shards.feature_dtype).kind == "f":
        prep_shape = tuple(trained.input_shape)
    else:
        prep_shape = (1,) * len(trained.input_shape)
    stat = np.zeros((chunk_size, *prep_shape), np.float32)
    return {
        "params": jax.tree_util.tree_map(
            lambda s: np.zeros((chunk_size, *s.shape), s.dtype), params
        ),
        "mean": stat,
        "std": stat,
        "loss": np.zeros(chunk_size, np.float32),
        "seconds": np.zeros(chunk_size, np.float64),
    }


def _extract(data: Shards, extractor: Extractor) -> Shards:
    """Replace images by public-extractor features (each teacher's rows only)."""
    count, max_n = data.features.shape[:2]
    flat = data.features.reshape(count * max_n, *data.features.shape[2:])
    valid = (np.arange(max_n)[None, :] < data.sizes[:, None]).reshape(-1)
    features = np.zeros((count * max_n, extractor.num_features), np.float32)
    features[valid] = extractor.features(flat[valid])
    return dataclasses.replace(data, features=features.reshape(count, max_n, -1))
