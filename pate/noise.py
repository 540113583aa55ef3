"""Exact integer-valued privacy noise: the discrete Gaussian and the discrete Laplace.

Why integer noise. Vote counts are integers, and floating-point samples of continuous noise leak the
value they were added to through their low-order bits (Mironov 2012). We add noise drawn exactly from
the discrete Gaussian ``N_Z(0, sigma^2)`` (``P(x) ∝ exp(-x^2 / (2 sigma^2))`` on the integers) or the
discrete Laplace (``P(x) ∝ exp(-|x| / scale)``) with the samplers of Canonne, Kamath and Steinke 2020,
"The Discrete Gaussian for Differential Privacy" (CKS), Algorithms 1-3:

* Algorithm 1, ``Bernoulli(exp(-gamma))`` for rational ``gamma``, from ``Bernoulli(gamma / k)`` draws;
* Algorithm 2, the discrete Laplace of rational scale ``t / s``, from a uniform draw on ``{0..t-1}`` and
  geometric draws;
* Algorithm 3, the discrete Gaussian by rejection from the discrete Laplace of scale
  ``t = floor(sigma) + 1``.

Exactness. Every random decision is a comparison of exact integers with uniform integers built from
uniform random bits by rejection, so the output distribution is exactly the target pmf: no floating
point touches a random decision. ``sigma**2`` is the exact rational ``Fraction(sigma) ** 2`` of the float
``sigma`` the caller passes (the value the accountant sees), and the Laplace scale is
``Fraction(scale)``. The draws are vectorised over the requested size with NumPy integer arrays (Python
integers in object arrays only when a quantity exceeds 62 bits), which keeps them exact and fast.

Randomness. :class:`SystemNoise` (the default, :func:`make_noise` with ``seed=None``) reads the
operating system's CSPRNG through :func:`os.urandom` only, in bulk, and never builds a seeded
generator. :class:`SeededNoise` runs the same exact samplers on a seeded PCG64 stream for reproducible
experiments; its ``private`` flag is ``False`` and its description says ``NOT PRIVATE``, and every
ledger and report must carry that description.

Accounting (what the privacy proof may use):

* **Data-independent RDP.** For integer vectors ``mu, nu`` and independent discrete Gaussian coordinates,
  ``D_alpha(mu + Z || nu + Z) <= alpha * ||mu - nu||_2^2 / (2 sigma^2)``: the same bound as for the
  continuous Gaussian (CKS, Theorem 4, concentrated DP of the discrete Gaussian mechanism; the divergence
  adds over independent coordinates). Short proof: with ``c = alpha*mu + (1 - alpha)*nu`` the Renyi sum is
  ``exp(alpha (alpha - 1) (mu - nu)^2 / (2 sigma^2)) * theta(c) / theta(0)`` with
  ``theta(c) = sum_x exp(-(x - c)^2 / (2 sigma^2))``, and ``theta(c) <= theta(0)`` by Poisson summation.
  A vote histogram moves by at most one vote between two classes (L2 sensitivity ``sqrt(2)``), so one
  GNMax answer with discrete noise is ``(alpha, alpha / sigma^2)``-RDP, exactly PATE 2018 Proposition 8;
  the threshold check of Confident-GNMax (sensitivity 1) is ``(alpha, alpha / (2 sigma1^2))``-RDP.
* **LNMax** with the discrete Laplace of scale ``lambda`` is ``2 / lambda``-DP (``P(x) / P(x + 1) <=
  e^{1/lambda}`` and the histogram's L1 sensitivity is 2), as for the continuous Laplace (PATE 2017 §3).
* **Data-dependent RDP** (PATE 2018 Theorem 6) holds for any mechanism with the two data-independent RDP
  guarantees above, given a valid upper bound on ``Pr[noisy argmax != plurality]``. The papers' bound
  uses continuous Gaussian tails and is not valid for integer noise; the exact discrete tails it needs
  (``logq_gnmax_discrete``, ``logq_lnmax_discrete``, ``log_pr_answered_discrete``) are in
  :mod:`pate.accounting.discrete`.
"""

