"""Training the student: a model fitted on public data and the aggregator's released answers only.

**What the student sees** (design rule 2; PATE 2017 §2.3, PATE 2018 §2): the public features, the labels
the aggregator released, and *which* public rows were answered. Nothing else reaches it: no teacher, no
vote histogram, no private record, no ledger. :func:`fit_student` takes exactly those three arrays (plus
model and training configs), and its normalisation constants are fitted on the public features. So the
student is a function of public data and the released labels, i.e. post-processing of the aggregator's
output, and it carries exactly the (epsilon, delta) guarantee of those labels (Dwork and Roth 2014,
Proposition 2.1). Using the *unanswered* public rows costs no privacy: they are public, and whether a
row was answered is itself part of the released output (Confident-GNMax charges the threshold check of
every query, answered or not, PATE 2018 §4.1).

Three methods (``StudentConfig.method``):

* ``supervised``: AdamW on the answered rows only (the PATE 2017 supervised student).
* ``self-train``: semi-supervised by ensemble self-training (pseudo-labelling; Lee 2013, "Pseudo-Label";
  with an ensemble as the labeller). ``ensemble`` supervised models with different seeds are fitted on
  the answered rows; the average of their class probabilities labels *every* public row; the released
  student is one supervised model fitted on the whole pool with those labels. A released label that is
  wrong (aggregator noise on a split vote) is outvoted by its neighbours in the pool rather than
  memorised, and the student learns from all public rows, not only the answered ones.
* ``vat``: semi-supervised, on the answered rows *and* the whole public pool, by virtual adversarial
  training with entropy minimisation (Miyato et al. 2018, "Virtual Adversarial Training", VAT+EntMin),
  the method of the PATE 2018 MNIST and SVHN students (§5). Per step: cross-entropy on a batch of
  released labels, plus on a batch of ``unlabeled_batch_size`` public rows the KL divergence
  between the prediction at ``x`` and at ``x + r_adv`` (``r_adv`` of L2 norm ``vat_epsilon`` in the
  normalised input space, found by one power iteration), plus the entropy of the prediction at ``x``,
  plus ``balance_weight`` times the KL divergence of the batch's mean prediction from the uniform
  distribution (class balance, as in regularised information maximisation, Krause et al. 2010). The
  balance term assumes the public pool's classes are about equally common; it stops the entropy term
  from folding a class with few released labels into a neighbour (measured in BENCHMARKS.md).
  Images are shifted by up to ``shift`` pixels (labeled and unlabeled batches alike). The learning rate
  follows a cosine decay; the released weights are an exponential moving average (``ema_decay``) of the
  trained ones. **Early label filter**: released labels may be wrong (the aggregator's noise, or teachers
  that agree on a wrong class). Networks fit clean structure before they memorise noise, so after
  ``filter_at`` of the steps, the labeled rows that the averaged model contradicts with confidence at
  least ``label_filter`` get weight zero for the rest of training, at most a tenth of them. It uses the
  same three inputs only.

Which one to use was measured (BENCHMARKS.md, "Which student"; ``scripts/compare_students.py`` on
released labels): VAT assumes classes form clusters in the input space and wins on digits; on tabular
data ensemble self-training did best. So :func:`resolve_method` picks ``vat`` for images and
``self-train`` for tabular data.

Key tree (one ``seed``): ``root = key(seed)``; initialisation ``fold_in(root, 0)``; supervised: batch
order of pass ``e`` ``fold_in(root, e + 1)``; self-train: member ``k`` is a supervised fit with seed
:func:`member_seed` ``(seed, k)``, the final fit uses ``seed``; vat: step ``s`` draws from
``fold_in(fold_in(root, 1), s)``.

The same trainer fits the non-private baseline (one model on all private data) that the demo reports.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pate.errors import PateError
from pate.models import ModelConfig, Preprocessing, preprocess
from pate.student_config import STUDENT_METHODS, StudentConfig, resolve_method

__all__ = [
    "STUDENT_METHODS",
    "StudentConfig",
    "TrainedModel",
    "fit_model",
    "fit_student",
    "resolve_method",
]


@dataclass(frozen=True)
class TrainedModel:
    """A single trained model with its normalisation."""

    params: dict
    model: ModelConfig
    preprocessing: Preprocessing

    def logits(self, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        prep = self.preprocessing
        outputs = [
            np.asarray(
                _forward(
                    self.params,
                    features[start : start + batch_size],
                    prep.scale,
                    prep.mean,
                    prep.std,
                    model_config=self.model,
                )
            )
            for start in range(0, len(features), batch_size)
        ]
        return np.concatenate(outputs) if outputs else np.zeros((0, self.model.num_classes))

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.logits(features).argmax(axis=1)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(jax.nn.softmax(self.logits(features), axis=1))

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
        return float((self.predict(features) == labels).mean())


@functools.partial(jax.jit, static_argnames=("model_config",))
def _forward(params, x, scale, mean, std, *, model_config: ModelConfig):
    return model_config.build().apply({"params": params}, preprocess(x, scale, mean, std))


def _steps_per_call(model_config: ModelConfig) -> int:
    """Optimiser steps per jitted call.

    XLA's CPU backend runs a convolution inside a ``lax.scan`` several times slower than in a plain
    jitted call (BENCHMARKS.md), so convolutional models take one
    step per call there; dense models, and every model on accelerators, scan over chunks of steps.
    """
    if model_config.is_convolutional and jax.default_backend() == "cpu":
        return 1
    return 50


# The jitted training programs live at module level with the configs as static arguments and the data
# as arguments, so a second model of the same shape (a resumed run, a frontier sweep, the tests) reuses
# the compiled program, and no dataset is baked into a program as a constant.


def _program_config(config: StudentConfig) -> StudentConfig:
    """The part of the config a compiled program depends on (seed and filter are used outside it)."""
    return dataclasses.replace(config, seed=0, label_filter=0.0, filter_at=0.0)


def _supervised_optimizer(config: StudentConfig) -> optax.GradientTransformation:
    return optax.adamw(config.learning_rate, weight_decay=config.weight_decay)


@functools.partial(jax.jit, static_argnames=("model_config", "config"), donate_argnums=(0,))
def _supervised_steps(carry, rows, data, *, model_config: ModelConfig, config: StudentConfig):
    """Supervised steps on the batches ``rows`` (batch,) or (steps, batch) of ``data``."""
    x_all, y_all, scale, mean, std = data
    model = model_config.build()
    optimizer = _supervised_optimizer(config)

    def loss_fn(p, x, y):
        logits = model.apply({"params": p}, preprocess(x, scale, mean, std))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def body(carry, batch_rows):
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, x_all[batch_rows], y_all[batch_rows])
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), loss

    if rows.ndim == 1:
        return body(carry, rows)
    return jax.lax.scan(body, carry, rows)


def fit_model(
    features: np.ndarray,
    labels: np.ndarray,
    model_config: ModelConfig,
    config: StudentConfig,
    *,
    preprocessing: Preprocessing | None = None,
) -> TrainedModel:
    """Fit one model by AdamW on ``(features, labels)`` for ``config.steps`` steps (supervised).

    Batches are drawn without replacement within each pass over the data (a fresh permutation per pass,
    keyed by ``fold_in(key(seed), pass + 1)``).
    """
    if len(features) == 0:
        raise PateError("student: no labelled records to train on (no query was answered)")
    if len(features) != len(labels):
        raise PateError(f"student: {len(features)} records but {len(labels)} labels")
    preprocessing = preprocessing or Preprocessing.fit(features)
    root = jax.random.key(config.seed)
    params = model_config.build().init(
        jax.random.fold_in(root, 0), jnp.zeros((1, *model_config.input_shape))
    )["params"]
    carry = (params, _supervised_optimizer(config).init(params))
    count = len(features)
    batch = min(config.batch_size, count)
    per_pass = max(count // batch, 1)
    data = (
        jnp.asarray(features),
        jnp.asarray(labels.astype(np.int32)),
        preprocessing.scale,
        preprocessing.mean,
        preprocessing.std,
    )
    static = {"model_config": model_config, "config": _program_config(config)}
    one_per_call = _steps_per_call(model_config) == 1
    for pass_index in range(math.ceil(config.steps / per_pass)):
        order = jax.random.permutation(jax.random.fold_in(root, pass_index + 1), count)
        rows = order[: per_pass * batch].reshape(per_pass, batch)
        if one_per_call:
            for i in range(per_pass):
                carry, _ = _supervised_steps(carry, rows[i], data, **static)
        else:
            carry, _ = _supervised_steps(carry, rows, data, **static)
    params = jax.tree_util.tree_map(np.asarray, carry[0])
    return TrainedModel(params=params, model=model_config, preprocessing=preprocessing)


# ----------------------------------------------------------------------------------------------------
# The student, supervised or semi-supervised


def fit_student(
    features: np.ndarray,
    answered: np.ndarray,
    labels: np.ndarray,
    model_config: ModelConfig,
    config: StudentConfig,
    *,
    preprocessing: Preprocessing | None = None,
) -> TrainedModel:
    """Train the student on the public pool ``features`` and the released ``labels``.

    ``answered`` are the indices of the public rows that were answered and ``labels`` their released
    labels (same length). These, with the model and training configs, are the only inputs: no teacher,
    vote or private record can reach the student (see the module docstring for why that makes it
    post-processing of the release). ``supervised`` trains on ``features[answered]`` only;
    ``self-train`` and ``vat`` also learn from every other public row. Normalisation is fitted on
    ``features`` unless given.
    """
    features = np.asarray(features)
    answered = np.asarray(answered, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(answered) == 0:
        raise PateError("student: no labelled records to train on (no query was answered)")
    if len(answered) != len(labels):
        raise PateError(f"student: {len(answered)} answered rows but {len(labels)} labels")
    if answered.min() < 0 or answered.max() >= len(features):
        raise PateError(
            f"student: answered row {int(answered.max())} out of range, expected indices of the "
            f"{len(features)} public rows"
        )
    if labels.min() < 0 or labels.max() >= model_config.num_classes:
        raise PateError(
            f"student: label {int(labels.max())} out of range, expected 0..{model_config.num_classes - 1}"
        )
    preprocessing = preprocessing or Preprocessing.fit(features)
    if config.method == "supervised":
        return fit_model(
            features[answered], labels, model_config, config, preprocessing=preprocessing
        )
    if config.method == "self-train":
        return _fit_self_train(features, answered, labels, model_config, config, preprocessing)
    return _fit_vat(features, answered, labels, model_config, config, preprocessing)


def member_seed(seed: int, member: int) -> int:
    """Seed of self-training ensemble member ``member`` under the student seed ``seed`` (any integer;
    distinct members and distinct seeds give distinct streams)."""
    return int(np.random.SeedSequence([seed % 2**64, member]).generate_state(1)[0])


def _fit_self_train(
    features: np.ndarray,
    answered: np.ndarray,
    labels: np.ndarray,
    model_config: ModelConfig,
    config: StudentConfig,
    preprocessing: Preprocessing,
) -> TrainedModel:
    """Ensemble self-training (module docstring): the public pool labelled by an ensemble fitted on
    the released labels, then one model fitted on the whole pool. Inputs as :func:`fit_student`."""
    probabilities = np.zeros((len(features), model_config.num_classes), np.float64)
    for member in range(config.ensemble):
        member_config = dataclasses.replace(config, seed=member_seed(config.seed, member))
        model = fit_model(
            features[answered], labels, model_config, member_config, preprocessing=preprocessing
        )
        probabilities += model.probabilities(features)
    pseudo_labels = probabilities.argmax(axis=1)
    return fit_model(features, pseudo_labels, model_config, config, preprocessing=preprocessing)


def _translate(x: jax.Array, key: jax.Array, shift: int) -> jax.Array:
    """Shift each image of ``x`` (N, H, W, C) by an integer offset in [-shift, shift]^2, zero-filled."""
    if shift == 0 or x.ndim != 4:
        return x
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * shift + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


MAX_FILTERED = 0.1


def _label_weights(probs: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Weights of the labeled rows after the early filter: 0 for the rows the model contradicts.

    A row is contradicted when the model's class is not its label and has probability >= ``threshold``.
    At most ``MAX_FILTERED`` of the rows (rounded down) are dropped, the most confident contradictions
    first, so a model that is still poor when the filter runs cannot discard the labels wholesale.
    """
    confidence = probs.max(axis=1)
    contradicted = np.flatnonzero((probs.argmax(axis=1) != labels) & (confidence >= threshold))
    limit = int(MAX_FILTERED * len(labels))
    dropped = contradicted[np.argsort(-confidence[contradicted], kind="stable")][:limit]
    weights = np.ones(len(labels), np.float32)
    weights[dropped] = 0.0
    return weights


