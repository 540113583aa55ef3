"""Training the teacher ensemble: one teacher per shard, computed over a stacked teacher axis.

Isolation (design rule 2; the property behind the sensitivity of Papernot et al. 2017, Theorem 2, and
2018, §3): teacher ``t``'s parameters are a function of its own shard, its own key and the public
configuration only (model, training config, the padded length ``max_n``, the teacher count, and for the
``public`` strategy the extractor, itself a function of public data only). Concretely:

* each teacher draws its batches from a permutation of *its own* rows: in epoch ``e``, a random
  order from the key ``fold_in(fold_in(k_t, 1), e)`` and the teacher's own size, which does not
  depend on how far shards are padded (:func:`_shuffle_rows`);
* a batch position past the teacher's size points at its own row 0 and weighs zero (its gradient is an
  exact zero), and updates after its last batch of an epoch are masked out, parameters and optimiser
  state kept bit for bit; so teacher ``t`` takes ``epochs * ceil(n_t / batch_size)`` steps: a fixed
  budget that depends on its own shard size only. There is no early stopping (a held-out split would
  cost a fifth of 240 records, and a stopping rule on another teacher's figures would break isolation);
* normalisation constants of tabular inputs are fitted per teacher on its own shard;
* no operation mixes teachers: the teacher axis is a ``vmap`` axis or a Python loop, never reduced.

The optimiser is Adam (Kingma & Ba 2015; AdamW with decoupled weight decay when ``weight_decay > 0``)
written out in :func:`_masked_adam` so that the masking fuses into its arithmetic.

``tests/test_teachers.py`` checks that changing one shard leaves every other teacher's parameters
bit-identical, under every strategy.

Strategies (``TrainConfig.strategy``), all training the same teachers with the same key tree:

* ``loop``: a Python loop over teachers and over steps of one jitted train step (one dispatch per step:
  the honest baseline of "train the teachers one after another");
* ``scan``: a loop over teachers of one jitted *epoch* (``lax.scan`` over its steps);
* ``vmap``: one jitted epoch ``vmap``-ed over a chunk of teachers (for convolutional models on the
  CPU, one ``vmap``-ed step per dispatch: XLA's CPU backend runs convolutions inside a ``lax.scan``
  body several times slower than at top level);
* ``fold``: ``vmap`` with convolutions as image patches x a per-teacher kernel, a batched matrix
  product (see :mod:`pate.models`); the same as ``vmap`` for dense models;
* ``public``: a feature extractor learned from the public unlabeled data only (:mod:`pate.extractor`),
  then per-teacher dense heads ``vmap``-ed over the teacher axis. The teachers are then extractor +
  head; the head is ``ModelConfig(kind="mlp", input_shape=(features,), hidden=...)``;
* ``auto``: ``public`` when a public set is given, else the measured winner for the backend and model
  (:data:`AUTO_STRATEGY`, from ``scripts/bench_teachers.py``): on the CPU, ``vmap`` for small dense
  models and ``loop`` otherwise; ``vmap`` on accelerators.

Teachers are trained in chunks of ``teacher_chunk`` (shards read from HDF5 chunk by chunk, so memory is
bounded by the chunk and the parameters, not by the dataset). With ``devices > 1``, or several processes
(:func:`initialize_distributed`), each chunk's teacher axis is laid over a 1-D
``jax.sharding.Mesh`` of all processes' devices; each process reads only the shards of the teachers
that sit on its own devices.

Key tree (one ``seed``): ``root = key(seed)``; teacher ``t``: ``k_t = fold_in(fold_in(root, 1), t)``
(independent of the number of teachers); its initialisation ``fold_in(k_t, 0)``; its batch order in
epoch ``e`` as above.

Checkpoints (orbax): with ``checkpoint_dir``, the in-progress chunk's parameters and optimiser state are
saved every ``checkpoint_every`` epochs and every finished chunk's parameters once; a rerun with the
same inputs resumes from them and ends with the same parameters as an uninterrupted run (everything
random is derived from the key tree and the epoch, nothing from wall time).

Teachers file (``teachers/teachers.h5``, ``format = "pate-teachers"``)::

    params/<layer>/<name>   (T, ...) stacked parameters (of the head, for the public strategy)
    preprocessing/mean, preprocessing/std   (T, ...) per-teacher normalisation; attr scale
    report/accuracy (T,) test accuracy or NaN, report/shard_size (T,), report/steps (T,),
    report/train_loss (T,) mean loss of the last epoch, report/seconds (T,) training time per teacher
        (a chunk's time divided by its teachers for the vectorised strategies)
    individuals   sorted ids of every individual the teachers saw
    extractor/    only for the public strategy: mean (D,), whitening (D, D), centroids (K, D);
                  attrs config (JSON), input_shape, scale, public_sha256
    attrs: format, version, model (JSON: the architecture asked for, on raw records), head (JSON,
           public strategy only: the per-teacher model on extractor features, whose parameters
           ``params`` holds), training (JSON), num_teachers, num_classes, class_names,
           shards_sha256, seconds, strategy, backend, devices, processes, teacher_chunk
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from pate.errors import PateError
from pate.extractor import Extractor, ExtractorConfig
from pate.io import atomic_file, decode_ids, file_fingerprint, open_h5, require_format
from pate.models import ModelConfig, Preprocessing, preprocess
from pate.partition import SHARDS_FORMAT

TEACHERS_FORMAT = "pate-teachers"
TEACHERS_VERSION = 1
TEACHERS_FILE = "teachers.h5"
STRATEGIES = ("auto", "loop", "scan", "vmap", "fold", "public")
VECTORISED = ("vmap", "fold", "public")
CHUNK_MEMORY_BYTES = 256 * 2**20

#: ``--strategy auto`` without a public set: (backend, model kind) -> strategy, as measured by
#: ``scripts/bench_teachers.py`` on a 2-core x86 CPU (BENCHMARKS.md). On the CPU a per-step loop beats
#: every vectorised form for convolutions (a vmapped convolution becomes a grouped convolution, the
#: patches form a batched product of thin matrices, and XLA runs convolutions inside ``lax.scan``
#: slower than at top level), and for MLPs whose steps carry real arithmetic; ``vmap`` wins where a
#: step is so small that dispatch dominates: dense models up to :data:`AUTO_VMAP_MAX_PARAMS`
#: parameters (tabular MLPs, the public strategy's heads). Other backends (GPU, TPU): ``vmap``.
AUTO_STRATEGY: dict[tuple[str, str], str] = {
    ("cpu", "mlp"): "vmap",
    ("cpu", "cnn"): "loop",
    ("cpu", "cnn-small"): "loop",
}
#: Largest dense model for which ``auto`` picks ``vmap`` on the CPU (measured crossover: 16 MNIST MLP
#: teachers, 784-64-10 (51k parameters): vmap 0.24 s, loop 0.38 s; 784-128-10 (102k): vmap 0.44 s,
#: loop 0.35 s).
AUTO_VMAP_MAX_PARAMS = 64_000


@dataclass(frozen=True)
class TrainConfig:
    """How every teacher is trained (the same for all).

    ``devices`` counts devices per process; ``teacher_chunk`` teachers are trained (and read from
    disk) together, 0 sizing it from :data:`CHUNK_MEMORY_BYTES`. Neither changes what a teacher
    learns beyond float rounding.
    """

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    strategy: str = "auto"
    devices: int = 1
    teacher_chunk: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise PateError(f"Expected epochs={self.epochs} >= 1.")
        if self.batch_size < 1:
            raise PateError(f"Expected batch_size={self.batch_size} >= 1.")
        if not (self.learning_rate > 0):
            raise PateError(f"Expected learning_rate={self.learning_rate} > 0.")
        if not (self.weight_decay >= 0):
            raise PateError(f"Expected weight_decay={self.weight_decay} >= 0.")
        if self.strategy not in STRATEGIES:
            raise PateError(f"Expected strategy={self.strategy!r} in {', '.join(STRATEGIES)}.")
        if self.devices < 1:
            raise PateError(f"Expected devices={self.devices} >= 1.")
        if self.teacher_chunk < 0:
            raise PateError(f"Expected teacher_chunk={self.teacher_chunk} >= 0.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


#: Adam's constants (Kingma & Ba 2015, Algorithm 1).
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def _adam_init(params: Any) -> dict:
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return {"count": jnp.zeros((), jnp.int32), "mu": zeros, "nu": zeros}


def _masked_adam(
    params: Any,
    state: dict,
    grads: Any,
    active: jax.Array,
    learning_rate: float,
    weight_decay: float,
) -> tuple[Any, dict]:
    """One Adam step (AdamW, decoupled weight decay, Loshchilov & Hutter 2019, when
    ``weight_decay > 0``) taken only where ``active``; elsewhere parameters and state are kept bit
    for bit. The selection sits inside each leaf's arithmetic, so XLA fuses it into one loop per
    leaf (a third faster than optax's update followed by a select on the vectorised CPU path)."""
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


# ----------------------------------------------------------------------------------------------------
# Shards


@dataclass(frozen=True)
class Shards:
    """The shards of a set of teachers, in memory, padded to a common length."""

    features: np.ndarray  # (T, max_n, ...)
    labels: np.ndarray  # (T, max_n)
    sizes: np.ndarray  # (T,)
    num_classes: int
    class_names: tuple[str, ...]
    individual_ids: tuple[np.ndarray, ...]  # per teacher, for the public/private overlap check
    sha256: str
    path: str

    @property
    def num_teachers(self) -> int:
        return len(self.sizes)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[2:])

    @property
    def max_size(self) -> int:
        return int(self.features.shape[1])

    def read(self, teachers: Sequence[int]) -> Shards:
        rows = np.asarray(list(teachers), dtype=np.int64)
        return dataclasses.replace(
            self,
            features=self.features[rows],
            labels=self.labels[rows],
            sizes=self.sizes[rows],
            individual_ids=tuple(self.individual_ids[t] for t in rows),
        )

    def individuals(self) -> np.ndarray:
        return np.concatenate(self.individual_ids)


