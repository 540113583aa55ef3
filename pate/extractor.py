"""A feature extractor learned from the *public, unlabeled* data only, shared by all teachers.

Why it costs no privacy. The extractor's parameters are a function of the public set and a seed, and of
nothing else: no private record (and no label at all) is read while it is fitted. A teacher of the
``public`` strategy is ``head_t(extractor(x))``, where only the dense head ``head_t`` is trained, on shard
``t`` alone. Adding or removing one individual still changes one shard, hence one head, hence at most one
vote (Papernot et al. 2017, §2 and Theorem 2; 2018, §3): the sensitivity every PATE bound assumes is
unchanged. The public set is the one the student is later labelled on, which PATE treats as public
already; design rule 8 (no individual shared with the private data) applies to it as before.

Method: single-layer unsupervised features of Coates, Lee & Ng (AISTATS 2011, "An analysis of
single-layer networks in unsupervised feature learning"):

1. sample ``sample_patches`` patches of ``patch x patch`` pixels from ``sample_images`` public images;
2. normalise each patch's contrast (subtract its mean, divide by ``sqrt(var + contrast_eps)``) and
   ZCA-whiten them (``whitening_eps`` added to the covariance's eigenvalues);
3. k-means with ``centroids`` centres (``iterations`` Lloyd steps, seeded);
4. encode every patch of an image with the "triangle" activation ``f_k = max(0, mean_j d_j - d_k)``
   (``d_k`` the distance to centre ``k``) and sum-pool the maps over a ``grid x grid`` partition of the
   image: ``grid**2 * centroids`` features.

The defaults (7x7 patches, 400 centres, a 3x3 grid) were chosen on MNIST; the figures are in
BENCHMARKS.md ("Teachers at scale").

Encoding runs in JAX in batches, so memory is bounded by ``batch_size`` and not by the data.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from functools import partial

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from pate.errors import PateError
from pate.io import file_fingerprint, open_h5, read_dataset_attrs

EXTRACTOR_KIND = "kmeans-patches"


@dataclass(frozen=True)
class ExtractorConfig:
    """Hyperparameters of the public feature extractor (see the module docstring)."""

    patch: int = 7
    centroids: int = 400
    grid: int = 3
    iterations: int = 10
    sample_images: int = 2000
    sample_patches: int = 200_000
    contrast_eps: float = 0.01
    whitening_eps: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("patch", "centroids", "grid", "iterations", "sample_images", "sample_patches"):
            value = getattr(self, name)
            if value < 1:
                raise PateError(f"Expected {name}={value} >= 1.")
        for name in ("contrast_eps", "whitening_eps"):
            value = getattr(self, name)
            if not value > 0:
                raise PateError(f"Expected {name}={value} > 0.")

    @property
    def num_features(self) -> int:
        return self.grid * self.grid * self.centroids

    def to_json(self) -> str:
        return json.dumps({"kind": EXTRACTOR_KIND, **dataclasses.asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> ExtractorConfig:
        raw = json.loads(text)
        kind = raw.pop("kind", EXTRACTOR_KIND)
        if kind != EXTRACTOR_KIND:
            raise PateError(f"Expected extractor kind {EXTRACTOR_KIND!r}, found {kind!r}.")
        return cls(**raw)


@dataclass(frozen=True)
class Extractor:
    """A fitted extractor: whitening and centres, plus the public file it was learned from."""

    config: ExtractorConfig
    input_shape: tuple[int, ...]
    scale: float  # 1/255 for uint8 images, 1 for floats
    mean: np.ndarray  # (D,) mean of the normalised patches
    whitening: np.ndarray  # (D, D) ZCA matrix
    centroids: np.ndarray  # (K, D) in whitened space
    public_sha256: str = ""

    @property
    def num_features(self) -> int:
        return self.config.num_features

    def features(self, images: np.ndarray, *, batch_size: int = 16) -> np.ndarray:
        """Encode ``images`` (N, H, W, C) as float32 features (N, grid**2 * centroids).

        Small batches are faster on the CPU: the (batch, L, L, centroids) intermediates stay below the
        allocator's mmap threshold, which saves a page fault storm per batch.
        """
        check_image_shape(tuple(images.shape[1:]), self.input_shape, "features")
        encode = _encoder(self.config.patch, self.config.grid, self.config.contrast_eps)
        params = (
            jnp.asarray(self.mean),
            jnp.asarray(self.whitening),
            jnp.asarray(self.centroids),
        )
        out = np.empty((len(images), self.num_features), np.float32)
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            rows = len(batch)
            if rows < batch_size:  # one compiled shape
                batch = np.concatenate([batch, np.zeros((batch_size - rows, *batch.shape[1:]))])
            x = jnp.asarray(batch, jnp.float32) * self.scale
            out[start : start + rows] = np.asarray(encode(x, *params))[:rows]
        return out


def check_image_shape(found: tuple[int, ...], expected: tuple[int, ...], what: str) -> None:
    if found != expected:
        raise PateError(
            f"{what}: images of shape {found}, expected {expected} as in the public set"
        )


def _patches(images: jax.Array, patch: int) -> jax.Array:
    """(N, H, W, C) -> (N, L, L', C*patch*patch) every VALID patch, ordered (channel, row, column)."""
    return jax.lax.conv_general_dilated_patches(
        images, (patch, patch), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _normalise(patches: jax.Array, eps: float) -> jax.Array:
    centred = patches - patches.mean(axis=-1, keepdims=True)
    return centred / jnp.sqrt(centred.var(axis=-1, keepdims=True) + eps)


@partial(jax.jit, static_argnums=(1, 2))
def _sample_patches(images: jax.Array, patch: int, eps: float) -> jax.Array:
    return _normalise(_patches(images, patch), eps)


def _encoder(patch: int, grid: int, eps: float):
    @jax.jit
    def encode(images, mean, whitening, centroids):
        z = (_normalise(_patches(images, patch), eps) - mean) @ whitening
        squared = (
            (z * z).sum(-1, keepdims=True) - 2.0 * z @ centroids.T + (centroids * centroids).sum(-1)
        )
        distance = jnp.sqrt(jnp.maximum(squared, 0.0))
        activation = jnp.maximum(distance.mean(-1, keepdims=True) - distance, 0.0)
        height, width = activation.shape[1:3]
        rows = np.linspace(0, height, grid + 1).astype(int)
        cols = np.linspace(0, width, grid + 1).astype(int)
        pooled = [
            activation[:, rows[i] : rows[i + 1], cols[j] : cols[j + 1]].sum(axis=(1, 2))
            for i in range(grid)
            for j in range(grid)
        ]
        return jnp.concatenate(pooled, axis=-1)

    return encode


def fit_extractor(
    images: np.ndarray | h5py.Dataset,
    config: ExtractorConfig,
    *,
    public_sha256: str = "",
    source: str = "public",
) -> Extractor:
    """Learn the extractor from public ``images`` (N, H, W, C) only (see the module docstring).

    ``images`` may be an open HDF5 dataset: only the sampled rows are read.
    """
    if images.ndim != 4:
        raise PateError(
            f"{source}: features of shape {images.shape[1:]}, expected images (height, width, "
            "channels) for the public feature extractor"
        )
    if min(images.shape[1:3]) < config.patch:
        raise PateError(
            f"{source}: images of {images.shape[1]}x{images.shape[2]} pixels, expected at least "
            f"patch={config.patch}"
        )
    if len(images) < 1:
        raise PateError(f"{source}: no images, expected at least one public image")
    scale = 1.0 / 255.0 if images.dtype.kind in ("u", "i") else 1.0
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.permutation(len(images))[: config.sample_images])
    patches = []
    for start in range(0, len(chosen), 256):
        batch = jnp.asarray(images[chosen[start : start + 256]], jnp.float32) * scale
        sampled = np.asarray(_sample_patches(batch, config.patch, config.contrast_eps))
        patches.append(sampled.reshape(-1, sampled.shape[-1]))
    flat = np.concatenate(patches)
    flat = flat[rng.permutation(len(flat))[: config.sample_patches]].astype(np.float64)
    mean = flat.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(flat - mean, rowvar=False))
    whitening = (eigenvectors / np.sqrt(eigenvalues + config.whitening_eps)) @ eigenvectors.T
    z = ((flat - mean) @ whitening).astype(np.float32)
    centroids = _kmeans(z, config.centroids, config.iterations, rng)
    return Extractor(
        config=config,
        input_shape=tuple(images.shape[1:]),
        scale=scale,
        mean=mean.astype(np.float32),
        whitening=whitening.astype(np.float32),
        centroids=centroids,
        public_sha256=public_sha256,
    )


