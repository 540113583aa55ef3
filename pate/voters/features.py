"""Feature maps for the voters' metric: functions of public data only (design rule 10).

A feature map is any callable ``features(x) -> (n, d)`` floats. The two here are fitted on the public
set's features alone and then applied, unchanged, to private records and public queries alike:

* :class:`Standardize`: flatten each record and standardise each coordinate by the public set's mean
  and standard deviation;
* :class:`PublicPCA`: the same standardisation, then the projection on the top ``dims`` principal
  directions of the standardised public set.

Neither reads a private record or label to decide anything, so the metric costs no privacy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pate.errors import PateError

__all__ = ["PublicPCA", "Quantize", "Standardize", "exact_limit"]


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 1:
        raise PateError(f"features have shape {x.shape}, expected (n, ...) records")
    return x.reshape(len(x), -1).astype(np.float64)


def _fit_scale(public: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = _flat(public)
    if len(flat) < 2:
        raise PateError(
            f"`public` has {len(flat)} records, expected at least 2 to fit a feature map"
        )
    if not np.all(np.isfinite(flat)):
        raise PateError("`public` holds NaN or inf, expected finite features")
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)  # constant coordinates are centred, not scaled


@dataclass(frozen=True, eq=False)
class Standardize:
    """``(flatten(x) - mean) / std`` with the public set's per-coordinate mean and std (std 0 -> 1)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, public: np.ndarray) -> Standardize:
        mean, std = _fit_scale(public)
        return cls(mean=mean, std=std)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = _flat(x)
        if flat.shape[1] != self.mean.size:
            raise PateError(
                f"features have {flat.shape[1]} values per record, expected {self.mean.size}"
            )
        return ((flat - self.mean) / self.std).astype(np.float32)

    def describe(self) -> dict:
        return {"kind": "standardize", "dims": int(self.mean.size)}


@dataclass(frozen=True, eq=False)
class PublicPCA:
    """Standardise (as :class:`Standardize`), then project on the top ``dims`` principal directions of
    the standardised public set (``components``: (dims, D), rows orthonormal)."""

    scale: Standardize
    components: np.ndarray

    @classmethod
    def fit(cls, public: np.ndarray, dims: int) -> PublicPCA:
        if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1:
            raise PateError(f"`dims` is {dims!r}, expected a positive integer")
        scale = Standardize.fit(public)
        standardized = scale(public).astype(np.float64)
        limit = min(standardized.shape)
        if dims > limit:
            raise PateError(
                f"`dims` is {dims}, expected at most {limit} (public records and coordinates)"
            )
        _, _, vt = np.linalg.svd(standardized - standardized.mean(axis=0), full_matrices=False)
        return cls(scale=scale, components=vt[:dims])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (self.scale(x).astype(np.float64) @ self.components.T).astype(np.float32)

    def describe(self) -> dict:
        return {"kind": "public-pca", "dims": int(self.components.shape[0])}


def exact_limit(dims: int) -> int:
    """The largest integer ``L`` with ``4 dims L^2 < 2^24`` and ``L < 2^11``: for features in
    ``[-L, L]`` every partial sum of ``|x|^2 - 2 x.r + |r|^2`` is an integer below ``2^24``, exact in
    float32 whatever the summation order, and every input is exact in TF32 (11 significant bits)."""
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1:
        raise PateError(f"`dims` is {dims!r}, expected a positive integer")
    limit = int(np.floor(np.sqrt((2**24 - 1) / (4 * dims))))
    while 4 * dims * limit * limit >= 2**24:
        limit -= 1
    return min(limit, 2**11 - 1)


@dataclass(frozen=True, eq=False)
class Quantize:
    """``clip(round(inner(x) / step), -limit, limit)`` as float32 integers, with ``step`` and
    ``limit`` fitted on the public set: the search then computes every squared distance exactly, so
    each individual's distance depends on the query and its own records only, wherever they sit in
    memory (docs/voters.md, "Search and memory")."""

    inner: Standardize | PublicPCA
    step: float
    limit: int

    @classmethod
    def fit(cls, inner: Standardize | PublicPCA, public: np.ndarray) -> Quantize:
        mapped = np.asarray(inner(public), dtype=np.float64)
        limit = exact_limit(mapped.shape[1])
        largest = float(np.abs(mapped).max())
        return cls(inner=inner, step=(largest / limit) if largest > 0 else 1.0, limit=limit)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        mapped = np.asarray(self.inner(x), dtype=np.float64)
        return np.clip(np.rint(mapped / self.step), -self.limit, self.limit).astype(np.float32)

    def describe(self) -> dict:
        return {**self.inner.describe(), "quantized": True, "limit": self.limit}