@dataclass(frozen=True)
class ShardsFile:
    """A ``pate-shards`` file opened lazily: sizes and attributes now, records per chunk on demand."""

    path: str
    offsets: np.ndarray  # (T+1,)
    feature_shape: tuple[int, ...]
    feature_dtype: np.dtype
    num_classes: int
    class_names: tuple[str, ...]
    sha256: str

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int64)

    @property
    def num_teachers(self) -> int:
        return len(self.offsets) - 1

    @property
    def max_size(self) -> int:
        return int(self.sizes.max())

    def read(self, teachers: Sequence[int], *, max_n: int | None = None) -> Shards:
        """The shards of ``teachers``, padded to ``max_n`` rows (default: the file's largest shard)."""
        teachers = [int(t) for t in teachers]
        max_n = self.max_size if max_n is None else max_n
        features = np.zeros((len(teachers), max_n, *self.feature_shape), self.feature_dtype)
        labels = np.zeros((len(teachers), max_n), np.int64)
        ids = []
        with open_h5(self.path, "shards file") as handle:
            # Consecutive teachers are read as one contiguous slice.
            first, last = min(teachers), max(teachers)
            block_start, block_stop = int(self.offsets[first]), int(self.offsets[last + 1])
            contiguous = teachers == list(range(first, last + 1))
            if contiguous:
                block_x = handle["features"][block_start:block_stop]
                block_y = handle["labels"][block_start:block_stop]
                block_id = handle["individual_id"][block_start:block_stop]
            for row, teacher in enumerate(teachers):
                start, stop = int(self.offsets[teacher]), int(self.offsets[teacher + 1])
                if contiguous:
                    a, b = start - block_start, stop - block_start
                    x, y, i = block_x[a:b], block_y[a:b], block_id[a:b]
                else:
                    x = handle["features"][start:stop]
                    y = handle["labels"][start:stop]
                    i = handle["individual_id"][start:stop]
                features[row, : stop - start] = x
                labels[row, : stop - start] = y
                ids.append(decode_ids(i))
        if features.dtype.kind == "f" and not np.isfinite(features).all():
            raise PateError(
                f"{self.path}: dataset 'features' has NaN or inf, expected finite values"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise PateError(
                f"{self.path}: dataset 'labels' has values outside 0..{self.num_classes - 1}"
            )
        return Shards(
            features=features,
            labels=labels,
            sizes=self.sizes[teachers],
            num_classes=self.num_classes,
            class_names=self.class_names,
            individual_ids=tuple(ids),
            sha256=self.sha256,
            path=self.path,
        )

    def individuals(self) -> np.ndarray:
        with open_h5(self.path, "shards file") as handle:
            return decode_ids(handle["individual_id"][()])


def open_shards(path: str | os.PathLike) -> ShardsFile:
    """Open a ``pate-shards`` file and check its layout; no record is read yet."""
    with open_h5(path, "shards file") as handle:
        require_format(handle, path, SHARDS_FORMAT)
        for name in ("features", "labels", "individual_id", "shard_offsets"):
            if name not in handle:
                raise PateError(f"{path}: missing dataset {name!r}, expected a pate-shards file")
        offsets = handle["shard_offsets"][()].astype(np.int64)
        total = handle["features"].shape[0]
        if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != total:
            raise PateError(
                f"{path}: 'shard_offsets' runs {offsets[:1]}..{offsets[-1:]}, expected 0..{total}"
            )
        sizes = np.diff(offsets)
        if (sizes < 0).any():
            raise PateError(f"{path}: 'shard_offsets' decreases, expected non-decreasing offsets")
        if (sizes == 0).any():
            empty = int(np.flatnonzero(sizes == 0)[0])
            raise PateError(f"{path}: shard {empty} has no records, expected at least one")
        class_names = tuple(
            v.decode() if isinstance(v, bytes) else str(v)
            for v in handle.attrs.get("class_names", [])
        )
        return ShardsFile(
            path=str(path),
            offsets=offsets,
            feature_shape=tuple(handle["features"].shape[1:]),
            feature_dtype=handle["features"].dtype,
            num_classes=int(handle.attrs["num_classes"]),
            class_names=class_names,
            sha256=file_fingerprint(path),
        )


def load_shards(path: str | os.PathLike, teachers: Sequence[int] | None = None) -> Shards:
    """Read the shards of ``teachers`` (all by default) from a ``pate-shards`` file into memory.

    Only the rows of the requested teachers are read. For large files prefer :func:`open_shards`,
    which :func:`train_ensemble` reads chunk by chunk.
    """
    source = open_shards(path)
    teachers = range(source.num_teachers) if teachers is None else teachers
    return source.read(teachers, max_n=int(source.sizes[list(teachers)].max()))


def fit_teacher_preprocessing(shards: Shards) -> tuple[float, np.ndarray, np.ndarray]:
    """Per-teacher normalisation fitted on each teacher's own rows only: (scale, mean (T,...), std)."""
    return Preprocessing.fit_stacked(shards.features, shards.sizes)


# ----------------------------------------------------------------------------------------------------
# Strategy and keys


def resolve_strategy(
    strategy: str, model: ModelConfig, backend: str | None = None, *, public: bool = False
) -> str:
    """``auto``: ``public`` when a public set is given, else :data:`AUTO_STRATEGY`."""
    if strategy == "public" and not public:
        raise PateError("--strategy public: needs --public PUBLIC.h5 to learn the extractor from")
    if strategy != "auto":
        if public and strategy != "public":
            raise PateError(
                f"--public: only used by --strategy public or auto, found --strategy {strategy}"
            )
        return strategy
    if public:
        return "public"
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return "vmap"
    chosen = AUTO_STRATEGY.get((backend, model.kind), "loop")
    if chosen == "vmap" and _parameter_count(model) > AUTO_VMAP_MAX_PARAMS:
        return "loop"
    return chosen


def teacher_keys(seed: int, teachers: int | Sequence[int]) -> jax.Array:
    """The keys ``k_t`` of the key tree for ``teachers`` (a count, or global teacher indices)."""
    ids = np.arange(teachers) if isinstance(teachers, int) else np.asarray(list(teachers))
    return _keys_of(jnp.asarray(ids, jnp.int32), seed)


def _keys_of(ids: jax.Array, seed: int) -> jax.Array:
    base = jax.random.fold_in(jax.random.key(seed), 1)
    return jax.vmap(lambda t: jax.random.fold_in(base, t))(ids)


#: Sorting rounds of :func:`_shuffle_rows`.
SHUFFLE_ROUNDS = 2


def _shuffle_rows(key: jax.Array, n: jax.Array, max_n: int) -> jax.Array:
    """A uniformly random order of rows ``0..n-1``, then the padded rows ``n..max_n-1`` in order.

    Each of :data:`SHUFFLE_ROUNDS` rounds sorts single ``uint32`` keys: a padding flag (bit 31), then
    ``31 - b`` random bits, then the current position in the low ``b`` bits, where ``b`` is the bit
    length of ``n - 1``; the sorted keys' low bits give the new arrangement. (XLA sorts one integer
    operand several times faster than a float key with an index, which was a third of a small
    vectorised teacher's epoch.) Ties in the random bits keep the previous round's order, so a pair of
    rows stays in index order only if it ties in every round: about ``n**2 / 2 * 2**(-2 * (31 - b))``
    such pairs per epoch, below 1/8 for shards of up to 32,768 rows.

    Isolation: the random value at position ``p`` depends on ``key`` and ``p`` only (JAX's
    partitionable threefry; else each position gets its own ``fold_in`` key), and ``b`` on the
    teacher's own ``n``; so the order does not change when other shards pad ``max_n`` further.
    """
    positions = jnp.arange(max_n, dtype=jnp.uint32)
    n = jnp.asarray(n, jnp.uint32)
    valid = positions < n
    width = 32 - jax.lax.clz(jnp.maximum(n, 2) - 1)  # bit length of n - 1 (at least 1)
    low = (jnp.uint32(1) << width) - 1
    arrangement = jnp.arange(max_n, dtype=jnp.int32)
    for round_index in range(SHUFFLE_ROUNDS):
        round_key = jax.random.fold_in(key, round_index)
        if jax.config.jax_threefry_partitionable:
            bits = jax.random.bits(round_key, (max_n,), jnp.uint32)
        else:
            bits = jax.vmap(lambda p, k=round_key: jax.random.bits(jax.random.fold_in(k, p)))(
                positions
            )
        random = (bits >> (width + 1)) << width
        keys = jnp.where(valid, random | positions, jnp.uint32(1 << 31) | positions)
        ordered = jnp.sort(keys)
        source = jnp.where(valid, ordered & low, ordered & jnp.uint32(0x7FFFFFFF))
        arrangement = arrangement[source.astype(jnp.int32)]
    return arrangement


# ----------------------------------------------------------------------------------------------------
# The functions of one teacher


@dataclass(frozen=True)
class _TeacherFunctions:
    init: Callable  # (teacher_id) -> (params, opt_state)
    order: Callable  # (teacher_id, epoch, n) -> row order padded to num_batches * batch
    step: Callable  # (params, opt, x, y, n, mean, std, order, batch) -> (params, opt, loss)
    epoch: Callable  # (params, opt, x, y, n, mean, std, teacher_id, epoch) -> (params, opt, loss)
    num_batches: int
    batch_size: int


def _teacher_functions(
    model_config: ModelConfig, config: TrainConfig, max_n: int, scale: float, conv: str
) -> _TeacherFunctions:
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
) -> _TeacherFunctions:
    model = model_config.build(conv=conv)
    batch_size = config.batch_size
    num_batches = math.ceil(max_n / batch_size)
    padding = num_batches * batch_size - max_n
    dummy = jnp.zeros((1, *model_config.input_shape), jnp.float32)
    seed = config.seed

    def init(teacher_id):
        key = _keys_of(teacher_id[None], seed)[0]
        params = model.init(jax.random.fold_in(key, 0), dummy)["params"]
        return params, _adam_init(params)

    def order(teacher_id, epoch, n):
        key = _keys_of(teacher_id[None], seed)[0]
        epoch_key = jax.random.fold_in(jax.random.fold_in(key, 1), epoch)
        permutation = _shuffle_rows(epoch_key, n, max_n)
        return jnp.concatenate([permutation, jnp.zeros(padding, permutation.dtype)])

    def loss_fn(params, x, y, weight):
        logits = model.apply({"params": params}, x)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0)

    def update(params, opt_state, inputs, labels, valid, active):
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs, labels, valid.astype(jnp.float32))
        params, opt_state = _masked_adam(
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

    return _TeacherFunctions(init, order, step, epoch, num_batches, batch_size)


@dataclass(frozen=True)
class _Compiled:
    init: Callable
    order: Callable
    step: Callable
    epoch: Callable
    vmap_init: Callable
    vmap_epoch: Callable
    vmap_order: Callable
    vmap_step: Callable


@functools.lru_cache(maxsize=32)
def _compiled(functions: _TeacherFunctions) -> _Compiled:
    """The jitted forms, built once per set of teacher functions (so chunks and runs share them)."""
    return _Compiled(
        init=jax.jit(functions.init),
        order=jax.jit(functions.order),
        step=jax.jit(functions.step, donate_argnums=(0, 1)),
        epoch=jax.jit(functions.epoch, donate_argnums=(0, 1)),
        vmap_init=jax.jit(jax.vmap(functions.init)),
        vmap_epoch=jax.jit(
            jax.vmap(functions.epoch, in_axes=(0, 0, 0, 0, 0, 0, 0, 0, None)),
            donate_argnums=(0, 1),
        ),
        vmap_order=jax.jit(jax.vmap(functions.order, in_axes=(0, None, 0))),
        vmap_step=jax.jit(
            jax.vmap(functions.step, in_axes=(0, 0, 0, 0, 0, 0, 0, 0, None)),
            donate_argnums=(0, 1),
        ),
    )


# ----------------------------------------------------------------------------------------------------
# Devices and processes


def initialize_distributed(coordinator: str, num_processes: int, process_id: int) -> None:
    """Join a multi-host run (``jax.distributed.initialize``); call before any JAX computation."""
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise PateError(
            f"--process-id: {process_id}, expected 0..{num_processes - 1} for "
            f"--num-processes {num_processes}"
        )
    if not jax.distributed.is_initialized():
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )


