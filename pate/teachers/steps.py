"""One teacher's jitted programs: initialisation, batch order, a train step and a train epoch.

Each teacher takes ``epochs * ceil(n_t / batch_size)`` optimiser steps, a budget that depends on its own
shard size only. A batch position past the teacher's size points at its own row 0 and weighs zero (its
gradient is an exact zero), and updates after its last batch of an epoch are masked out, parameters and
optimiser state kept bit for bit. There is no early stopping (a held-out split would cost a fifth of a
small shard, and a stopping rule on another teacher's figures would break isolation).

The optimiser is Adam (Kingma & Ba 2015; AdamW, decoupled weight decay, Loshchilov & Hutter 2019,
when ``weight_decay > 0``) written out in :func:`masked_adam` so that the masking fuses into its
arithmetic.

The functions are built for one teacher and take the teacher's arrays without a teacher axis;
:func:`compiled` adds the jitted and ``vmap``-ed forms. Both are cached, so chunks and runs that share
the model, training hyperparameters, padded length and scale share compiled programs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax

from pate.models import ModelConfig, preprocess
from pate.teachers.config import TrainConfig
from pate.teachers.keys import epoch_key, init_key, shuffle_rows

#: A teacher's parameters (a pytree; a leading teacher axis when stacked).
Params = Any
#: Adam's state: ``{"count": (), "mu": like params, "nu": like params}``.
OptState = dict

#: Adam's constants (Kingma & Ba 2015, Algorithm 1).
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def adam_init(params: Params) -> OptState:
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return {"count": jnp.zeros((), jnp.int32), "mu": zeros, "nu": zeros}


def masked_adam(
    params: Params,
    state: OptState,
    grads: Params,
    active: jax.Array,
    learning_rate: float,
    weight_decay: float,
) -> tuple[Params, OptState]:
    """One Adam step (AdamW when ``weight_decay > 0``) taken only where ``active``; elsewhere
    parameters and state are kept bit for bit. The selection sits inside each leaf's arithmetic, so
    XLA fuses it into one loop per leaf (faster than optax's update followed by a select on the
    vectorised CPU path; BENCHMARKS.md)."""
    count = jnp.where(active, state["count"] + 1, state["count"])
    step = jnp.maximum(count, 1).astype(jnp.float32)
    correction1 = 1.0 - ADAM_B1**step
    correction2 = 1.0 - ADAM_B2**step

    def leaf(p, m, v, g):
        m_new = ADAM_B1 * m + (1.0 - ADAM_B1) * g
        v_new = ADAM_B2 * v + (1.0 - ADAM_B2) * g * g
        update = (m_new / correction1) / (jnp.sqrt(v_new / correction2) + ADAM_EPS)
        if weight_decay > 0:
            update = update + weight_decay * p
        return (
            jnp.where(active, p - learning_rate * update, p),
            jnp.where(active, m_new, m),
            jnp.where(active, v_new, v),
        )

    out = jax.tree_util.tree_map(leaf, params, state["mu"], state["nu"], grads)
    treedef = jax.tree_util.tree_structure(params)
    parts = jax.tree_util.tree_transpose(treedef, jax.tree_util.tree_structure((0, 0, 0)), out)
    new_params, mu, nu = parts
    return new_params, {"count": count, "mu": mu, "nu": nu}


# The signatures of one teacher's functions. ``x`` (max_n, ...) and ``y`` (max_n,) are its padded
# shard, ``n`` its size, ``mean`` and ``std`` its normalisation; ``teacher_id`` its global index.


class InitFn(Protocol):
    def __call__(self, teacher_id: jax.Array) -> tuple[Params, OptState]: ...


class OrderFn(Protocol):
    """The epoch's row order, padded with row 0 to ``num_batches * batch_size`` positions."""

    def __call__(
        self, teacher_id: jax.Array, epoch: jax.Array | int, n: jax.Array
    ) -> jax.Array: ...


class StepFn(Protocol):
    """Train step ``batch`` of an epoch whose order is ``row_order``."""

    def __call__(
        self,
        params: Params,
        opt_state: OptState,
        x: jax.Array,
        y: jax.Array,
        n: jax.Array,
        mean: jax.Array,
        std: jax.Array,
        row_order: jax.Array,
        batch: jax.Array | int,
    ) -> tuple[Params, OptState, jax.Array]: ...


class EpochFn(Protocol):
    """Every step of ``epoch`` (``lax.scan``); returns the epoch's mean loss over its real steps."""

    def __call__(
        self,
        params: Params,
        opt_state: OptState,
        x: jax.Array,
        y: jax.Array,
        n: jax.Array,
        mean: jax.Array,
        std: jax.Array,
        teacher_id: jax.Array,
        epoch: jax.Array | int,
    ) -> tuple[Params, OptState, jax.Array]: ...


@dataclass(frozen=True)
class TeacherFunctions:
    """One teacher's programs, not yet jitted, for shards padded to ``num_batches * batch_size``."""

    init: InitFn
    order: OrderFn
    step: StepFn
    epoch: EpochFn
    num_batches: int
    batch_size: int


