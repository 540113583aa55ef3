"""Flax models of teachers and students, described by a frozen, serialisable :class:`ModelConfig`.

* ``mlp``: dense ReLU layers (``hidden``), for tabular data.
* ``cnn``: the PATE papers' MNIST-style network: conv 5x5x32 -> ReLU -> max-pool 2x2 -> conv 5x5x64 ->
  ReLU -> max-pool 2x2 -> dense 256 -> ReLU -> dense ``num_classes``.
* ``cnn-medium``: the same shape at half the width (conv 16, conv 32, dense 128): about a quarter of the
  ``cnn``'s arithmetic, the student's default for images on the CPU.
* ``cnn-small``: the same shape at a quarter of the width (conv 8, conv 16, dense 64), for fast runs.

Inputs are normalised inside :func:`preprocess`: images (uint8) are divided by 255; tabular features are
standardised with a mean and standard deviation that travel with the model (for a teacher, computed from
its own shard only; for the student, from the public data).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from pate.errors import PateError

MODEL_KINDS = ("mlp", "cnn", "cnn-medium", "cnn-small")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a teacher or student."""

    kind: str
    input_shape: tuple[int, ...]
    num_classes: int
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise PateError(f"Expected model={self.kind!r} in {', '.join(MODEL_KINDS)}.")
        if self.num_classes < 2:
            raise PateError(f"Expected num_classes={self.num_classes} >= 2.")
        if self.kind != "mlp" and (len(self.input_shape) != 3 or min(self.input_shape[:2]) < 8):
            raise PateError(
                f"model {self.kind!r} needs images of shape (height, width, channels) of at least 8x8, "
                f"found feature shape {self.input_shape}; use --model mlp for tabular data"
            )
        if any(width < 1 for width in self.hidden):
            raise PateError(f"Expected hidden={self.hidden} to be positive widths.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        raw = json.loads(text)
        return cls(
            kind=raw["kind"],
            input_shape=tuple(raw["input_shape"]),
            num_classes=int(raw["num_classes"]),
            hidden=tuple(raw["hidden"]),
        )

    def build(self) -> nn.Module:
        if self.kind == "mlp":
            return MLP(hidden=self.hidden, num_classes=self.num_classes)
        width = {"cnn": 1, "cnn-medium": 2, "cnn-small": 4}[self.kind]
        return CNN(
            features=(32 // width, 64 // width), dense=256 // width, num_classes=self.num_classes
        )


class MLP(nn.Module):
    hidden: tuple[int, ...]
    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


class CNN(nn.Module):
    features: tuple[int, int]
    dense: int
    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for channels in self.features:
            x = nn.relu(nn.Conv(channels, (5, 5))(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.dense)(x))
        return nn.Dense(self.num_classes)(x)


@dataclass(frozen=True)
class Preprocessing:
    """Input normalisation: ``(x * scale - mean) / std``, broadcast over the feature shape."""

    scale: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> Preprocessing:
        """Images (integers): scale to [0, 1]. Floats: standardise per feature from ``features``."""
        if features.dtype.kind in ("u", "i"):
            shape = (1,) * (features.ndim - 1)
            return cls(1.0 / 255.0, np.zeros(shape, np.float32), np.ones(shape, np.float32))
        mean = features.mean(axis=0).astype(np.float32)
        std = features.std(axis=0).astype(np.float32)
        return cls(1.0, mean, np.where(std > 1e-6, std, 1.0).astype(np.float32))


def preprocess(features, scale, mean, std):
    """Apply the normalisation (works on NumPy and JAX arrays)."""
    return (features.astype(jnp.float32) * scale - mean) / std