def _kl(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
    """KL(p || q) per row, from logits."""
    log_p = jax.nn.log_softmax(p_logits)
    return jnp.sum(jnp.exp(log_p) * (log_p - jax.nn.log_softmax(q_logits)), axis=-1)


def _balance_penalty(logits: jax.Array) -> jax.Array:
    """KL(mean predicted distribution over the rows || uniform): 0 when the batch's predictions are
    spread evenly over the classes on average, log(C) when every row is one class for certain."""
    mean_p = jnp.mean(jax.nn.softmax(logits), axis=0)
    return jnp.sum(mean_p * (jnp.log(jnp.maximum(mean_p, 1e-12)) + jnp.log(mean_p.shape[0])))


def _vat_optimizer(config: StudentConfig) -> optax.GradientTransformation:
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=0.05)
    return optax.adamw(schedule, weight_decay=config.weight_decay)


def _normalise(v: jax.Array) -> jax.Array:
    """Each row scaled to unit L2 norm."""
    axes = tuple(range(1, v.ndim))
    return v / (jnp.sqrt(jnp.sum(v * v, axis=axes, keepdims=True)) + 1e-12)


@functools.partial(
    jax.jit, static_argnames=("model_config", "config", "length"), donate_argnums=(0,)
)
def _vat_steps(
    carry, start, data, step_root, *, model_config: ModelConfig, config: StudentConfig, length: int
):
    """``length`` VAT steps from step ``start``; ``carry = (params, optimiser state, EMA params)``.

    Step ``s`` draws its batches and noise from ``fold_in(step_root, s)``.
    """
    x_all, x_lab, y_lab, w_lab, scale, mean, std = data
    model = model_config.build()
    optimizer = _vat_optimizer(config)

    def apply(p, x):
        return model.apply({"params": p}, x)

    def loss_fn(p, xl, yl, wl, xu, key):
        per_row = optax.softmax_cross_entropy_with_integer_labels(apply(p, xl), yl)
        loss = jnp.sum(per_row * wl) / jnp.maximum(jnp.sum(wl), 1.0)
        own = apply(p, xu)
        clean = jax.lax.stop_gradient(own)
        probe = 1e-6 * _normalise(jax.random.normal(key, xu.shape))
        direction = jax.grad(lambda r: jnp.sum(_kl(clean, apply(p, xu + r))))(probe)
        r_adv = config.vat_epsilon * _normalise(jax.lax.stop_gradient(direction))
        vat = jnp.mean(_kl(clean, apply(p, xu + r_adv)))
        entropy = -jnp.mean(jnp.sum(jax.nn.softmax(own) * jax.nn.log_softmax(own), axis=-1))
        balance = _balance_penalty(own)
        unlabeled = vat + config.entropy_weight * entropy + config.balance_weight * balance
        return loss + config.unlabeled_weight * unlabeled

    def body(carry, step):
        p, s, ema = carry
        k_rows, k_pool, k_shift_l, k_shift_u, k_probe = jax.random.split(
            jax.random.fold_in(step_root, step), 5
        )
        li = jax.random.randint(k_rows, (config.batch_size,), 0, x_lab.shape[0])
        ui = jax.random.randint(k_pool, (config.unlabeled_batch_size,), 0, x_all.shape[0])
        xl = _translate(preprocess(x_lab[li], scale, mean, std), k_shift_l, config.shift)
        xu = _translate(preprocess(x_all[ui], scale, mean, std), k_shift_u, config.shift)
        loss, grads = jax.value_and_grad(loss_fn)(p, xl, y_lab[li], w_lab[li], xu, k_probe)
        updates, s = optimizer.update(grads, s, p)
        p = optax.apply_updates(p, updates)
        decay = jnp.minimum(config.ema_decay, (1.0 + step) / (10.0 + step))
        ema = jax.tree_util.tree_map(lambda e, q: decay * e + (1.0 - decay) * q, ema, p)
        return (p, s, ema), loss

    if length == 1:
        return body(carry, start)
    return jax.lax.scan(body, carry, start + jnp.arange(length))


