"""Training the teacher ensemble as one program over a stacked teacher axis.

Every teacher has the same architecture; their parameters are stacked along a leading teacher axis.
Training runs per epoch as one jitted program: a ``lax.scan`` over the epoch's batches of a function of
*one* teacher, either ``vmap``-ed over a chunk of teachers (strategy ``vmap``) or called teacher by
teacher (strategy ``loop``). ``auto`` picks ``vmap`` for dense models and on accelerators, and ``loop``
for convolutions on the CPU, where XLA lowers a vmapped convolution to a slow grouped convolution.

Isolation (design rule 2), the property the privacy argument needs: teacher ``t``'s parameters are a
function of its own shard, its own key and the training config only. Shards of different sizes are
padded to a common length, but each teacher samples batches from a permutation of its *own* valid rows,
padded rows get zero weight, its number of batches per epoch is ``ceil(n_t / batch_size)`` (its own
size), and updates after its last batch of an epoch are masked out (parameters and optimiser state are
kept bit for bit). Normalisation constants of tabular inputs are fitted per teacher on its own shard.

Key tree (one ``--seed``): ``root = key(seed)``; teacher ``t``: ``k_t = split(fold_in(root, 1), T)[t]``;
its initialisation ``fold_in(k_t, 0)``; its batch order in epoch ``e``: ``fold_in(fold_in(k_t, 1), e)``.

Teachers file (``teachers/teachers.h5``, ``format = "pate-teachers"``)::

    params/<layer>/<name>   (T, ...) stacked parameters
    preprocessing/mean, preprocessing/std   (T, ...) per-teacher normalisation; attr scale
    report/accuracy (T,) test accuracy or NaN, report/shard_size (T,), report/steps (T,)
    attrs: format, version, model (JSON), training (JSON), num_teachers, num_classes, class_names,
           shards_sha256, seconds, strategy
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from pate.errors import PateError
from pate.io import atomic_file, decode_ids, file_fingerprint, open_h5, require_format
from pate.models import ModelConfig, Preprocessing, preprocess
from pate.partition import SHARDS_FORMAT

TEACHERS_FORMAT = "pate-teachers"
TEACHERS_VERSION = 1
TEACHERS_FILE = "teachers.h5"
STRATEGIES = ("auto", "vmap", "loop")


@dataclass(frozen=True)
class TrainConfig:
    """How every teacher is trained (the same for all)."""

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    strategy: str = "auto"
    devices: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise PateError(f"Expected epochs={self.epochs} >= 1.")
        if self.batch_size < 1:
            raise PateError(f"Expected batch_size={self.batch_size} >= 1.")
        if not (self.learning_rate > 0):
            raise PateError(f"Expected learning_rate={self.learning_rate} > 0.")
        if self.strategy not in STRATEGIES:
            raise PateError(f"Expected strategy={self.strategy!r} in {', '.join(STRATEGIES)}.")
        if self.devices < 1:
            raise PateError(f"Expected devices={self.devices} >= 1.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclass(frozen=True)
class Shards:
    """The shards of a set of teachers, padded to a common length."""

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


def load_shards(path: str | os.PathLike, teachers: range | None = None) -> Shards:
    """Read the shards of ``teachers`` (all by default) from a ``pate-shards`` file.

    Only the rows of the requested teachers are read, so a process of a multi-host run reads only
    its own teachers' data.
    """
    with open_h5(path, "shards file") as handle:
        require_format(handle, path, SHARDS_FORMAT)
        offsets = handle["shard_offsets"][()]
        total = len(offsets) - 1
        teachers = range(total) if teachers is None else teachers
        sizes = np.diff(offsets)[list(teachers)]
        if (sizes == 0).any():
            empty = int(np.flatnonzero(sizes == 0)[0])
            raise PateError(
                f"{path}: shard {teachers[empty]} has no records, expected at least one"
            )
        max_n = int(sizes.max())
        feature_shape = handle["features"].shape[1:]
        features = np.zeros((len(teachers), max_n, *feature_shape), dtype=handle["features"].dtype)
        labels = np.zeros((len(teachers), max_n), dtype=np.int64)
        ids = []
        for row, teacher in enumerate(teachers):
            start, stop = int(offsets[teacher]), int(offsets[teacher + 1])
            features[row, : stop - start] = handle["features"][start:stop]
            labels[row, : stop - start] = handle["labels"][start:stop]
            ids.append(decode_ids(handle["individual_id"][start:stop]))
        class_names = tuple(
            v.decode() if isinstance(v, bytes) else str(v)
            for v in handle.attrs.get("class_names", [])
        )
        num_classes = int(handle.attrs["num_classes"])
    if features.dtype.kind == "f" and not np.isfinite(features).all():
        raise PateError(f"{path}: dataset 'features' has NaN or inf, expected finite values")
    return Shards(
        features=features,
        labels=labels,
        sizes=sizes.astype(np.int64),
        num_classes=num_classes,
        class_names=class_names,
        individual_ids=tuple(ids),
        sha256=file_fingerprint(path),
        path=str(path),
    )


def fit_teacher_preprocessing(shards: Shards) -> tuple[float, np.ndarray, np.ndarray]:
    """Per-teacher normalisation fitted on each teacher's own rows only: (scale, mean (T,...), std)."""
    means, stds = [], []
    scale = 1.0
    for t in range(shards.num_teachers):
        prep = Preprocessing.fit(shards.features[t, : shards.sizes[t]])
        scale = prep.scale
        means.append(prep.mean)
        stds.append(prep.std)
    return scale, np.stack(means), np.stack(stds)