@dataclass
class _Layout:
    """Where a chunk's teacher axis lives: one device, or a 1-D mesh over all processes' devices."""

    devices: list
    chunk: int  # teachers per chunk, a multiple of len(devices)

    def __post_init__(self) -> None:
        self.sharding = None
        if len(self.devices) > 1:
            mesh = jax.sharding.Mesh(np.array(self.devices), ("teachers",))
            self.sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("teachers"))

    @property
    def local_positions(self) -> range:
        """Positions in a chunk held by this process's devices (all of them in one process)."""
        if self.sharding is None:
            return range(self.chunk)
        index_map = self.sharding.addressable_devices_indices_map((self.chunk,))
        starts = [index[0].start or 0 for index in index_map.values()]
        stops = [index[0].stop or self.chunk for index in index_map.values()]
        return range(min(starts), max(stops))

    def put(self, local: Any) -> Any:
        """A pytree of this process's rows (leading axis) -> arrays over the whole chunk."""
        if self.sharding is None:
            return jax.tree_util.tree_map(jnp.asarray, local)
        return jax.tree_util.tree_map(
            lambda leaf: jax.make_array_from_process_local_data(
                self.sharding, np.asarray(leaf), (self.chunk, *np.shape(leaf)[1:])
            ),
            local,
        )

    def to_host(self, tree: Any) -> Any:
        """Every teacher's values as NumPy on every process."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(tree, tiled=True)
        return jax.tree_util.tree_map(np.asarray, tree)


def _layout(config: TrainConfig, strategy: str, per_teacher_bytes: int, num_teachers: int):
    processes = jax.process_count()
    if strategy not in VECTORISED and (config.devices > 1 or processes > 1):
        raise PateError(
            f"--strategy {strategy}: trains teachers one at a time on one device; use vmap, fold "
            "or public with --devices or several processes"
        )
    local = jax.local_devices()
    if config.devices > len(local):
        raise PateError(f"--devices: {config.devices}, expected at most {len(local)} local devices")
    devices = [
        d for p in range(processes) for d in jax.local_devices(process_index=p)[: config.devices]
    ]
    width = len(devices)
    if config.teacher_chunk:
        chunk = config.teacher_chunk
    else:
        chunk = max(1, CHUNK_MEMORY_BYTES // max(per_teacher_bytes, 1))
    chunk = min(chunk, -(-num_teachers // width) * width)
    chunk = max(width, chunk // width * width)
    return _Layout(devices=devices, chunk=chunk)


# ----------------------------------------------------------------------------------------------------
# Checkpoints


class _Checkpoints:
    """Orbax checkpoints of a run: finished chunks, and the in-progress chunk every few epochs."""

    def __init__(self, directory: str | os.PathLike, fingerprint: dict, epochs: int) -> None:
        import orbax.checkpoint as ocp

        self.ocp = ocp
        self.directory = Path(directory).absolute()
        self.fingerprint = fingerprint
        self.epochs = epochs
        if jax.process_index() == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)  # teacher parameters are private
        options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
        self.progress = ocp.CheckpointManager(self.directory / "progress", options=options)
        self.chunks = ocp.CheckpointManager(
            self.directory / "chunks",
            options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False),
        )

    def _check(self, meta: dict) -> None:
        if meta.get("fingerprint") != self.fingerprint:
            raise PateError(
                f"{self.directory}: holds checkpoints of another run "
                f"({meta.get('fingerprint')}), expected {self.fingerprint}; delete it or pass "
                "another --checkpoints folder"
            )

    def finished(self, template: Any) -> dict[int, Any]:
        ocp = self.ocp
        out = {}
        for step in self.chunks.all_steps():
            restored = self.chunks.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()
                ),
            )
            self._check(restored.meta)
            out[step] = jax.tree_util.tree_map(np.asarray, restored.state)
        return out

    def save_finished(self, chunk: int, state: Any) -> None:
        ocp = self.ocp
        self.chunks.save(
            chunk,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave({"fingerprint": self.fingerprint}),
            ),
        )

    def latest(self, chunk: int, template: Any) -> tuple[int, Any] | None:
        """(epochs done, state) of ``chunk`` if its progress was saved."""
        ocp = self.ocp
        step = self.progress.latest_step()
        if step is None or (step - 1) // self.epochs != chunk:
            return None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        restored = self.progress.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        self._check(restored.meta)
        return step - chunk * self.epochs, restored.state

    def save_progress(self, chunk: int, epochs_done: int, state: Any) -> None:
        ocp = self.ocp
        self.progress.save(
            chunk * self.epochs + epochs_done,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave({"fingerprint": self.fingerprint}),
            ),
        )

    def close(self) -> None:
        self.progress.close()
        self.chunks.close()


# ----------------------------------------------------------------------------------------------------
# Training


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
        raise PateError(f"teacher_ids: {len(ids)} ids, expected {num_teachers}")
    sizes = np.asarray(shards.sizes, np.int64)
    if (sizes < 1).any():
        raise PateError(f"{shards.path}: a shard has no records, expected at least one")
    max_n = int(shards.max_size)
    trained = model_config
    if strategy == "public":
        if extractor is None:
            raise PateError("--strategy public: needs a public feature extractor")
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
    param_count = _parameter_count(trained)
    feature_bytes = int(np.prod(trained.input_shape)) * (
        4 if strategy == "public" else np.dtype(_feature_dtype(shards)).itemsize
    )
    per_teacher = max_n * feature_bytes + 4 * 4 * param_count
    layout = _layout(config, strategy, per_teacher, num_teachers)
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
        _Checkpoints(checkpoint_dir, fingerprint, config.epochs) if checkpoint_dir else None
    )
    steps = config.epochs * np.ceil(sizes / config.batch_size).astype(np.int64)
    total_steps = int(steps.sum())
    chunks = [
        range(c, min(c + chunk_size, num_teachers)) for c in range(0, num_teachers, chunk_size)
    ]

    start = time.perf_counter()
    functions: _TeacherFunctions | None = None
    scale = None
    results: dict[int, dict] = {}
    if checkpoints is not None:
        template = None
        if checkpoints.chunks.all_steps():
            functions, scale = _functions_for(trained, config, max_n, shards, conv, strategy)
            template = _chunk_template(functions, chunk_size, trained, shards, strategy)
            results = checkpoints.finished(template)
    resumed = len(results)
    done_steps = sum(int(steps[list(chunks[c])].sum()) for c in results)
    done_teachers = sum(len(chunks[c]) for c in results)

    def report(step_count: int, teacher_count: int) -> None:
        if progress is not None:
            progress(Progress(step_count, total_steps, teacher_count, num_teachers))

    report(done_steps, done_teachers)
    try:
        for c, teachers in enumerate(chunks):
            if c in results:
                continue
            chunk_start = time.perf_counter()
            positions = [p for p in layout.local_positions if p < len(teachers)]
            local_teachers = [teachers[p] for p in positions]
            # Pad the chunk with copies of a teacher of this process (dropped afterwards), so that
            # every chunk has one compiled shape; a process left without a teacher in the last
            # chunk pads with the chunk's first teacher.
            pad_to = len(layout.local_positions) - len(local_teachers)
            local_teachers = local_teachers + [(local_teachers or [teachers[0]])[-1]] * pad_to
            data = (
                shards.read(local_teachers, max_n=max_n)
                if isinstance(shards, ShardsFile)
                else shards.read(local_teachers)
            )
            if strategy == "public":
                data = _extract(data, extractor)
            chunk_scale, mean, std = fit_teacher_preprocessing(data)
            if functions is None:
                functions, scale = _functions_for(trained, config, max_n, shards, conv, strategy)
            chunk_ids = ids[np.asarray(local_teachers)].astype(np.int32)
            chunk_sizes = sizes[np.asarray(local_teachers)]
            chunk_steps = steps[list(teachers)]
            if strategy in VECTORISED:
                per_epoch = int(chunk_steps.sum()) // config.epochs
                state, loss = _train_vectorised(
                    functions,
                    layout,
                    data,
                    chunk_sizes,
                    mean,
                    std,
                    chunk_ids,
                    config.epochs,
                    c,
                    checkpoints,
                    checkpoint_every,
                    lambda e, _s=done_steps, _t=done_teachers, _p=per_epoch: report(
                        _s + _p * e, _t
                    ),
                    per_step=conv == "xla"
                    and trained.is_convolutional
                    and jax.default_backend() == "cpu",
                )
            else:
                state, loss = _train_sequential(
                    functions,
                    strategy,
                    data,
                    chunk_sizes,
                    mean,
                    std,
                    chunk_ids,
                    config,
                    lambda k, extra, _s=done_steps, _t=done_teachers, _c=chunk_steps: report(
                        _s + int(_c[:k].sum()) + extra, _t + k
                    ),
                )
            params = jax.tree_util.tree_map(lambda leaf, _n=len(teachers): leaf[:_n], state)
            elapsed = time.perf_counter() - chunk_start
            results[c] = {
                "params": params,
                "mean": mean[: len(teachers)] if layout.sharding is None else None,
                "std": std[: len(teachers)] if layout.sharding is None else None,
                "loss": np.asarray(loss)[: len(teachers)],
                "seconds": np.full(len(teachers), elapsed / len(teachers)),
            }
            if layout.sharding is not None:
                # Normalisation constants of the other processes' teachers.
                gathered = layout.to_host(layout.put({"mean": mean, "std": std}))
                results[c]["mean"] = gathered["mean"][: len(teachers)]
                results[c]["std"] = gathered["std"][: len(teachers)]
            if checkpoints is not None:
                checkpoints.save_finished(c, results[c])
            done_steps += int(steps[list(teachers)].sum())
            done_teachers += len(teachers)
            report(done_steps, done_teachers)
    finally:
        if checkpoints is not None:
            checkpoints.close()

    ordered = [results[c] for c in range(len(chunks))]
    stacked = jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves), *ordered)
    return EnsembleResult(
        params=stacked["params"],
        scale=float(scale if scale is not None else 1.0),
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


def _feature_dtype(shards: Shards | ShardsFile) -> np.dtype:
    if isinstance(shards, ShardsFile):
        return shards.feature_dtype
    return shards.features.dtype


@functools.lru_cache(maxsize=64)
def _parameter_count(model: ModelConfig) -> int:
    dummy = jnp.zeros((1, *model.input_shape), jnp.float32)
    shapes = jax.eval_shape(lambda: model.build().init(jax.random.key(0), dummy))
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes)))


def _functions_for(trained, config, max_n, shards, conv, strategy):
    if strategy == "public":
        scale = 1.0
    else:
        scale = 1.0 / 255.0 if np.dtype(_feature_dtype(shards)).kind in ("u", "i") else 1.0
    return _teacher_functions(trained, config, max_n, scale, conv), scale


def _chunk_template(functions, chunk_size, trained, shards, strategy) -> dict:
    """Shapes of a finished chunk's checkpoint (for restoring)."""
    params, _ = jax.eval_shape(functions.init, jnp.zeros((), jnp.int32))
    if strategy == "public" or np.dtype(_feature_dtype(shards)).kind == "f":
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


