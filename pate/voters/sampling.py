"""Poisson samples of individuals, exact for the rate the caller passes, from a NoiseSource.

Each individual is in the sample independently with probability ``rate``, fresh at every call; the size
of the sample is random (Binomial), never fixed, and nobody is drawn twice (design rule 9).

Exactness. A float ``rate`` is the dyadic rational ``m / 2^e`` (``Fraction(rate)``). With
``L = ceil(e / 8)`` bytes, ``M = m * 2^(8L - e)`` and ``U`` uniform on ``[0, 2^(8L))`` (``L`` uniform
bytes), ``Pr[U < M] = M / 2^(8L) = rate`` exactly. ``U < M`` is decided byte by byte, most significant
first, drawing a further byte only for the individuals whose bytes so far equal ``M``'s (one in 256
per byte): about one byte of randomness per individual, and no floating point in any decision.
The bytes are the NoiseSource's uniform words (the OS CSPRNG for :class:`~pate.noise.SystemNoise`,
a seeded stream, NOT PRIVATE, for :class:`~pate.noise.SeededNoise`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from pate.accounting.subsampled import check_rate
from pate.errors import PateError
from pate.noise import NoiseSource

__all__ = ["poisson_sample", "rate_threshold"]


def rate_threshold(rate: float) -> tuple[bytes, int]:
    """``(M, L)``: an individual is sampled iff ``L`` uniform bytes, read as a big-endian integer, are
    below the big-endian ``M``; ``Pr = rate`` exactly. ``L = 0`` means ``rate == 1`` (always in).

    >>> rate_threshold(0.5)
    (b'\\x80', 1)
    >>> rate_threshold(0.375)
    (b'`', 1)
    """
    rate = check_rate(rate)
    fraction = Fraction(rate)
    if fraction == 1:
        return b"", 0
    exponent = fraction.denominator.bit_length() - 1  # the denominator is 2^exponent
    length = math.ceil(exponent / 8)
    value = fraction.numerator << (8 * length - exponent)
    return value.to_bytes(length, "big"), length


def _uniform_bytes(noise: NoiseSource, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=np.uint8)
    words = noise._words(-(-count // 8))  # the source's uniform 64-bit words
    return np.ascontiguousarray(words).view(np.uint8)[:count]


def poisson_sample(
    noise: NoiseSource, num_individuals: int, rate: float, shape: tuple[int, ...] = ()
) -> np.ndarray:
    """Boolean mask ``(*shape, num_individuals)``: each entry independently ``True`` with probability
    ``rate`` exactly (module docstring), from ``noise``'s uniform bits; fresh at every call.

    ``shape`` draws several independent samples at once (one per query, say).
    """
    if (
        isinstance(num_individuals, bool)
        or not isinstance(num_individuals, (int, np.integer))
        or num_individuals < 0
    ):
        raise PateError(
            f"`num_individuals` is {num_individuals!r}, expected a non-negative integer"
        )
    shape = tuple(int(n) for n in shape) + (int(num_individuals),)
    if any(n < 0 for n in shape):
        raise PateError(f"`shape` is {shape[:-1]}, expected non-negative dimensions")
    threshold, length = rate_threshold(rate)
    count = math.prod(shape)
    if length == 0:
        return np.ones(shape, dtype=bool)
    inside = np.zeros(count, dtype=bool)
    pending = np.arange(count)
    for position in range(length):
        if pending.size == 0:
            break
        digits = _uniform_bytes(noise, pending.size)
        target = threshold[position]
        inside[pending[digits < target]] = True
        pending = pending[digits == target]
    # Whoever is still pending drew exactly M: not below it, so not sampled.
    return inside.reshape(shape)