def resolve_strategy(strategy: str, model: ModelConfig, backend: str | None = None) -> str:
    """``auto``: vmap for dense models or on accelerators; a loop for convolutions on the CPU."""
    if strategy != "auto":
        return strategy
    backend = backend or jax.default_backend()
    if backend != "cpu" or model.kind == "mlp":
        return "vmap"
    return "loop"


def teacher_keys(seed: int, num_teachers: int) -> jax.Array:
    """The per-teacher keys of the key tree (see the module docstring)."""
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), 1), num_teachers)


def _make_epoch_fn(model_config: ModelConfig, optimizer, batch_size: int, max_n: int) -> Callable:
    """One epoch of one teacher: scan over ``ceil(max_n / batch)`` batches, masked to its own size."""
    model = model_config.build()
    num_batches = math.ceil(max_n / batch_size)

    def loss_fn(params, x, y, weight):
        logits = model.apply({"params": params}, x)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0)

    def epoch_fn(params, opt_state, x, y, n, scale, mean, std, key, epoch):
        order_key = jax.random.fold_in(jax.random.fold_in(key, 1), epoch)
        noise = jax.random.uniform(order_key, (max_n,))
        # Valid rows first, in random order; padded rows sort last and are never sampled as valid.
        permutation = jnp.argsort(jnp.where(jnp.arange(max_n) < n, noise, 2.0))
        padded = jnp.concatenate(
            [permutation, jnp.zeros(num_batches * batch_size - max_n, jnp.int32)]
        )

        def body(carry, batch):
            params, opt_state = carry
            position = batch * batch_size + jnp.arange(batch_size)
            rows = jax.lax.dynamic_slice(padded, (batch * batch_size,), (batch_size,))
            weight = (position < n).astype(jnp.float32)
            inputs = preprocess(x[rows], scale, mean, std)
            loss, grads = jax.value_and_grad(loss_fn)(params, inputs, y[rows], weight)
            updates, new_opt_state = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            active = batch * batch_size < n
            keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
            params = jax.tree_util.tree_map(keep, new_params, params)
            opt_state = jax.tree_util.tree_map(keep, new_opt_state, opt_state)
            return (params, opt_state), loss * active

        (params, opt_state), losses = jax.lax.scan(
            body, (params, opt_state), jnp.arange(num_batches)
        )
        return params, opt_state, losses.sum() / jnp.maximum(jnp.ceil(n / batch_size), 1)

    return epoch_fn


@dataclass
class EnsembleResult:
    params: dict  # stacked pytree, leading axis = teacher
    scale: float
    mean: np.ndarray
    std: np.ndarray
    steps: np.ndarray  # (T,) optimiser steps taken per teacher
    seconds: float
    strategy: str