def _train_vectorised(
    functions,
    layout,
    data,
    sizes,
    mean,
    std,
    ids,
    epochs,
    chunk,
    checkpoints,
    every,
    on_epoch,
    per_step=False,
):
    """A chunk's teachers, vmapped: one dispatch per epoch (``lax.scan`` over its steps), or with
    ``per_step`` one dispatch per step (XLA's CPU backend runs convolutions inside a loop body
    several times slower than at top level)."""
    compiled = _compiled(functions)
    epoch_fn = compiled.vmap_epoch
    placed = layout.put(
        {
            "x": data.features,
            "y": data.labels.astype(np.int32),
            "n": sizes.astype(np.int32),
            "mean": mean,
            "std": std,
            "id": ids,
        }
    )
    params, opt_state = compiled.vmap_init(placed["id"])
    first = 0
    if checkpoints is not None:
        saved = checkpoints.latest(chunk, {"params": params, "opt_state": opt_state})
        if saved is not None:
            first, state = saved
            params, opt_state = state["params"], state["opt_state"]
            on_epoch(first)
    loss = jnp.zeros(len(ids))
    args = (placed["x"], placed["y"], placed["n"], placed["mean"], placed["std"])
    for epoch in range(first, epochs):
        if per_step:
            row_order = compiled.vmap_order(placed["id"], epoch, placed["n"])
            losses = []
            for batch in range(functions.num_batches):
                params, opt_state, batch_loss = compiled.vmap_step(
                    params, opt_state, *args, row_order, batch
                )
                losses.append(batch_loss)
            loss = sum(losses) / jnp.maximum(jnp.ceil(placed["n"] / functions.batch_size), 1)
        else:
            params, opt_state, loss = epoch_fn(params, opt_state, *args, placed["id"], epoch)
        jax.block_until_ready(params)
        if checkpoints is not None and every and (epoch + 1) % every == 0 and epoch + 1 < epochs:
            checkpoints.save_progress(chunk, epoch + 1, {"params": params, "opt_state": opt_state})
        on_epoch(epoch + 1)
    return layout.to_host(params), layout.to_host(loss)