def _fit_vat(
    features: np.ndarray,
    answered: np.ndarray,
    labels: np.ndarray,
    model_config: ModelConfig,
    config: StudentConfig,
    preprocessing: Preprocessing,
) -> TrainedModel:
    """VAT + entropy minimisation with EMA weights and the early label filter (module docstring)."""
    root = jax.random.key(config.seed)
    params = model_config.build().init(
        jax.random.fold_in(root, 0), jnp.zeros((1, *model_config.input_shape))
    )["params"]
    carry = (
        params,
        _vat_optimizer(config).init(params),
        jax.tree_util.tree_map(jnp.copy, params),
    )
    prep = (preprocessing.scale, preprocessing.mean, preprocessing.std)
    x_all = jnp.asarray(features)
    x_lab = jnp.asarray(features[answered])
    y_lab = jnp.asarray(labels.astype(np.int32))
    chunk = _steps_per_call(model_config)
    step_root = jax.random.fold_in(root, 1)
    static = {"model_config": model_config, "config": _program_config(config)}

    def advance(carry, begin: int, end: int, w_lab: jax.Array):
        data = (x_all, x_lab, y_lab, w_lab, *prep)
        # Whole chunks, then single steps: two compiled programs at most, whatever the step counts.
        start = begin
        while start < end:
            length = chunk if end - start >= chunk else 1
            carry, _ = _vat_steps(carry, start, data, step_root, length=length, **static)
            start += length
        return carry

    w_lab = jnp.ones(len(answered), jnp.float32)
    switch = config.steps
    if config.label_filter > 0:
        switch = max(1, int(config.filter_at * config.steps))
        if chunk > 1:  # on a chunk boundary, so the filter adds no compiled program
            switch = min(config.steps, chunk * max(1, round(switch / chunk)))
    carry = advance(carry, 0, switch, w_lab)
    if switch < config.steps:
        current = carry[2] if config.ema_decay > 0 else carry[0]
        logits = np.asarray(_forward(current, x_lab, *prep, model_config=model_config))
        probs = np.asarray(jax.nn.softmax(logits, axis=1))
        w_lab = jnp.asarray(_label_weights(probs, labels, config.label_filter))
        carry = advance(carry, switch, config.steps, w_lab)
    final = carry[2] if config.ema_decay > 0 else carry[0]
    return TrainedModel(
        params=jax.tree_util.tree_map(np.asarray, final),
        model=model_config,
        preprocessing=preprocessing,
    )