def train_ensemble(
    shards: Shards,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    teacher_ids: range | None = None,
) -> EnsembleResult:
    """Train one teacher per shard; returns stacked parameters.

    ``teacher_ids`` are the global indices of the teachers in ``shards`` (their keys depend on them, so a
    process that trains a subset gets the same parameters as a run that trains all).
    ``progress(done, total)`` is called after each teacher-epoch.
    """
    if tuple(model_config.input_shape) != shards.feature_shape:
        raise PateError(
            f"{shards.path}: features have shape {shards.feature_shape}, but the model expects "
            f"{tuple(model_config.input_shape)}"
        )
    strategy = resolve_strategy(config.strategy, model_config)
    num_teachers = shards.num_teachers
    teacher_ids = teacher_ids or range(num_teachers)
    total_teachers = max(teacher_ids) + 1
    keys = teacher_keys(config.seed, max(total_teachers, num_teachers))[np.asarray(teacher_ids)]
    scale, mean, std = fit_teacher_preprocessing(shards)
    optimizer = optax.adam(config.learning_rate)
    max_n = shards.features.shape[1]
    epoch_fn = _make_epoch_fn(model_config, optimizer, config.batch_size, max_n)

    model = model_config.build()
    dummy = jnp.zeros((1, *model_config.input_shape), jnp.float32)

    def init_one(key):
        params = model.init(jax.random.fold_in(key, 0), dummy)["params"]
        return params, optimizer.init(params)

    start = time.perf_counter()
    total_work = num_teachers * config.epochs
    done = 0
    if strategy == "vmap":
        step = jax.jit(
            jax.vmap(epoch_fn, in_axes=(0, 0, 0, 0, 0, None, 0, 0, 0, None)), donate_argnums=(0, 1)
        )
        init = jax.jit(jax.vmap(init_one))
        params, opt_state = init(keys)
        arrays = (shards.features, shards.labels, shards.sizes, mean, std, keys)
        params, opt_state, arrays, unpad = _place_on_devices(
            params, opt_state, arrays, config.devices
        )
        features, labels, sizes, mean_d, std_d, keys_d = arrays
        for epoch in range(config.epochs):
            params, opt_state, _ = step(
                params, opt_state, features, labels, sizes, scale, mean_d, std_d, keys_d, epoch
            )
            done += num_teachers
            if progress:
                jax.block_until_ready(params)
                progress(done, total_work)
        params = unpad(params)
    else:
        step = jax.jit(epoch_fn, donate_argnums=(0, 1))
        init = jax.jit(init_one)
        per_teacher = []
        for t in range(num_teachers):
            p, o = init(keys[t])
            x, y = jnp.asarray(shards.features[t]), jnp.asarray(shards.labels[t])
            for epoch in range(config.epochs):
                p, o, _ = step(p, o, x, y, shards.sizes[t], scale, mean[t], std[t], keys[t], epoch)
                done += 1
                if progress:
                    jax.block_until_ready(p)
                    progress(done, total_work)
            per_teacher.append(p)
        params = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *per_teacher)
    params = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(params))
    steps = config.epochs * np.ceil(shards.sizes / config.batch_size).astype(np.int64)
    return EnsembleResult(
        params=params,
        scale=scale,
        mean=mean,
        std=std,
        steps=steps,
        seconds=time.perf_counter() - start,
        strategy=strategy,
    )