def _train_sequential(functions, strategy, data, sizes, mean, std, ids, config, on_teacher):
    """A chunk's teachers one after another; ``on_teacher(teachers_done, steps_into_the_next)``."""
    compiled = _compiled(functions)
    init, order, step, epoch_fn = compiled.init, compiled.order, compiled.step, compiled.epoch
    per_teacher, losses = [], []
    seen: dict[int, int] = {}
    for t in range(len(ids)):
        teacher_id = int(ids[t])
        if teacher_id in seen:  # a padding copy
            per_teacher.append(per_teacher[seen[teacher_id]])
            losses.append(losses[seen[teacher_id]])
            continue
        seen[teacher_id] = t
        x, y = jnp.asarray(data.features[t]), jnp.asarray(data.labels[t].astype(np.int32))
        n = jnp.int32(sizes[t])
        m, s = jnp.asarray(mean[t]), jnp.asarray(std[t])
        tid = jnp.int32(teacher_id)
        params, opt_state = init(tid)
        loss = jnp.float32(0)
        for epoch in range(config.epochs):
            if strategy == "loop":
                row_order = order(tid, epoch, n)
                batch_losses = []
                for batch in range(math.ceil(int(sizes[t]) / config.batch_size)):
                    params, opt_state, batch_loss = step(
                        params, opt_state, x, y, n, m, s, row_order, jnp.int32(batch)
                    )
                    batch_losses.append(batch_loss)
                loss = batch_losses
            else:
                params, opt_state, loss = epoch_fn(params, opt_state, x, y, n, m, s, tid, epoch)
            if epoch + 1 < config.epochs:
                on_teacher(
                    len(seen) - 1, (epoch + 1) * math.ceil(int(sizes[t]) / config.batch_size)
                )
        per_teacher.append(jax.tree_util.tree_map(np.asarray, params))
        losses.append(
            float(np.mean([np.asarray(v) for v in loss])) if isinstance(loss, list) else float(loss)
        )
        on_teacher(len(seen), 0)
    stacked = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *per_teacher)
    return stacked, np.asarray(losses, np.float32)


