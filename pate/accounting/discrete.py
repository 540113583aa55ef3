"""Data-dependent accounting of the exact integer noise of :mod:`pate.noise`: upper bounds on its tails.

**Data-dependent RDP** (PATE 2018 Theorem 6) holds for any mechanism with the data-independent RDP
guarantees that :mod:`pate.noise` states for its samplers (discrete Gaussian GNMax and threshold check,
discrete Laplace LNMax), given a valid upper bound ``q~ >= Pr[noisy argmax != plurality]``. The papers'
``q~`` (Proposition 7) uses *continuous* Gaussian tails, ``sum_j Phi_bar((n_i* - n_j)/(sqrt(2) sigma))``,
and that is **not** a valid bound for discrete noise: ``Z_j - Z_i`` is integer-valued, so
``Pr[Z_j - Z_i >= g] ~ Phi_bar((g - 1/2)/(sqrt(2) sigma)) > Phi_bar(g/(sqrt(2) sigma))`` (at ``g = 0``
the discrete tail exceeds 1/2). Subgaussian (Chernoff) tails are valid (the discrete Gaussian is
``sigma``-subgaussian, CKS 2020) but loose by a factor ``~ g / sigma``. We therefore compute the exact
tail of the difference of two discrete Gaussians (:func:`logq_gnmax_discrete`), with the tie rule of
the aggregators (smallest index wins), and the same for the discrete Laplace
(:func:`logq_lnmax_discrete`, closed form). Use these, not the continuous formulas, for the
data-dependent ledger entries of answers noised by :mod:`pate.noise`. For the threshold check, use
:func:`log_sf_discrete_gaussian` on the integer offsets of ``pate.aggregate.threshold_offsets``
(both outcomes at once: :func:`log_pr_answered_discrete`).

All bounds are computed in float64 and then raised by a relative margin ``1e-10`` (in log space) that
dominates the rounding error of the sums, so they are upper bounds, not estimates.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import logsumexp

from pate._validate import check_scale
from pate.errors import PateError

__all__ = [
    "log_pr_answered_discrete",
    "log_sf_discrete_gaussian_bounds",
    "log_sf_discrete_gaussian",
    "log_tail_difference_discrete_gaussian",
    "log_tail_difference_discrete_laplace",
    "logq_gnmax_discrete",
    "logq_lnmax_discrete",
]

_LOG_SLACK = 1e-10  # relative margin added to every log upper bound (see the module docstring)
_MAX_TAIL_SIGMA = 1e5  # the tail bounds sum ~40 sigma terms; larger sigma is refused there

# ----------------------------------------------------------------------------------------------------
# Upper bounds on the tails that the data-dependent analysis needs


def _slack_up(log_value: np.ndarray) -> np.ndarray:
    """Raise log upper bounds by the relative margin that covers float64 rounding."""
    log_value = np.asarray(log_value, dtype=np.float64)
    finite = np.isfinite(log_value)
    out = log_value.copy()
    out[finite] += _LOG_SLACK * (1.0 + np.abs(log_value[finite]))
    return out


@functools.lru_cache(maxsize=32)
def _gaussian_theta_sums(sigma: float) -> tuple[float, float, float, float]:
    """``(ln N_lower, ln N_upper, ln E_upper, ln O_upper)`` for the normaliser
    ``N = sum_k exp(-k^2 / (2 sigma^2))`` and the even/odd sums ``E = sum_{s even} exp(-s^2 / (4 sigma^2))``
    and ``O = sum_{s odd} exp(-s^2 / (4 sigma^2))``.

    Terms are summed out to ``40 sigma + 2``; the partial sum is a lower bound and adding a geometric
    bound on the omitted terms (below ``exp(-800)`` relative) gives the upper bound.
    """
    s2 = sigma * sigma
    last = int(math.ceil(40.0 * sigma)) + 2
    k = np.arange(1, last + 1, dtype=np.float64)
    norm = 1.0 + 2.0 * math.fsum(np.exp(-(k * k) / (2.0 * s2)))
    even = 1.0 + 2.0 * math.fsum(np.exp(-(k * k) / s2))  # s = 2j
    odd = 2.0 * math.fsum(np.exp(-((k - 0.5) ** 2) / s2))  # s = 2j - 1, j >= 1, both signs
    j = last + 1.0  # first omitted index; each bound is first term / (1 - largest term ratio)
    norm_tail = math.exp(-(j * j) / (2.0 * s2)) / -math.expm1(-(2.0 * j + 1.0) / (2.0 * s2))
    even_tail = math.exp(-(j * j) / s2) / -math.expm1(-(2.0 * j + 1.0) / s2)
    odd_tail = math.exp(-((j - 0.5) ** 2) / s2) / -math.expm1(-2.0 * j / s2)
    return (
        math.log(norm),
        math.log(norm + 2.0 * norm_tail),
        math.log(even + 2.0 * even_tail),
        math.log(odd + 2.0 * odd_tail),
    )


@functools.lru_cache(maxsize=32)
def _difference_tail_table(sigma: float, size: int) -> np.ndarray:
    """``ln Pr[Z' - Z >= h]`` upper bounds for ``h = 0..size-1``, Z, Z' iid ``N_Z(0, sigma^2)``.

    Substituting ``d = z' - z``, ``s = z' + z`` (same parity) gives ``z^2 + z'^2 = (s^2 + d^2)/2``, so
    ``Pr[Z' - Z >= h] = sum_{d >= h} exp(-d^2/(4 sigma^2)) * P(d) / N^2`` with ``P(d) = E`` for even
    ``d`` and ``O`` for odd ``d``: a one-dimensional sum, accumulated from the top in log space.
    """
    log_norm, _, log_even, log_odd = _gaussian_theta_sums(sigma)
    s2 = sigma * sigma
    end = size + int(math.ceil(40.0 * sigma)) + 2
    d = np.arange(end + 1, dtype=np.float64)
    terms = -(d * d) / (4.0 * s2) + np.where(d % 2 == 0, log_even, log_odd)
    beyond = end + 1.0  # geometric bound on the sum over d > end
    log_tail = -(beyond * beyond) / (4.0 * s2) + max(log_even, log_odd)
    log_tail -= math.log(-math.expm1(-(2.0 * beyond + 1.0) / (4.0 * s2)))
    suffix = np.logaddexp.accumulate(np.concatenate(([log_tail], terms[::-1])))[::-1][:-1]
    return _slack_up(suffix[:size] - 2.0 * log_norm)


@functools.lru_cache(maxsize=32)
def _upper_tail_table(sigma: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``x = 0..size-1``: ``ln sum_{y >= x} exp(-y^2/(2 sigma^2))`` as (upper, lower) bounds."""
    s2 = sigma * sigma
    end = size + int(math.ceil(40.0 * sigma)) + 2
    y = np.arange(end + 1, dtype=np.float64)
    terms = -(y * y) / (2.0 * s2)
    beyond = end + 1.0
    log_tail = -(beyond * beyond) / (2.0 * s2) - math.log(
        -math.expm1(-(2.0 * beyond + 1.0) / (2.0 * s2))
    )
    upper = np.logaddexp.accumulate(np.concatenate(([log_tail], terms[::-1])))[::-1][:-1]
    lower = np.logaddexp.accumulate(terms[::-1])[::-1]
    return upper[:size], lower[:size]


def _table_size(largest: int) -> int:
    """Round table sizes up to a power of two (at least 256) so cached tables get reused."""
    return max(256, 1 << int(largest).bit_length())


def log_tail_difference_discrete_gaussian(gaps: np.ndarray, sigma: float) -> np.ndarray:
    """Upper bound on ``ln Pr[Z' - Z >= g]`` for integer ``g >= 0``, ``Z, Z'`` iid ``N_Z(0, sigma^2)``.

    Exact up to the ``1e-10`` relative margin. For comparison, the continuous analogue is
    ``ln Phi_bar(g / (sqrt(2) sigma))``, which is smaller and not a valid bound here.
    """
    sigma = check_scale("sigma", sigma)
    if sigma > _MAX_TAIL_SIGMA:
        raise PateError(
            f"Expected sigma={sigma} <= {_MAX_TAIL_SIGMA:g} for the discrete tail bound."
        )
    gaps = np.asarray(gaps)
    if gaps.dtype.kind not in "iu" or (gaps.size and gaps.min() < 0):
        raise PateError("gaps must be non-negative integers")
    largest = int(gaps.max()) if gaps.size else 0
    return _difference_tail_table(sigma, _table_size(largest))[gaps]


def log_tail_difference_discrete_laplace(gaps: np.ndarray, scale: float) -> np.ndarray:
    """``ln Pr[Z' - Z >= h]`` (upper bound) for integer ``h >= 0``, ``Z, Z'`` iid discrete Laplace.

    Closed form with ``r = exp(-1/scale)``: ``Pr[Z' - Z = d] = ((1-r)/(1+r))^2 r^|d| (|d| + (1+r^2)/(1-r^2))``
    and ``Pr[Z' - Z >= h] = r^h (h (1 - r^2) + 1 + r + 2 r^2) / (1 + r)^3``. As ``scale -> inf`` with
    ``h = g * scale`` it tends to the continuous ``(2 + g) e^{-g} / 4`` of PATE 2018's LNMax analysis.
    """
    scale = check_scale("scale", scale)
    gaps = np.asarray(gaps)
    if gaps.dtype.kind not in "iu" or (gaps.size and gaps.min() < 0):
        raise PateError("gaps must be non-negative integers")
    h = gaps.astype(np.float64)
    r = math.exp(-1.0 / scale)
    one_minus_r2 = -math.expm1(-2.0 / scale)
    value = -h / scale + np.log(h * one_minus_r2 + 1.0 + r + 2.0 * r * r) - 3.0 * math.log1p(r)
    return _slack_up(value)


def log_sf_discrete_gaussian(offsets: np.ndarray, sigma: float) -> np.ndarray:
    """Upper bound on ``ln Pr[Z >= x]`` for integers ``x`` (any sign), ``Z ~ N_Z(0, sigma^2)``.

    This is the exact data-dependent probability of the threshold check: with integer offsets ``c`` from
    ``pate.aggregate.threshold_offsets`` a query is answered iff ``Z >= c``, so
    ``Pr[answered] = Pr[Z >= c]`` and ``Pr[not answered] = Pr[Z >= 1 - c]`` (symmetry).
    """
    return log_sf_discrete_gaussian_bounds(offsets, sigma)[1]


def log_sf_discrete_gaussian_bounds(
    offsets: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` bounds on ``ln Pr[Z >= x]`` for integers ``x``, ``Z ~ N_Z(0, sigma^2)``.

    The upper bound is :func:`log_sf_discrete_gaussian`; the lower bound pairs the partial sums' lower
    bound with the normaliser's upper bound (and the reverse for ``x <= 0``), lowered by the same
    relative margin. A Renyi divergence of order ``alpha > 1`` raises one probability to the power
    ``1 - alpha < 0``, and an upper bound on it needs this lower bound.
    """
    sigma = check_scale("sigma", sigma)
    if sigma > _MAX_TAIL_SIGMA:
        raise PateError(
            f"Expected sigma={sigma} <= {_MAX_TAIL_SIGMA:g} for the discrete tail bound."
        )
    offsets = np.asarray(offsets)
    if offsets.dtype.kind not in "iu":
        raise PateError(f"offsets have dtype {offsets.dtype}, expected integers")
    log_norm_lower, log_norm_upper = _gaussian_theta_sums(sigma)[:2]
    x = offsets.astype(np.int64)
    start = np.where(x >= 1, x, 1 - x)
    upper, lower = _upper_tail_table(sigma, _table_size(int(start.max()) if start.size else 0))
    tail_upper = upper[start] - log_norm_lower  # bounds on ln Pr[Z >= start], start >= 1
    tail_lower = lower[start] - log_norm_upper
    with np.errstate(divide="ignore"):
        low = np.where(x >= 1, tail_lower, np.log1p(-np.exp(np.minimum(tail_upper, 0.0))))
        high = np.where(x >= 1, tail_upper, np.log1p(-np.exp(np.minimum(tail_lower, 0.0))))
    high = np.minimum(_slack_up(high), 0.0)
    low = low.astype(np.float64)
    finite = np.isfinite(low)
    low[finite] -= _LOG_SLACK * (1.0 + np.abs(low[finite]))
    return np.minimum(low, high), high


def _plurality_gaps(votes: np.ndarray, num_classes_floor: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Gaps ``h_j`` that class ``j`` must reach to beat the plurality ``i*`` (ties: smallest index).

    ``j`` wins over ``i*`` iff ``n_j + Z_j >= n_i* + Z_i*`` when ``j < i*`` (ties go to ``j``) and iff
    ``n_j + Z_j > n_i* + Z_i*``, i.e. ``Z_j - Z_i* >= n_i* - n_j + 1``, when ``j > i*``. Returns ``(h, mask)``
    where ``mask`` is False at ``i*``.
    """
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] < num_classes_floor:
        raise PateError(f"votes has shape {votes.shape}, expected (queries, classes >= 2)")
    if votes.dtype.kind not in "iu":
        raise PateError(f"votes have dtype {votes.dtype}, expected integers")
    votes = votes.astype(np.int64)
    top = np.argmax(votes, axis=1)
    gaps = votes[np.arange(votes.shape[0]), top][:, None] - votes
    after = np.arange(votes.shape[1])[None, :] > top[:, None]
    gaps = gaps + after
    mask = np.ones(votes.shape, dtype=bool)
    mask[np.arange(votes.shape[0]), top] = False
    return gaps, mask


def _union_bound(log_terms: np.ndarray, mask: np.ndarray, num_classes: int) -> np.ndarray:
    log_terms = np.where(mask, log_terms, -np.inf)
    logq = _slack_up(logsumexp(log_terms, axis=1))
    # q <= 1 - 1/m: the plurality wins at least as often as any other class (swap its noise with the
    # winner's; with ties broken toward the smallest index the swap never hurts the plurality).
    return np.minimum(logq, math.log1p(-1.0 / num_classes))


def logq_gnmax_discrete(votes: np.ndarray, sigma: float) -> np.ndarray:
    """Upper bound on ``ln Pr[argmax_j(n_j + Z_j) != i*]`` per query, discrete Gaussian noise.

    ``i*`` is the plurality (smallest index among ties) and the noisy argmax breaks ties toward the
    smallest index, as :func:`pate.aggregate.gnmax` does. Union bound over ``j != i*`` of the exact
    tail ``Pr[Z_j - Z_i* >= h_j]`` (``h_j = n_i* - n_j``, plus 1 when ``j > i*``), capped at
    ``ln(1 - 1/m)``. This is the discrete analogue of PATE 2018 Proposition 7; feed it to Theorem 6
    (``rdp_gaussian(logq, sigma, orders)``), whose RDP premises hold for discrete noise (see
    :mod:`pate.noise`).

    Args:
        votes: (Q, C) integer vote counts.
        sigma: the GNMax noise scale.

    Returns:
        (Q,) float64 upper bounds on ln q (``-inf`` never occurs: every query has some error probability).
    """
    gaps, mask = _plurality_gaps(votes)
    log_terms = log_tail_difference_discrete_gaussian(np.where(mask, gaps, 0), sigma)
    return _union_bound(log_terms, mask, gaps.shape[1])


def logq_lnmax_discrete(votes: np.ndarray, scale: float) -> np.ndarray:
    """Upper bound on ``ln Pr[argmax_j(n_j + Z_j) != i*]`` per query, discrete Laplace noise.

    Same tie rule and cap as :func:`logq_gnmax_discrete`, with the closed-form tail of the difference of
    two discrete Laplace variables; use it with the pure-DP data-dependent bound (PATE 2017 Theorem 3,
    ``epsilon = 2 / scale``).
    """
    gaps, mask = _plurality_gaps(votes)
    log_terms = log_tail_difference_discrete_laplace(np.where(mask, gaps, 0), scale)
    return _union_bound(log_terms, mask, gaps.shape[1])


# ----------------------------------------------------------------------------------------------------
# The threshold check


def log_pr_answered_discrete(offsets: np.ndarray, sigma1: float) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds on ``ln Pr[answered]`` and ``ln Pr[not answered]`` for threshold offsets ``c``.

    ``Pr[answered] = Pr[Z >= c]`` and ``Pr[not answered] = Pr[Z >= 1 - c]`` with ``Z ~ N_Z(0, sigma1^2)``.
    For the data-dependent threshold bound (PATE 2018 Theorem 6 on the binary outcome, with the RDP of a
    sensitivity-1 discrete Gaussian, i.e. ``rdp_gaussian(., sqrt(2) sigma1)``) use
    ``min(log_answered, log_rejected)`` as ``ln q``: each is a valid bound on the probability of the
    outcome that is not the designated likely one.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    return log_sf_discrete_gaussian(offsets, sigma1), log_sf_discrete_gaussian(1 - offsets, sigma1)