def _kmeans(z: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means; an empty cluster is re-seeded with a random point."""
    if len(z) < k:
        raise PateError(f"public set: {len(z)} patches for centroids={k}, expected at least {k}")
    centroids = z[rng.choice(len(z), k, replace=False)].copy()
    for _ in range(iterations):
        assignment = np.empty(len(z), np.int64)
        for start in range(0, len(z), 32768):
            block = z[start : start + 32768]
            squared = -2.0 * block @ centroids.T + (centroids * centroids).sum(-1)
            assignment[start : start + 32768] = squared.argmin(axis=1)
        sums = np.stack(
            [np.bincount(assignment, weights=z[:, d], minlength=k) for d in range(z.shape[1])], 1
        )
        counts = np.bincount(assignment, minlength=k)
        empty = counts == 0
        centroids = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        centroids[empty] = z[rng.choice(len(z), int(empty.sum()), replace=False)]
    return centroids


def fit_extractor_from_file(
    path: str | os.PathLike, config: ExtractorConfig = ExtractorConfig()
) -> Extractor:
    """:func:`fit_extractor` on a public ``pate-dataset`` file, recording its fingerprint.

    Only the ``sample_images`` sampled rows of ``features`` are read; labels, if any, never are.
    """
    with open_h5(path, "public dataset") as handle:
        read_dataset_attrs(handle, path)
        return fit_extractor(
            handle["features"], config, public_sha256=file_fingerprint(path), source=str(path)
        )