# ----------------------------------------------------------------------------------------------------
# Inference


def ensemble_predictions(
    params: dict,
    model_config: ModelConfig,
    scale: float,
    mean: np.ndarray,
    std: np.ndarray,
    features: np.ndarray,
    *,
    extractor: Extractor | None = None,
    batch_size: int = 1024,
    teacher_chunk: int = 50,
) -> np.ndarray:
    """Each teacher's predicted class for each record: an int array (T, N).

    With ``extractor`` (public strategy), records pass through it once and the heads see features.
    """
    model = model_config.build()

    def predict_one(p, m, s, x):
        logits = model.apply({"params": p}, preprocess(x, scale, m, s))
        return jnp.argmax(logits, axis=-1)

    predict = jax.jit(jax.vmap(predict_one, in_axes=(0, 0, 0, None)))
    num_teachers = len(mean)
    out = np.empty((num_teachers, len(features)), dtype=np.int64)
    for r0 in range(0, len(features), batch_size):
        r1 = min(r0 + batch_size, len(features))
        x = features[r0:r1]
        if extractor is not None:
            x = extractor.features(np.asarray(x))
        for t0 in range(0, num_teachers, teacher_chunk):
            t1 = min(t0 + teacher_chunk, num_teachers)
            chunk = jax.tree_util.tree_map(lambda leaf, a=t0, b=t1: leaf[a:b], params)
            out[t0:t1, r0:r1] = np.asarray(predict(chunk, mean[t0:t1], std[t0:t1], x))
    return out


