"""Training one chunk of teachers: vectorised (one program over the teacher axis) or one at a time.

Both runners have one signature, ``run(chunk, plan, on_progress) -> ChunkResult``: :class:`ChunkData`
holds the chunk's teachers as this process holds them, :class:`RunPlan` what every chunk of a run
shares, and ``on_progress(teachers_done, steps_done)`` counts within the chunk. No operation mixes
teachers: the teacher axis is a ``vmap`` axis or a Python loop, never reduced.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pate.teachers.checkpoints import Checkpoints
from pate.teachers.config import VECTORISED
from pate.teachers.mesh import Layout
from pate.teachers.steps import Params, TeacherFunctions, compiled

#: ``on_progress(teachers_done, steps_done)``, both counted within the chunk.
ChunkProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class ChunkData:
    """One chunk's teachers as this process holds them: its own positions of the chunk, padded with
    copies of one of its teachers to the chunk's local width (copies carry the same teacher id)."""

    index: int  # the chunk's number in the run (checkpoints are saved under it)
    features: np.ndarray  # (t, max_n, ...) padded shards (public strategy: extractor features)
    labels: np.ndarray  # (t, max_n)
    sizes: np.ndarray  # (t,) records per shard
    mean: np.ndarray  # (t, ...) per-teacher normalisation, fitted on its own rows
    std: np.ndarray  # (t, ...)
    teacher_ids: np.ndarray  # (t,) int32 global indices (the key tree's t)
    steps: np.ndarray  # (teachers of the chunk,) optimiser steps of each, for progress


@dataclass(frozen=True)
class ChunkResult:
    params: Params  # stacked, leading axis over the chunk's positions (every process's)
    loss: np.ndarray  # mean loss of each teacher's last epoch


@dataclass(frozen=True)
class RunPlan:
    """What every chunk of a run shares."""

    functions: TeacherFunctions
    strategy: str  # resolved: loop, scan, vmap, fold or public
    epochs: int
    batch_size: int
    layout: Layout
    checkpoints: Checkpoints | None = None
    checkpoint_every: int = 0  # save the chunk in progress every this many epochs (0: never)
    per_step: bool = False  # vectorised: one dispatch per step instead of per epoch


def run_vectorised(chunk: ChunkData, plan: RunPlan, on_progress: ChunkProgress) -> ChunkResult:
    """A chunk's teachers, vmapped over the layout: one dispatch per epoch (``lax.scan`` over its
    steps), or with ``plan.per_step`` one dispatch per step (XLA's CPU backend runs convolutions
    inside a loop body slower than at top level). Resumes from, and saves, the chunk's progress."""
    programs = compiled(plan.functions)
    layout, checkpoints, every = plan.layout, plan.checkpoints, plan.checkpoint_every
    steps_per_epoch = int(chunk.steps.sum()) // plan.epochs
    placed = layout.put(
        {
            "x": chunk.features,
            "y": chunk.labels.astype(np.int32),
            "n": chunk.sizes.astype(np.int32),
            "mean": chunk.mean,
            "std": chunk.std,
            "id": chunk.teacher_ids,
        }
    )
    params, opt_state = programs.vmap_init(placed["id"])
    first_epoch = 0
    if checkpoints is not None:
        saved = checkpoints.latest(chunk.index, {"params": params, "opt_state": opt_state})
        if saved is not None:
            first_epoch, state = saved
            params, opt_state = state["params"], state["opt_state"]
            on_progress(0, steps_per_epoch * first_epoch)
    loss = jnp.zeros(len(chunk.teacher_ids))
    data = (placed["x"], placed["y"], placed["n"], placed["mean"], placed["std"])
    for epoch in range(first_epoch, plan.epochs):
        if plan.per_step:
            row_order = programs.vmap_order(placed["id"], epoch, placed["n"])
            losses = []
            for batch in range(plan.functions.num_batches):
                params, opt_state, batch_loss = programs.vmap_step(
                    params, opt_state, *data, row_order, batch
                )
                losses.append(batch_loss)
            loss = sum(losses) / jnp.maximum(jnp.ceil(placed["n"] / plan.functions.batch_size), 1)
        else:
            params, opt_state, loss = programs.vmap_epoch(
                params, opt_state, *data, placed["id"], epoch
            )
        jax.block_until_ready(params)
        done = epoch + 1
        if checkpoints is not None and every and done % every == 0 and done < plan.epochs:
            checkpoints.save_progress(chunk.index, done, {"params": params, "opt_state": opt_state})
        on_progress(0, steps_per_epoch * done)
    return ChunkResult(params=layout.to_host(params), loss=layout.to_host(loss))


def run_sequential(chunk: ChunkData, plan: RunPlan, on_progress: ChunkProgress) -> ChunkResult:
    """A chunk's teachers one after another (one process, one device): ``loop`` dispatches every
    step, ``scan`` every epoch. A padding copy of a teacher reuses its results."""
    programs = compiled(plan.functions)
    per_teacher: list[Params] = []
    losses: list[float] = []
    first_position: dict[int, int] = {}
    for position in range(len(chunk.teacher_ids)):
        teacher_id = int(chunk.teacher_ids[position])
        if teacher_id in first_position:  # a padding copy
            per_teacher.append(per_teacher[first_position[teacher_id]])
            losses.append(losses[first_position[teacher_id]])
            continue
        first_position[teacher_id] = position
        teachers_done = len(first_position) - 1
        size = int(chunk.sizes[position])
        batches = math.ceil(size / plan.batch_size)
        x = jnp.asarray(chunk.features[position])
        y = jnp.asarray(chunk.labels[position].astype(np.int32))
        n = jnp.int32(size)
        mean, std = jnp.asarray(chunk.mean[position]), jnp.asarray(chunk.std[position])
        tid = jnp.int32(teacher_id)
        params, opt_state = programs.init(tid)
        loss: jax.Array | list[jax.Array] = jnp.float32(0)
        for epoch in range(plan.epochs):
            if plan.strategy == "loop":
                row_order = programs.order(tid, epoch, n)
                batch_losses = []
                for batch in range(batches):
                    params, opt_state, batch_loss = programs.step(
                        params, opt_state, x, y, n, mean, std, row_order, jnp.int32(batch)
                    )
                    batch_losses.append(batch_loss)
                loss = batch_losses
            else:
                params, opt_state, loss = programs.epoch(
                    params, opt_state, x, y, n, mean, std, tid, epoch
                )
            if epoch + 1 < plan.epochs:
                on_progress(
                    teachers_done,
                    int(chunk.steps[:teachers_done].sum()) + (epoch + 1) * batches,
                )
        per_teacher.append(jax.tree_util.tree_map(np.asarray, params))
        losses.append(
            float(np.mean([np.asarray(v) for v in loss])) if isinstance(loss, list) else float(loss)
        )
        on_progress(len(first_position), int(chunk.steps[: len(first_position)].sum()))
    stacked = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *per_teacher)
    return ChunkResult(params=stacked, loss=np.asarray(losses, np.float32))


Runner = Callable[[ChunkData, RunPlan, ChunkProgress], ChunkResult]


def runner_for(strategy: str) -> Runner:
    """The runner of a resolved strategy."""
    return run_vectorised if strategy in VECTORISED else run_sequential
