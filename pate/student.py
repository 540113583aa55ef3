"""Training the student: a model fitted on public data and the aggregator's noisy answers only.

The student never sees teachers, votes or private records (design rule 2). Its normalisation constants
are fitted on the public features (no privacy cost), so its inputs are a function of public data only.
Whatever the student learns is post-processing of the released labels, so it carries exactly the
privacy guarantee of those labels.

The same trainer fits the non-private baseline (one model on all private data) that the demo reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pate.errors import PateError
from pate.models import ModelConfig, Preprocessing, preprocess


@dataclass(frozen=True)
class StudentConfig:
    """How the student is trained. ``steps`` is a budget of optimiser steps (fixed, data-size free)."""

    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise PateError(f"Expected student steps={self.steps} >= 1.")
        if self.batch_size < 1:
            raise PateError(f"Expected student batch_size={self.batch_size} >= 1.")
        if not self.learning_rate > 0:
            raise PateError(f"Expected student learning_rate={self.learning_rate} > 0.")
        if self.weight_decay < 0:
            raise PateError(f"Expected student weight_decay={self.weight_decay} >= 0.")


@dataclass(frozen=True)
class TrainedModel:
    """A single trained model with its normalisation."""

    params: dict
    model: ModelConfig
    preprocessing: Preprocessing

    def logits(self, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        model = self.model.build()
        prep = self.preprocessing

        @jax.jit
        def forward(params, x):
            return model.apply({"params": params}, preprocess(x, prep.scale, prep.mean, prep.std))

        outputs = [
            np.asarray(forward(self.params, features[start : start + batch_size]))
            for start in range(0, len(features), batch_size)
        ]
        return np.concatenate(outputs) if outputs else np.zeros((0, self.model.num_classes))

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.logits(features).argmax(axis=1)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(jax.nn.softmax(self.logits(features), axis=1))

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
        return float((self.predict(features) == labels).mean())


def fit_model(
    features: np.ndarray,
    labels: np.ndarray,
    model_config: ModelConfig,
    config: StudentConfig,
    *,
    preprocessing: Preprocessing | None = None,
) -> TrainedModel:
    """Fit one model by AdamW on ``(features, labels)`` for ``config.steps`` steps.

    Batches are drawn without replacement within each pass over the data (a fresh permutation per pass,
    keyed by ``fold_in(key(seed), pass)``).
    """
    if len(features) == 0:
        raise PateError("student: no labelled records to train on (no query was answered)")
    if len(features) != len(labels):
        raise PateError(f"student: {len(features)} records but {len(labels)} labels")
    preprocessing = preprocessing or Preprocessing.fit(features)
    model = model_config.build()
    optimizer = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    root = jax.random.key(config.seed)
    params = model.init(jax.random.fold_in(root, 0), jnp.zeros((1, *model_config.input_shape)))[
        "params"
    ]
    opt_state = optimizer.init(params)
    count = len(features)
    batch = min(config.batch_size, count)
    per_pass = max(count // batch, 1)
    scale, mean, std = preprocessing.scale, preprocessing.mean, preprocessing.std
    x_all = jnp.asarray(features)
    y_all = jnp.asarray(labels.astype(np.int32))

    def loss_fn(p, x, y):
        logits = model.apply({"params": p}, preprocess(x, scale, mean, std))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def one_pass(params, opt_state, pass_index):
        order = jax.random.permutation(jax.random.fold_in(root, pass_index + 1), count)

        def body(carry, i):
            p, s = carry
            rows = jax.lax.dynamic_slice(order, (i * batch,), (batch,))
            loss, grads = jax.value_and_grad(loss_fn)(p, x_all[rows], y_all[rows])
            updates, s = optimizer.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), jnp.arange(per_pass))
        return params, opt_state, losses.mean()

    passes = math.ceil(config.steps / per_pass)
    for pass_index in range(passes):
        params, opt_state, _ = one_pass(params, opt_state, pass_index)
    params = jax.tree_util.tree_map(np.asarray, params)
    return TrainedModel(params=params, model=model_config, preprocessing=preprocessing)