def _place_on_devices(params, opt_state, arrays, num_devices: int):
    """Lay the teacher axis over a 1-D mesh of ``num_devices`` devices (no-op for one device).

    The teacher count is padded to a multiple of the device count with copies of the last teacher;
    the copies are dropped afterwards and never influence another teacher (no cross-teacher operation).
    """
    if num_devices == 1:
        return params, opt_state, arrays, lambda tree: tree
    available = jax.devices()
    if num_devices > len(available):
        raise PateError(f"Expected devices={num_devices} <= {len(available)} available devices.")
    mesh = jax.sharding.Mesh(np.array(available[:num_devices]), ("teachers",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("teachers"))
    count = len(arrays[0])
    padded_count = -(-count // num_devices) * num_devices

    def pad_and_place(leaf):
        leaf = jnp.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        if padded_count != count:
            extra = jnp.repeat(leaf[-1:], padded_count - count, axis=0)
            leaf = jnp.concatenate([leaf, extra])
        return jax.device_put(leaf, sharding)

    keys = arrays[-1]
    key_data = pad_and_place(jax.random.key_data(keys))
    placed = [pad_and_place(a) for a in arrays[:-1]] + [jax.random.wrap_key_data(key_data)]
    params = jax.tree_util.tree_map(pad_and_place, params)
    opt_state = jax.tree_util.tree_map(pad_and_place, opt_state)
    return (
        params,
        opt_state,
        tuple(placed),
        lambda tree: jax.tree_util.tree_map(lambda leaf: leaf[:count], tree),
    )


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
    batch_size: int = 2048,
    teacher_chunk: int = 50,
) -> np.ndarray:
    """Each teacher's predicted class for each record: an int array (T, N)."""
    model = model_config.build()

    def predict_one(p, m, s, x):
        logits = model.apply({"params": p}, preprocess(x, scale, m, s))
        return jnp.argmax(logits, axis=-1)

    predict = jax.jit(jax.vmap(predict_one, in_axes=(0, 0, 0, None)))
    num_teachers = len(mean)
    out = np.empty((num_teachers, len(features)), dtype=np.int64)
    for t0 in range(0, num_teachers, teacher_chunk):
        t1 = min(t0 + teacher_chunk, num_teachers)
        chunk = jax.tree_util.tree_map(lambda leaf, a=t0, b=t1: leaf[a:b], params)
        for r0 in range(0, len(features), batch_size):
            r1 = min(r0 + batch_size, len(features))
            out[t0:t1, r0:r1] = np.asarray(predict(chunk, mean[t0:t1], std[t0:t1], features[r0:r1]))
    return out


def vote_histogram(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Votes per class for each record: (T, N) predictions -> (N, C) integer histogram."""
    num_records = predictions.shape[1]
    votes = np.zeros((num_records, num_classes), dtype=np.int64)
    for teacher_predictions in predictions:
        votes[np.arange(num_records), teacher_predictions] += 1
    return votes


# ----------------------------------------------------------------------------------------------------
# The teachers file


@dataclass(frozen=True)
class Teachers:
    """A trained ensemble as loaded from ``teachers/teachers.h5``."""

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

    @property
    def num_teachers(self) -> int:
        return len(self.mean)

    def predictions(self, features: np.ndarray) -> np.ndarray:
        return ensemble_predictions(
            self.params, self.model, self.scale, self.mean, self.std, features
        )

    def votes(self, features: np.ndarray) -> np.ndarray:
        return vote_histogram(self.predictions(features), self.num_classes)


def save_teachers(
    out_dir: Path,
    result: EnsembleResult,
    model_config: ModelConfig,
    config: TrainConfig,
    shards: Shards,
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
                }
            )
            if shards.class_names:
                handle.attrs["class_names"] = list(shards.class_names)
            for name, leaf in traverse_util.flatten_dict(result.params, sep="/").items():
                handle.create_dataset(f"params/{name}", data=np.asarray(leaf))
            prep = handle.create_group("preprocessing")
            prep.attrs["scale"] = result.scale
            prep.create_dataset("mean", data=result.mean)
            prep.create_dataset("std", data=result.std)
            report = handle.create_group("report")
            report.create_dataset("accuracy", data=accuracy)
            report.create_dataset("shard_size", data=shards.sizes)
            report.create_dataset("steps", data=result.steps)
            # Individuals the teachers saw, to warn when the public set shares any of them.
            ids = np.concatenate(shards.individual_ids)
            if ids.dtype.kind in ("i", "u"):
                handle.create_dataset("individuals", data=np.unique(ids))
            else:
                handle.create_dataset(
                    "individuals", data=np.unique(ids).astype(object), dtype=h5py.string_dtype()
                )
    return path


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
            accuracy=handle["report/accuracy"][()],
            shard_size=handle["report/shard_size"][()],
            shards_sha256=str(attrs["shards_sha256"]),
            sha256=file_fingerprint(path),
            path=str(path),
            attrs={k: _plain(v) for k, v in attrs.items()},
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