def vote_histogram(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Votes per class for each record: (T, N) predictions -> (N, C) integer histogram."""
    num_records = predictions.shape[1]
    votes = np.zeros((num_records, num_classes), dtype=np.int64)
    for teacher_predictions in predictions:
        votes[np.arange(num_records), teacher_predictions] += 1
    return votes


def teacher_accuracy(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-teacher accuracy (T,) of (T, N) predictions against labels (N,)."""
    return (predictions == np.asarray(labels)[None, :]).mean(axis=1)


# ----------------------------------------------------------------------------------------------------
# The teachers file


@dataclass(frozen=True)
class Teachers:
    """A trained ensemble as loaded from ``teachers/teachers.h5``.

    ``model`` is the architecture asked for, on raw records (its ``input_shape`` is the records'
    shape; a student may copy it). For the public strategy the teachers are ``extractor`` (shared,
    learned from public data) followed by ``head``, whose parameters ``params`` holds; otherwise
    ``head`` is None and ``params`` are ``model``'s.
    """

    params: dict
    model: ModelConfig
    scale: float
    mean: np.ndarray
    std: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    accuracy: np.ndarray
    shard_size: np.ndarray
    shards_sha256: str
    sha256: str
    path: str
    attrs: dict
    extractor: Extractor | None = None
    head: ModelConfig | None = None
    steps: np.ndarray | None = None
    train_loss: np.ndarray | None = None
    seconds: np.ndarray | None = None

    @property
    def num_teachers(self) -> int:
        return len(self.mean)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model.input_shape)

    def predictions(self, features: np.ndarray) -> np.ndarray:
        if tuple(features.shape[1:]) != self.input_shape:
            raise PateError(
                f"{self.path}: teachers expect records of shape {self.input_shape}, found "
                f"{tuple(features.shape[1:])}"
            )
        return ensemble_predictions(
            self.params,
            self.head or self.model,
            self.scale,
            self.mean,
            self.std,
            features,
            extractor=self.extractor,
        )

    def votes(self, features: np.ndarray) -> np.ndarray:
        return vote_histogram(self.predictions(features), self.num_classes)


