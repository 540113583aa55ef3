"""Flax models of teachers and students, described by a frozen, serialisable :class:`ModelConfig`.

* ``mlp``: dense ReLU layers (``hidden``), for tabular data.
* ``cnn``: the MNIST teacher of the PATE papers. Papernot et al. 2017, §4.1, describe it as "two
  convolutional layers with max-pooling and one fully connected layer with ReLUs"; the widths are ours:
  conv 5x5, 32 channels, stride 1, SAME padding -> ReLU -> max-pool 2x2 stride 2 -> conv 5x5, 64
  channels, SAME -> ReLU -> max-pool 2x2 stride 2 -> flatten -> dense 256 -> ReLU -> dense
  ``num_classes`` (logits). On 28x28x1 inputs: 832 + 51,264 + 803,072 + 2,570 = 857,738 parameters.
* ``cnn-medium``: the same shape at half the width (conv 16, conv 32, dense 128): 416 + 12,832 +
  200,832 + 1,290 = 215,370 parameters on 28x28x1, about a quarter of the ``cnn``'s arithmetic; the
  student's default for images (its accuracy: BENCHMARKS.md).
* ``cnn-small``: the same shape at a quarter of the width (conv 8, conv 16, dense 64), for fast runs:
  208 + 3,216 + 50,240 + 650 = 54,314 parameters on 28x28x1.
* ``custom``: the user's own module, from ``factory`` = ``"package.module:factory"``, a callable
  ``factory(input_shape, num_classes) -> flax.linen.Module``. The contract (called as
  ``module.apply({"params": params}, x)`` on a float batch ``(N, *input_shape)``, no train flag, no
  RNG, logits ``(N, num_classes)``, only ``params`` variables) is in :mod:`pate.model_ref`. Building
  the config imports the factory, calls it and checks the module's output shape and variables once
  (cached), so a bad factory is refused before any work. Files store the reference, not the code: the
  module must be importable wherever they are loaded. ``hidden`` means nothing there and is stored as
  ``()``; the convolution implementation (``conv=``) is the module's own.

Convolutions have two interchangeable implementations with the same parameters (``conv=`` of
:meth:`ModelConfig.build`): ``"xla"`` (``lax.conv``) and ``"patches"``, which extracts the image patches
(a convolution with a fixed identity kernel) and multiplies them with the kernel as a matrix. Under
``vmap`` over teachers the first becomes a grouped convolution, which XLA's CPU backend runs slowly; the
second becomes one patch extraction over teachers x batch plus a *batched matrix product* with one
kernel per teacher. Which is faster depends on the backend (BENCHMARKS.md, "Teachers at scale");
``patches`` is for backends whose grouped convolutions are slow and batched products fast.

Inputs are normalised inside :func:`preprocess`: images (uint8) are divided by 255; tabular features are
standardised with a mean and standard deviation that travel with the model (for a teacher, computed from
its own shard only; for the student, from the public data).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pate.errors import PateError
from pate.model_ref import check_reference, load_factory, one_line

MODEL_KINDS = ("mlp", "cnn", "cnn-medium", "cnn-small", "custom")
CONV_IMPLEMENTATIONS = ("xla", "patches")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a teacher or student; ``factory`` only (and always) for ``kind="custom"``."""

    kind: str
    input_shape: tuple[int, ...]
    num_classes: int
    hidden: tuple[int, ...] = (256, 256)
    factory: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise PateError(f"Expected model={self.kind!r} in {', '.join(MODEL_KINDS)}.")
        if self.num_classes < 2:
            raise PateError(f"Expected num_classes={self.num_classes} >= 2.")
        if self.kind == "custom":
            if self.factory is None:
                raise PateError(
                    "`factory`: missing, expected package.module:factory for model kind 'custom'"
                )
            check_reference(self.factory)
            object.__setattr__(self, "input_shape", tuple(int(n) for n in self.input_shape))
            object.__setattr__(self, "hidden", ())
            _custom_module(self.factory, self.input_shape, self.num_classes)
            return
        if self.factory is not None:
            raise PateError(
                f"`factory` {self.factory!r}: only for model kind 'custom', found kind {self.kind!r}"
            )
        if self.kind != "mlp" and (len(self.input_shape) != 3 or min(self.input_shape[:2]) < 8):
            raise PateError(
                f"model {self.kind!r} needs images of shape (height, width, channels) of at least 8x8, "
                f"found feature shape {self.input_shape}; use --model mlp for tabular data"
            )
        if any(width < 1 for width in self.hidden):
            raise PateError(f"Expected hidden={self.hidden} to be positive widths.")

    def to_json(self) -> str:
        """The config as JSON; ``factory`` only when set (built-in kinds write what they always did)."""
        raw = dataclasses.asdict(self)
        if raw["factory"] is None:
            del raw["factory"]
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """The inverse of :meth:`to_json` (JSON without ``factory`` is a built-in kind's)."""
        raw = json.loads(text)
        return cls(
            kind=raw["kind"],
            input_shape=tuple(raw["input_shape"]),
            num_classes=int(raw["num_classes"]),
            hidden=tuple(raw["hidden"]),
            factory=raw.get("factory"),
        )

    def build(self, *, conv: str = "xla") -> nn.Module:
        """The flax module; ``conv`` picks the convolution implementation of the built-in CNNs (same
        parameters); a custom module is the factory's, whatever ``conv``."""
        if conv not in CONV_IMPLEMENTATIONS:
            raise PateError(f"Expected conv={conv!r} in {', '.join(CONV_IMPLEMENTATIONS)}.")
        if self.kind == "custom":
            return _custom_module(self.factory, self.input_shape, self.num_classes)
        if self.kind == "mlp":
            return MLP(hidden=self.hidden, num_classes=self.num_classes)
        width = {"cnn": 1, "cnn-medium": 2, "cnn-small": 4}[self.kind]
        return CNN(
            features=(32 // width, 64 // width),
            dense=256 // width,
            num_classes=self.num_classes,
            conv=conv,
        )

    @property
    def is_convolutional(self) -> bool:
        """Whether the model convolves (training then takes one step per call on the CPU, see
        :mod:`pate.teachers.steps`). Not known for a custom model: assumed for image inputs
        (height, width, channels), whose cost if wrong is dispatch overhead only."""
        if self.kind == "custom":
            return len(self.input_shape) == 3
        return self.kind != "mlp"


@functools.lru_cache(maxsize=32)
def _custom_module(reference: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The module ``reference``'s factory returns for ``(input_shape, num_classes)``, checked once:
    a flax module with only ``params`` variables that maps a float batch (2, *input_shape) to logits
    (2, num_classes), and that can be applied and differentiated as training and voting do
    (``module.apply({"params": p}, x)``, no RNG, no flag), found from shapes alone
    (``jax.eval_shape``). Failures name `factory`."""
    factory = load_factory(reference)
    try:
        module = factory(tuple(input_shape), int(num_classes))
    except Exception as exc:
        raise PateError(
            f"`factory` {reference!r}: calling it with input_shape {tuple(input_shape)} and "
            f"num_classes {num_classes} raised {one_line(exc)}; expected a flax.linen.Module"
        ) from None
    if not isinstance(module, nn.Module):
        raise PateError(
            f"`factory` {reference!r}: returned a {type(module).__name__}, expected a "
            "flax.linen.Module"
        )
    sample = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
    try:
        out, variables = jax.eval_shape(
            lambda x: module.init_with_output(jax.random.key(0), x), sample
        )
    except Exception as exc:
        raise PateError(
            f"`factory` {reference!r}: its module fails on a batch of shape {sample.shape} "
            f"({one_line(exc)}); expected it called as module.apply({{'params': p}}, x)"
        ) from None
    others = sorted(set(variables) - {"params"})
    if others:
        raise PateError(
            f"`factory` {reference!r}: its module has variable collections {', '.join(others)}, "
            "expected only 'params' (no batch statistics or other mutable state)"
        )
    if not jax.tree_util.tree_leaves(variables.get("params", {})):
        raise PateError(f"`factory` {reference!r}: its module has no parameters to train")
    expected = (2, num_classes)
    if not isinstance(out, jax.ShapeDtypeStruct) or tuple(out.shape) != expected:
        found = f"shape {tuple(out.shape)}" if hasattr(out, "shape") else type(out).__name__
        raise PateError(
            f"`factory` {reference!r}: its module returns {found} on a batch of shape "
            f"{sample.shape}, expected logits of shape {expected}"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise PateError(
            f"`factory` {reference!r}: its module returns {out.dtype} logits, expected floats"
        )
    try:  # exactly as training and voting call it: no RNG but `params`, no flag, and a gradient
        jax.eval_shape(functools.partial(_train_and_vote, module), variables["params"], sample)
    except Exception as exc:
        raise PateError(
            f"`factory` {reference!r}: its module fails when called as "
            f"module.apply({{'params': p}}, x) on a batch of shape {sample.shape}, with no RNG "
            f"and no train flag, and differentiated ({one_line(exc)}); expected no dropout or "
            "other randomness, and no mutable state"
        ) from None
    return module


def _train_and_vote(module: nn.Module, params, x):  # noqa: ANN001 (abstract shapes)
    """What training and voting do with a custom module: logits, and the gradient of a loss."""
    logits = module.apply({"params": params}, x)
    grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x)))(params)
    return logits, grads


class MLP(nn.Module):
    hidden: tuple[int, ...]
    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


class PatchConv(nn.Module):
    """A SAME, stride-1 convolution as image patches x kernel matrix; parameters as ``nn.Conv``'s."""

    features: int
    kernel_size: tuple[int, int]

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        channels = x.shape[-1]
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, channels, self.features),
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        patches = jax.lax.conv_general_dilated_patches(
            x, self.kernel_size, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        # Patch features are ordered (channel, row, column); bring the kernel into the same order.
        matrix = kernel.transpose(2, 0, 1, 3).reshape(-1, self.features)
        return patches @ matrix + bias


class CNN(nn.Module):
    features: tuple[int, int]
    dense: int
    num_classes: int
    conv: str = "xla"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for index, channels in enumerate(self.features):
            name = f"Conv_{index}"
            if self.conv == "patches":
                layer = PatchConv(channels, (5, 5), name=name)
            else:
                layer = nn.Conv(channels, (5, 5), name=name)
            x = nn.relu(layer(x))
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
        """Images (integers): scale to [0, 1]. Floats: standardise per feature from ``features``,
        except indicator columns (only 0 and 1 in ``features``, e.g. one-hot categories), which are
        kept as they are: standardising an indicator of frequency ``p`` multiplies its ones by about
        ``1 / sqrt(p)`` (30 for a category seen once in a thousand records), which measurably hurt
        both teachers and student on UCI Adult (BENCHMARKS.md)."""
        features = np.asarray(features)
        scale, mean, std = cls.fit_stacked(features[None], np.array([len(features)]))
        return cls(scale, mean[0], std[0])

    @staticmethod
    def fit_stacked(
        features: np.ndarray, sizes: np.ndarray, block: int = 16
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """:meth:`fit` of each of ``T`` stacked sets at once: ``features`` (T, N, ...) of which the
        first ``sizes[t]`` rows are set ``t``'s (the rest is padding and is ignored). Returns
        ``(scale, mean (T, ...), std (T, ...))``; set ``t``'s constants depend on its own rows only.
        Works through ``block`` sets at a time to bound the temporaries."""
        count = len(features)
        if features.dtype.kind in ("u", "i"):
            shape = (count,) + (1,) * (features.ndim - 2)
            return 1.0 / 255.0, np.zeros(shape, np.float32), np.ones(shape, np.float32)
        means, stds = [], []
        for first in range(0, count, block):
            x = features[first : first + block]
            n = np.asarray(sizes[first : first + block])
            valid = (np.arange(x.shape[1]) < n[:, None]).reshape(
                n.shape + (x.shape[1],) + (1,) * (x.ndim - 2)
            )
            rows = np.maximum(n, 1).astype(np.float64).reshape((-1,) + (1,) * (x.ndim - 2))
            mean = np.where(valid, x, 0).sum(axis=1, dtype=np.float64) / rows
            var = (
                np.square(np.where(valid, x - mean[:, None].astype(x.dtype), 0)).sum(
                    axis=1, dtype=np.float64
                )
                / rows
            )
            std = np.sqrt(var)
            indicator = np.all(~valid | (x == 0) | (x == 1), axis=1)
            means.append(np.where(indicator, 0.0, mean).astype(np.float32))
            stds.append(np.where(indicator | (std <= 1e-6), 1.0, std).astype(np.float32))
        return 1.0, np.concatenate(means), np.concatenate(stds)


def preprocess(features, scale, mean, std):  # noqa: ANN001 (NumPy or JAX arrays)
    """Apply the normalisation (works on NumPy and JAX arrays)."""
    return (features.astype(jnp.float32) * scale - mean) / std