def teacher_functions(
    model_config: ModelConfig, config: TrainConfig, max_n: int, scale: float, conv: str
) -> TeacherFunctions:
    """The functions of a teacher of ``model_config`` (convolutions as ``conv``) trained as
    ``config`` on shards padded to ``max_n`` rows whose inputs are multiplied by ``scale``."""
    # The epoch count, strategy, devices and chunk do not enter the compiled functions: leave
    # them out of the cache key so that runs differing only there share compiled programs.
    return _teacher_functions_cached(
        model_config,
        dataclasses.replace(config, epochs=1, strategy="auto", devices=1, teacher_chunk=0),
        max_n,
        scale,
        conv,
    )


@functools.lru_cache(maxsize=32)
def _teacher_functions_cached(
    model_config: ModelConfig, config: TrainConfig, max_n: int, scale: float, conv: str
) -> TeacherFunctions:
    model = model_config.build(conv=conv)
    batch_size = config.batch_size
    num_batches = math.ceil(max_n / batch_size)
    padding = num_batches * batch_size - max_n
    dummy = jnp.zeros((1, *model_config.input_shape), jnp.float32)
    seed = config.seed

    def init(teacher_id):
        params = model.init(init_key(seed, teacher_id), dummy)["params"]
        return params, adam_init(params)

    def order(teacher_id, epoch, n):
        permutation = shuffle_rows(epoch_key(seed, teacher_id, epoch), n, max_n)
        return jnp.concatenate([permutation, jnp.zeros(padding, permutation.dtype)])

    def loss_fn(params, x, y, weight):
        logits = model.apply({"params": params}, x)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0)

    def update(params, opt_state, inputs, labels, valid, active):
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs, labels, valid.astype(jnp.float32))
        params, opt_state = masked_adam(
            params, opt_state, grads, active, config.learning_rate, config.weight_decay
        )
        return params, opt_state, jnp.where(active, loss, 0.0)

    def step(params, opt_state, x, y, n, mean, std, row_order, batch):
        position = batch * batch_size + jnp.arange(batch_size)
        valid = position < n
        rows = jnp.where(
            valid, jax.lax.dynamic_slice(row_order, (batch * batch_size,), (batch_size,)), 0
        )
        inputs = preprocess(x[rows], scale, mean, std)
        return update(params, opt_state, inputs, y[rows], valid, batch * batch_size < n)

    def epoch(params, opt_state, x, y, n, mean, std, teacher_id, epoch_index):
        # The same batches as ``step`` (valid rows in this epoch's order, padding masked), gathered
        # and normalised once per epoch rather than once per step.
        position = jnp.arange(num_batches * batch_size)
        valid = position < n
        rows = jnp.where(valid, order(teacher_id, epoch_index, n), 0)
        inputs = preprocess(x[rows], scale, mean, std)
        batches = (
            inputs.reshape(num_batches, batch_size, *inputs.shape[1:]),
            y[rows].reshape(num_batches, batch_size),
            valid.reshape(num_batches, batch_size),
            jnp.arange(num_batches) * batch_size < n,
        )

        def body(carry, batch):
            p, o, loss = update(*carry, *batch)
            return (p, o), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), batches)
        return params, opt_state, losses.sum() / jnp.maximum(jnp.ceil(n / batch_size), 1)

    return TeacherFunctions(init, order, step, epoch, num_batches, batch_size)


@dataclass(frozen=True)
class Compiled:
    """The jitted forms of :class:`TeacherFunctions`: for one teacher, and ``vmap``-ed over a
    chunk's teacher axis (every argument but ``epoch`` and ``batch`` carries it)."""

    init: InitFn
    order: OrderFn
    step: StepFn
    epoch: EpochFn
    vmap_init: InitFn
    vmap_order: OrderFn
    vmap_step: StepFn
    vmap_epoch: EpochFn


@functools.lru_cache(maxsize=32)
def compiled(functions: TeacherFunctions) -> Compiled:
    """The jitted forms, built once per set of teacher functions (so chunks and runs share them)."""
    return Compiled(
        init=jax.jit(functions.init),
        order=jax.jit(functions.order),
        step=jax.jit(functions.step, donate_argnums=(0, 1)),
        epoch=jax.jit(functions.epoch, donate_argnums=(0, 1)),
        vmap_init=jax.jit(jax.vmap(functions.init)),
        vmap_order=jax.jit(jax.vmap(functions.order, in_axes=(0, None, 0))),
        vmap_step=jax.jit(
            jax.vmap(functions.step, in_axes=(0, 0, 0, 0, 0, 0, 0, 0, None)),
            donate_argnums=(0, 1),
        ),
        vmap_epoch=jax.jit(
            jax.vmap(functions.epoch, in_axes=(0, 0, 0, 0, 0, 0, 0, 0, None)),
            donate_argnums=(0, 1),
        ),
    )