def save_teachers(
    out_dir: Path,
    result: EnsembleResult,
    model_config: ModelConfig,
    config: TrainConfig,
    shards: Shards | ShardsFile,
    accuracy: np.ndarray,
) -> Path:
    """Write the teachers file (private, mode 0600) into ``out_dir``."""
    path = Path(out_dir) / TEACHERS_FILE
    with atomic_file(path, private=True) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs.update(
                {
                    "format": TEACHERS_FORMAT,
                    "version": TEACHERS_VERSION,
                    "model": model_config.to_json(),
                    "training": config.to_json(),
                    "num_teachers": shards.num_teachers,
                    "num_classes": shards.num_classes,
                    "shards_sha256": shards.sha256,
                    "seconds": result.seconds,
                    "strategy": result.strategy,
                    "backend": jax.default_backend(),
                    "devices": result.devices,
                    "processes": result.processes,
                    "teacher_chunk": result.teacher_chunk,
                }
            )
            if shards.class_names:
                handle.attrs["class_names"] = list(shards.class_names)
            handle.attrs["unit_of_privacy"] = _unit_of_privacy(shards.path)
            for name, leaf in traverse_util.flatten_dict(result.params, sep="/").items():
                handle.create_dataset(f"params/{name}", data=np.asarray(leaf))
            prep = handle.create_group("preprocessing")
            prep.attrs["scale"] = result.scale
            prep.create_dataset("mean", data=result.mean)
            prep.create_dataset("std", data=result.std)
            report = handle.create_group("report")
            report.create_dataset("accuracy", data=np.asarray(accuracy, np.float64))
            report.create_dataset("shard_size", data=np.asarray(shards.sizes))
            report.create_dataset("steps", data=result.steps)
            report.create_dataset("train_loss", data=np.asarray(result.train_loss, np.float32))
            report.create_dataset("seconds", data=np.asarray(result.teacher_seconds, np.float64))
            if result.extractor is not None:
                handle.attrs["head"] = result.model.to_json()
                _write_extractor(handle.create_group("extractor"), result.extractor)
            # Individuals the teachers saw, to warn when the public set shares any of them.
            ids = np.unique(shards.individuals())
            if ids.dtype.kind in ("i", "u"):
                handle.create_dataset("individuals", data=ids)
            else:
                handle.create_dataset(
                    "individuals", data=ids.astype(object), dtype=h5py.string_dtype()
                )
    return path


def _write_extractor(group: h5py.Group, extractor: Extractor) -> None:
    group.attrs["config"] = extractor.config.to_json()
    group.attrs["input_shape"] = list(extractor.input_shape)
    group.attrs["scale"] = extractor.scale
    group.attrs["public_sha256"] = extractor.public_sha256
    group.create_dataset("mean", data=extractor.mean)
    group.create_dataset("whitening", data=extractor.whitening)
    group.create_dataset("centroids", data=extractor.centroids)


def _read_extractor(group: h5py.Group) -> Extractor:
    return Extractor(
        config=ExtractorConfig.from_json(str(group.attrs["config"])),
        input_shape=tuple(int(v) for v in group.attrs["input_shape"]),
        scale=float(group.attrs["scale"]),
        mean=group["mean"][()],
        whitening=group["whitening"][()],
        centroids=group["centroids"][()],
        public_sha256=str(group.attrs["public_sha256"]),
    )


def _unit_of_privacy(shards_path: str) -> str:
    """Whose privacy the ensemble protects, as the shards file says ("individual" by default)."""
    with open_h5(shards_path, "shards file") as handle:
        value = handle.attrs.get("unit_of_privacy", "individual")
    return value.decode() if isinstance(value, bytes) else str(value)


def load_teachers(path: str | os.PathLike) -> Teachers:
    """Load ``teachers.h5`` (``path`` may be the teachers folder or the file)."""
    path = Path(path)
    if path.is_dir():
        path = path / TEACHERS_FILE
    with open_h5(path, "teachers file") as handle:
        require_format(handle, path, TEACHERS_FORMAT)
        flat = {}
        handle["params"].visititems(
            lambda name, obj: (
                flat.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
        params = traverse_util.unflatten_dict(flat, sep="/")
        attrs = {key: handle.attrs[key] for key in handle.attrs}
        report = handle["report"]

        def optional(name: str) -> np.ndarray | None:
            return report[name][()] if name in report else None

        teachers = Teachers(
            params=params,
            model=ModelConfig.from_json(attrs["model"]),
            scale=float(handle["preprocessing"].attrs["scale"]),
            mean=handle["preprocessing/mean"][()],
            std=handle["preprocessing/std"][()],
            num_classes=int(attrs["num_classes"]),
            class_names=tuple(
                v.decode() if isinstance(v, bytes) else str(v) for v in attrs.get("class_names", [])
            ),
            accuracy=report["accuracy"][()],
            shard_size=report["shard_size"][()],
            shards_sha256=str(attrs["shards_sha256"]),
            sha256=file_fingerprint(path),
            path=str(path),
            attrs={k: _plain(v) for k, v in attrs.items()},
            extractor=_read_extractor(handle["extractor"]) if "extractor" in handle else None,
            head=ModelConfig.from_json(attrs["head"]) if "head" in attrs else None,
            steps=optional("steps"),
            train_loss=optional("train_loss"),
            seconds=optional("seconds"),
        )
    return teachers


def _plain(value):
    """An HDF5 attribute as a plain Python value."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if hasattr(value, "item") else value


def load_teacher_individuals(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    if path.is_dir():
        path = path / TEACHERS_FILE
    with open_h5(path, "teachers file") as handle:
        return decode_ids(handle["individuals"][()])