from __future__ import annotations

import abc
import functools
import math
import os
from fractions import Fraction

import numpy as np

from pate._validate import check_scale
from pate.errors import PateError

__all__ = [
    "NoiseSource",
    "SeededNoise",
    "SystemNoise",
    "make_noise",
]

_INT64_SAFE = 1 << 62  # every int64 intermediate stays below this, so no product or sum overflows
_WORDS_PER_REFILL = 1 << 14  # 128 KiB read from the OS per refill of the CSPRNG buffer
_POOL_BATCH = 8192  # requests smaller than this are served from draws made ahead in batches
_EMPTY = np.zeros(0, dtype=np.int64)


def _shape(size: int | tuple[int, ...]) -> tuple[int, ...]:
    shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    if any(int(n) < 0 for n in shape):
        raise PateError(f"size is {size}, expected non-negative dimensions")
    return tuple(int(n) for n in shape)


def _bit_length_small(values: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values below 2**53 (exact through float64's exponent)."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def _to_int64(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        if values.size and max(abs(int(v)) for v in values) >= (1 << 63):
            raise PateError("noise sample exceeds the int64 range, expected a smaller scale")
        return values.astype(np.int64)
    return values.astype(np.int64, copy=False)


@functools.lru_cache(maxsize=64)
def _gaussian_constants(sigma: float) -> tuple[int, int, int, int]:
    """``(a, b, t, den)``: sigma^2 = a/b exactly, t = floor(sigma) + 1, den = 2 a b t^2."""
    sigma2 = Fraction(sigma) ** 2
    a, b = sigma2.numerator, sigma2.denominator
    t = math.isqrt(a // b) + 1  # floor(sqrt(x)) == isqrt(floor(x)) for x >= 0
    return a, b, t, 2 * a * b * t * t


class NoiseSource(abc.ABC):
    """A source of exact integer noise (CKS 2020 Algorithms 1-3) over a stream of uniform 64-bit words.

    Subclasses only provide the words (:meth:`_words`); the samplers are shared and exact, so a seeded
    source differs from the private one only in where its bits come from.

    Attributes:
        private: whether the noise may back a differential-privacy claim.
        description: a short label for ledgers and reports, e.g. ``"os-csprng"`` or
            ``"seeded(seed=7), NOT PRIVATE"``.
    """

    private: bool
    description: str

    @abc.abstractmethod
    def _words(self, count: int) -> np.ndarray:
        """``count`` independent uniform uint64 words."""

    # -- public samplers ---------------------------------------------------------------------------

    def discrete_gaussian(self, sigma: float, size: int | tuple[int, ...]) -> np.ndarray:
        """Independent draws of ``N_Z(0, sigma^2)``: ``P(x) = exp(-x^2 / (2 sigma^2)) / sum_y exp(...)``.

        ``sigma^2`` is the exact rational ``Fraction(sigma)**2``. Returns an int64 array of shape
        ``size``. Its variance is slightly below ``sigma^2`` and it is ``sigma``-subgaussian (CKS 2020).
        """
        sigma = check_scale("sigma", sigma)
        shape = _shape(size)
        return self._serve(("gaussian", sigma), math.prod(shape)).reshape(shape)

    def discrete_laplace(self, scale: float, size: int | tuple[int, ...]) -> np.ndarray:
        """Independent draws of the discrete Laplace: ``P(x) ∝ exp(-|x| / scale)`` on the integers.

        ``scale`` is taken as the exact rational ``Fraction(scale)``. Returns an int64 array of shape
        ``size``.
        """
        scale = check_scale("scale", scale)
        shape = _shape(size)
        return self._serve(("laplace", scale), math.prod(shape)).reshape(shape)

    # -- batching ------------------------------------------------------------------------------------

    def _draw(self, key: tuple[str, float], count: int) -> np.ndarray:
        kind, scale = key
        if kind == "gaussian":
            return self._discrete_gaussian_flat(scale, count)
        fraction = Fraction(scale)
        return _to_int64(
            self._discrete_laplace_flat(fraction.numerator, fraction.denominator, count)
        )

    def _serve(self, key: tuple[str, float], count: int) -> np.ndarray:
        """Serve small requests from a pool of draws made ahead in batches of ``_POOL_BATCH``.

        The vectorised samplers cost about a millisecond per call whatever the size, so per-query calls
        are served from independent draws made in advance; they are iid and independent of any data,
        so the pool changes nothing about the distribution. Large requests are drawn directly.
        """
        if count >= _POOL_BATCH:
            return self._draw(key, count)
        pools = self._pool_dict()
        pool = pools.get(key, _EMPTY)
        if pool.size < count:
            pool = np.concatenate((pool, self._draw(key, _POOL_BATCH)))
        pools[key] = pool[count:]
        return pool[:count].copy()

    def _pool_dict(self) -> dict[tuple[str, float], np.ndarray]:
        pools = self.__dict__.setdefault("_pools", {})
        owner = self.__dict__.setdefault("_pools_pid", os.getpid())
        if owner != os.getpid():  # never share pre-drawn noise between a parent and a forked child
            pools.clear()
            self._pools_pid = os.getpid()
        return pools

    # -- uniform integers --------------------------------------------------------------------------

    def _uniform_below(self, bound: int, count: int) -> np.ndarray:
        """``count`` exact uniform integers in ``[0, bound)`` (int64, or object above 2**62)."""
        if bound == 1:
            return np.zeros(count, dtype=np.int64)
        bits = (bound - 1).bit_length()
        if bound <= _INT64_SAFE:
            shift = np.uint64(64 - bits)
            limit = np.uint64(bound)
            out = np.empty(count, dtype=np.int64)
            filled = 0
            while filled < count:
                need = count - filled
                candidates = self._words(need + need // 2 + 8) >> shift
                candidates = candidates[candidates < limit]  # rejection: acceptance >= 1/2
                take = min(need, candidates.size)
                out[filled : filled + take] = candidates[:take]
                filled += take
            return out
        words_per_value = -(-bits // 64)
        drop = 64 * words_per_value - bits
        out_list: list[int] = []
        while len(out_list) < count:
            need = count - len(out_list)
            raw = self._words(words_per_value * (need + need // 2 + 8)).tobytes()
            width = 8 * words_per_value
            for start in range(0, len(raw), width):
                value = int.from_bytes(raw[start : start + width], "little") >> drop
                if value < bound:
                    out_list.append(value)
        out = np.empty(count, dtype=object)
        out[:] = out_list[:count]
        return out

    def _uniform_below_each(self, bounds: np.ndarray) -> np.ndarray:
        """One exact uniform integer in ``[0, bounds[i])`` for each (small, >= 1) int64 bound."""
        bits = _bit_length_small(bounds - 1)
        out = np.zeros(bounds.size, dtype=np.int64)
        pending = np.flatnonzero(bits > 0)  # a bound of 1 gives 0 without a draw
        while pending.size:
            shift = (64 - bits[pending]).astype(np.uint64)
            candidates = (self._words(pending.size) >> shift).astype(np.int64)
            ok = candidates < bounds[pending]
            out[pending[ok]] = candidates[ok]
            pending = pending[~ok]
        return out

    def _bits(self, count: int) -> np.ndarray:
        return (self._words(count) >> np.uint64(63)).astype(bool)

    # -- CKS Algorithm 1: Bernoulli(exp(-gamma)) -------------------------------------------------

    def _bernoulli_exp_fraction(self, numerators: np.ndarray, denominator: int) -> np.ndarray:
        """``Bernoulli(exp(-p/q))`` for each ``p`` in ``numerators`` with ``0 <= p <= q``.

        CKS Algorithm 1 for ``gamma in [0, 1]``: draw ``A_k ~ Bernoulli(gamma / k)`` for k = 1, 2, ...
        until the first ``A_k = 0``; answer 1 iff that ``k`` is odd. ``Bernoulli(gamma / k)`` is drawn as
        ``Bernoulli(1/k) AND Bernoulli(p/q)`` (independent), each from an exact uniform integer.
        """
        count = numerators.size
        result = np.empty(count, dtype=bool)
        index = np.arange(count)
        k = np.ones(count, dtype=np.int64)
        p = numerators
        while index.size:
            success = self._uniform_below_each(k) == 0
            hit = np.flatnonzero(success)
            if hit.size:
                draws = self._uniform_below(denominator, hit.size)
                success[hit] = np.asarray(draws < p[hit], dtype=bool)
            stopped = ~success
            result[index[stopped]] = (k[stopped] & 1) == 1
            index, p, k = index[success], p[success], k[success] + 1
        return result

    def _bernoulli_exp_minus_one(self, count: int) -> np.ndarray:
        return self._bernoulli_exp_fraction(np.ones(count, dtype=np.int64), 1)

    def _bernoulli_exp(self, numerators: np.ndarray, denominator: int) -> np.ndarray:
        """``Bernoulli(exp(-p/q))`` for any ``p >= 0``: ``floor(p/q)`` draws of ``Bernoulli(1/e)`` and
        one of ``Bernoulli(exp(-(p mod q)/q))``, all of which must succeed (CKS Algorithm 1, gamma > 1).
        """
        whole = numerators // denominator
        fraction = numerators - whole * denominator
        alive = np.ones(numerators.size, dtype=bool)
        index = np.flatnonzero(whole > 0)
        remaining = whole[index]
        while index.size:
            ok = self._bernoulli_exp_minus_one(index.size)
            alive[index[~ok]] = False
            index, remaining = index[ok], remaining[ok] - 1
            more = remaining > 0
            index, remaining = index[more], remaining[more]
        survivors = np.flatnonzero(alive)
        alive[survivors] = self._bernoulli_exp_fraction(fraction[survivors], denominator)
        return alive

    def _geometric_exp_minus_one(self, count: int) -> np.ndarray:
        """Number of successes of ``Bernoulli(1/e)`` before the first failure, for each of ``count``."""
        out = np.zeros(count, dtype=np.int64)
        index = np.arange(count)
        while index.size:
            index = index[self._bernoulli_exp_minus_one(index.size)]
            out[index] += 1
        return out

    # -- CKS Algorithm 2: discrete Laplace ---------------------------------------------------------

    def _discrete_laplace_flat(self, t: int, s: int, count: int) -> np.ndarray:
        """``count`` draws with ``P(z) ∝ exp(-|z| s / t)`` (scale ``t/s``), CKS Algorithm 2.

        ``U`` uniform on ``{0..t-1}`` kept with probability ``exp(-U/t)``, plus ``t`` times a geometric
        ``V``, makes ``X = U + tV`` geometric with ``P(X = x) ∝ exp(-x/t)``; ``Y = floor(X/s)`` is then
        geometric in steps of ``s/t``, and a fair sign with ``-0`` rejected makes it two-sided.
        """
        chunks: list[np.ndarray] = []
        filled = 0
        while filled < count:
            need = count - filled
            draw = need + need + 16  # acceptance is about 0.6 or more
            u = self._uniform_below(t, draw)
            u = u[self._bernoulli_exp_fraction(u, t)]
            v = self._geometric_exp_minus_one(u.size)
            if u.dtype != object and v.size and int(v.max()) <= (_INT64_SAFE - t) // t:
                x = u + t * v
            else:
                x = u.astype(object) + t * v.astype(object)
            y = x // s if (x.dtype == object or s <= _INT64_SAFE) else x.astype(object) // s
            negative = self._bits(y.size)
            keep = ~(negative & np.asarray(y == 0, dtype=bool))
            z = np.where(negative, -y, y)[keep]
            chunks.append(z[:need])
            filled += min(need, z.size)
        if not chunks:
            return np.zeros(0, dtype=np.int64)
        if any(c.dtype == object for c in chunks):
            return np.concatenate([c.astype(object) for c in chunks])
        return np.concatenate(chunks)

    # -- CKS Algorithm 3: discrete Gaussian --------------------------------------------------------

    def _discrete_gaussian_flat(self, sigma: float, count: int) -> np.ndarray:
        """CKS Algorithm 3: ``Y`` from the discrete Laplace of scale ``t = floor(sigma) + 1``, accepted
        with probability ``exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))``.

        With ``sigma^2 = a/b`` the exponent is the exact rational ``(|Y| b t - a)^2 / (2 a b t^2)``.
        """
        a, b, t, denominator = _gaussian_constants(sigma)
        out = np.empty(count, dtype=np.int64)
        filled = 0
        while filled < count:
            need = count - filled
            y = _to_int64(self._discrete_laplace_flat(t, 1, 2 * need + 16))
            magnitude = np.abs(y)
            largest = int(magnitude.max()) if magnitude.size else 0
            if max(max(largest, 1) * b * t, a) ** 2 < _INT64_SAFE and denominator < _INT64_SAFE:
                numerators = (magnitude * (b * t) - a) ** 2
            else:
                numerators = (magnitude.astype(object) * (b * t) - a) ** 2
            accepted = y[self._bernoulli_exp(numerators, denominator)]
            take = min(need, accepted.size)
            out[filled : filled + take] = accepted[:take]
            filled += take
        return out


class SystemNoise(NoiseSource):
    """Private noise from the operating system's CSPRNG (:func:`os.urandom`), read in bulk.

    No seed exists on this path and no pseudo-random generator is constructed. The buffer of unread
    bytes is discarded after a ``fork`` so that parent and child never reuse the same bits.
    """

    private = True
    description = "os-csprng"

    def __init__(self) -> None:
        self._buffer = np.zeros(0, dtype=np.uint64)
        self._position = 0
        self._pid = os.getpid()

    def _words(self, count: int) -> np.ndarray:
        if self._pid != os.getpid():
            self._buffer, self._position, self._pid = np.zeros(0, dtype=np.uint64), 0, os.getpid()
        available = self._buffer.size - self._position
        if count > available:
            fresh = max(count - available, _WORDS_PER_REFILL)
            rest = self._buffer[self._position :]
            incoming = np.frombuffer(os.urandom(8 * fresh), dtype=np.uint64)
            self._buffer = np.concatenate((rest, incoming))
            self._position = 0
        words = self._buffer[self._position : self._position + count]
        self._position += count
        return words

    def __repr__(self) -> str:
        return "SystemNoise()"


class SeededNoise(NoiseSource):
    """The same exact samplers on a seeded PCG64 stream: reproducible, and **not private**.

    For experiments and tests only; every ledger and report of a run using it must say NOT PRIVATE.
    """

    private = False

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise PateError(f"--noise-seed is {seed!r}, expected a non-negative integer")
        self.seed = int(seed)
        self.description = f"seeded(seed={self.seed}), NOT PRIVATE"
        self._bit_generator = np.random.PCG64(self.seed)

    def _words(self, count: int) -> np.ndarray:
        return self._bit_generator.random_raw(count).astype(np.uint64, copy=False)

    def __repr__(self) -> str:
        return f"SeededNoise(seed={self.seed})"


def make_noise(seed: int | None) -> NoiseSource:
    """The noise source of a run: :class:`SystemNoise` for ``None`` (private), else :class:`SeededNoise`."""
    if seed is None:
        return SystemNoise()
    return SeededNoise(seed)
