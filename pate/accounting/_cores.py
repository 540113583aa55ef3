"""Unchecked cores of the per-answer bounds, shared by :mod:`~pate.accounting.rdp`,
:mod:`~pate.accounting.analysis` and :mod:`~pate.accounting.smooth_sensitivity`.

Internal: callers validate their inputs (``pate.accounting._numerics``) before they call these. The
public, checked functions and the guarantees they rest on are in :mod:`~pate.accounting.rdp`; shapes
and conventions are the same (``votes`` (..., C), log-probabilities (U,), orders (O,), natural logs).
"""

from __future__ import annotations

import math

import numpy as np

from pate.accounting._numerics import (
    gaussian_logsf,
    log1mexp,
    logaddexp,
    logsumexp_rows,
    runner_up_gaps,
)
from pate.errors import PateError

__all__ = [
    "logpr_answered_core",
    "logq_gaussian",
    "logq_laplace",
    "rdp_gaussian_core",
    "rdp_gaussian_sum",
    "rdp_pure_eps_core",
    "rdp_threshold_core",
    "selection_votes",
    "threshold_variance",
]

# ----------------------------------------------------------------------------------------------------
# GNMax: ln q and Theorem 6 + Proposition 10


def logq_gaussian(votes: np.ndarray, sigma: float) -> np.ndarray:
    """``logq_gnmax`` without input checks; ``votes`` may have any leading shape (..., C)."""
    num_classes = votes.shape[-1]
    cap = math.log(1 - (1 / num_classes))
    scale = math.sqrt(2 * sigma**2)
    # Work class-major (classes on the first axis): reductions over classes are then fast.
    by_class = np.ascontiguousarray(np.moveaxis(votes, -1, 0))
    top = np.max(by_class, axis=0)
    gaps = top - by_class
    largest = int(gaps.max()) if gaps.size else 0
    if votes.dtype.kind in "iu" and largest <= _TABLE_LIMIT:
        log_table = gaussian_logsf(np.arange(largest + 1, dtype=np.float64), scale)
        if log_table[-1] > -700.0:
            # Integer gaps, and no tail probability underflows: sum them in linear space from a
            # table. The plurality class i* (first maximum) is left out of the union bound; any
            # other class tied with it contributes Pr[N >= 0] = 1/2.
            table = np.exp(log_table)
            table[0] = 0.0
            ties = np.count_nonzero(gaps == 0, axis=0) - 1
            q = np.sum(table[gaps], axis=0) + 0.5 * ties
            return np.minimum(np.log(q), cap)
        terms = log_table[np.moveaxis(gaps, 0, -1)]
    else:
        terms = gaussian_logsf(np.moveaxis(gaps, 0, -1), scale)
    is_top = np.zeros(votes.shape, dtype=bool)
    np.put_along_axis(is_top, np.argmax(votes, axis=-1)[..., None], True, axis=-1)
    return np.minimum(logsumexp_rows(terms, is_top), cap)


_TABLE_LIMIT = 10_000_000


_ROW_BLOCK = 128


def _for_each_dependent_block(
    logq: np.ndarray, variance: float, sorted_orders: np.ndarray, handle
) -> np.ndarray:
    """Theorem 6 + Proposition 10 on the rows where it can beat the data-independent bound.

    Calls ``handle(rows, start, stop, block)`` for cache-sized blocks of rows, with ``block``
    (len(rows), stop - start) the bound ``min(data-dependent, order / variance)`` at
    ``sorted_orders[start:stop]``; everywhere else the bound is ``order / variance``. Returns the rows
    that were handled.

    Orders are skipped where the data-dependent bound provably cannot be lower: at orders >= mu1
    (Theorem 6 does not apply) and at orders <= m0 variance, where m0 = (1-q) ln A + q ln B. Writing
    the bound as h(t)/t with t = order - 1 and h(t) = ln[(1-q) A^t + q B^t], h is convex with
    h(0) = 0 and h'(0) = m0, so h(t)/t >= m0 >= order / variance there.
    """
    finite = np.isfinite(logq)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu2 = np.sqrt(variance * -logq)
        mu1 = mu2 + 1
        eps1 = mu1 / variance
        eps2 = mu2 / variance
        log_a2 = (mu2 - 1) * eps2
        applies = (
            finite
            & (mu2 > 1)
            & (mu1 > sorted_orders[0])
            & (-logq > eps2)
            & (logq <= log_a2 - mu2 * (np.log(1 + 1 / (mu1 - 1)) + np.log(1 + 1 / (mu2 - 1))))
        )
    rows = np.flatnonzero(applies)
    if rows.size == 0:
        return rows
    lq = logq[rows]
    log1q = log1mexp(lq)
    slope_a = log1q - log1mexp((lq + eps2[rows]) * (1 - 1 / mu2[rows]))
    slope_b = eps1[rows] - lq / (mu1[rows] - 1)
    if sorted_orders.size >= 16:
        lowest = _first_useful_order(lq, log1q, slope_a, slope_b, variance, mu1[rows])
    else:  # too few orders for the search to pay off
        lowest = np.ones(rows.size)
    low = np.searchsorted(sorted_orders, lowest * (1 - 1e-9), side="right")
    high = np.searchsorted(sorted_orders, mu1[rows], side="left")
    keep = np.flatnonzero(high > low)
    keep = keep[np.argsort(-high[keep], kind="stable")]  # similar ranges in a block
    rows, lq, log1q, slope_a, slope_b = (v[keep] for v in (rows, lq, log1q, slope_a, slope_b))
    low, high, m1_all = low[keep], high[keep], mu1[rows]
    order_m1 = sorted_orders - 1
    affine = np.vstack([order_m1, np.ones_like(order_m1)])
    inverse_m1 = 1.0 / order_m1
    independent = sorted_orders / variance
    for begin in range(0, rows.size, _ROW_BLOCK):
        part = slice(begin, begin + _ROW_BLOCK)
        start, stop = int(low[part].min()), int(high[part].max())
        # ln[(1-q) A^t + q B^t] / t as max(x, y) + ln(1 + e^-|x-y|), x = ln(1-q) + t ln A and
        # y = ln q + t ln B the two log-terms, both from one small matrix product.
        size = slope_a[part].size
        coefficients = np.empty((2 * size, 2))
        coefficients[:size, 0] = slope_a[part]
        coefficients[:size, 1] = log1q[part]
        coefficients[size:, 0] = slope_b[part]
        coefficients[size:, 1] = lq[part]
        both = coefficients @ affine[:, start:stop]
        x, y = both[:size], both[size:]
        spread = np.subtract(x, y)
        np.abs(spread, out=spread)
        np.negative(spread, out=spread)
        negligible = None
        if spread[:, 0].min() < -708.0 or spread[:, -1].min() < -708.0:
            # |x - y| is linear in t, so its extremes are at the ends. Where e^-|x-y| underflows,
            # ln(1 + e^-|x-y|) is 0; clipping first keeps exp out of its slow subnormal range.
            negligible = spread < -708.0
            np.maximum(spread, -708.0, out=spread)
        np.exp(spread, out=spread)
        np.log1p(spread, out=spread)
        if negligible is not None:
            spread[negligible] = 0.0
        np.maximum(x, y, out=x)
        x += spread
        x *= inverse_m1[start:stop]
        np.minimum(x, independent[start:stop], out=x)
        m1 = m1_all[part]
        cut = max(start, int(np.searchsorted(sorted_orders, m1.min(), side="left")))
        if cut < stop:  # orders >= mu1 of a row keep the data-independent bound
            tail = x[:, cut - start :]
            beyond = sorted_orders[cut:stop] >= m1[:, None]
            tail[...] = np.where(beyond, independent[cut:stop], tail)
        handle(rows[part], start, stop, x)
    return rows


def _first_useful_order(
    logq: np.ndarray,
    log1q: np.ndarray,
    slope_a: np.ndarray,
    slope_b: np.ndarray,
    variance: float,
    mu1: np.ndarray,
) -> np.ndarray:
    """Per row, an order below which the data-dependent bound cannot beat ``order / variance``.

    With t = order - 1 the bound is h(t)/t, h(t) = ln[(1-q) A^t + q B^t] convex with h(0) = 0, so
    h(t)/t is non-decreasing and at least h'(0) = m0 = (1-q) ln A + q ln B. Hence it is >= order /
    variance for all orders <= m0 variance; and if it is >= c at order s, it is >= order / variance for
    every order in [s, c variance]. Iterating s <- variance * bound(s) from s = m0 variance climbs to
    the first order where the bound can win.
    """
    q = np.exp(logq)
    order = np.maximum(((1 - q) * slope_a + q * slope_b) * variance, 1.0)
    for _ in range(16):
        active = (order > 1.0) & (order < mu1)
        if not active.any():
            break
        t = order[active] - 1
        x = log1q[active] + slope_a[active] * t
        y = logq[active] + slope_b[active] * t
        bound = (np.maximum(x, y) + np.log1p(np.exp(-np.abs(x - y)))) / t
        step = bound * variance
        # Stop once the gain is below the spacing of the orders.
        moved = step > order[active] * (1 + 1e-3) + 0.05
        if not moved.any():
            break
        order[np.flatnonzero(active)[moved]] = step[moved]
    return order


def _sorted(orders: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Orders in increasing order, and the permutation back (None when already sorted)."""
    if np.all(orders[1:] >= orders[:-1]):
        return orders, None
    index = np.argsort(orders, kind="stable")
    back = np.empty_like(index)
    back[index] = np.arange(index.size)
    return orders[index], back


def rdp_gaussian_core(logq: np.ndarray, variance: float, orders: np.ndarray) -> np.ndarray:
    """Theorem 6 + Proposition 10 for log-probabilities (U,) and orders (O,) -> (U, O); no checks."""
    sorted_orders, back = _sorted(orders)
    bound = np.empty((logq.size, orders.size))
    bound[:] = sorted_orders / variance
    bound[np.isneginf(logq)] = 0.0

    def store(rows: np.ndarray, start: int, stop: int, block: np.ndarray) -> None:
        bound[rows, start:stop] = block

    _for_each_dependent_block(logq, variance, sorted_orders, store)
    return bound if back is None else bound[:, back]


def rdp_gaussian_sum(
    logq: np.ndarray, variance: float, orders: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """``sum_u weights[u] * RDP(logq[u])`` over orders (O,), without the (U, O) table."""
    sorted_orders, back = _sorted(orders)
    independent = sorted_orders / variance
    total = np.zeros(orders.size)

    def add(rows: np.ndarray, start: int, stop: int, block: np.ndarray) -> None:
        w = weights[rows]
        total[start:stop] += w @ block
        outside = np.sum(w)
        total[:start] += outside * independent[:start]
        total[stop:] += outside * independent[stop:]

    handled = _for_each_dependent_block(logq, variance, sorted_orders, add)
    rest = ~np.isneginf(logq)
    rest[handled] = False
    total += float(np.sum(weights[rest])) * independent
    return total if back is None else total[back]


# ----------------------------------------------------------------------------------------------------
# The threshold step


def threshold_variance(sigma1: float) -> float:
    """The variance that turns GNMax's bounds into the threshold step's: ``2 sigma1^2``."""
    # The threshold step adds N(0, sigma1^2) to max(votes), which has sensitivity 1: it is GNMax's bound
    # (sensitivity sqrt(2)) with sigma replaced by sqrt(2) * sigma1.
    return (2**0.5 * sigma1) ** 2


def logpr_answered_core(votes: np.ndarray, threshold: float, sigma1: float) -> np.ndarray:
    """``logpr_answered`` without input checks; ``votes`` may have any leading shape (..., C)."""
    top = np.round(np.max(votes, axis=-1))
    return gaussian_logsf(threshold - top, sigma1)


def rdp_threshold_core(logpr: np.ndarray, sigma1: float, orders: np.ndarray) -> np.ndarray:
    """``rdp_threshold`` for log-probabilities (U,) and orders (O,) -> (U, O); no checks."""
    logq = np.minimum(logpr, log1mexp(logpr))
    return rdp_gaussian_core(logq, threshold_variance(sigma1), orders)


def selection_votes(votes: np.ndarray, baseline: np.ndarray | None) -> np.ndarray:
    """Votes seen by the threshold step: ``votes - baseline`` for Interactive-GNMax."""
    if baseline is None:
        return votes
    baseline = np.asarray(baseline, dtype=np.float64)
    if baseline.shape != votes.shape:
        raise PateError(
            f"baseline: has shape {baseline.shape}, expected {votes.shape} like the votes"
        )
    if not np.all(np.isfinite(baseline)):
        raise PateError("baseline: holds NaN or inf, expected finite values")
    return votes - baseline


# ----------------------------------------------------------------------------------------------------
# LNMax and pure-DP mechanisms


def logq_laplace(votes: np.ndarray, scale: float) -> np.ndarray:
    """``logq_lnmax`` without input checks."""
    num_classes = votes.shape[-1]
    gaps, is_top = runner_up_gaps(votes)
    normalized = -gaps / scale
    terms = np.log(2 - normalized) + math.log(0.25) + normalized
    return np.minimum(logsumexp_rows(terms, is_top), math.log(1 - (1 / num_classes)))


def rdp_pure_eps_core(logq: np.ndarray, eps: float, orders: np.ndarray) -> np.ndarray:
    """``rdp_lnmax`` for an eps-DP mechanism, log-probabilities (U,) and orders (O,) -> (U, O); no checks."""
    bound = np.empty((logq.size, orders.size))
    bound[:] = np.minimum(0.5 * eps * eps * orders, eps)
    q = np.exp(logq)
    rows = np.flatnonzero(q <= 1 / (math.exp(eps) + 1))
    if rows.size == 0:
        return bound
    lq, qq = logq[rows, None], q[rows, None]
    log1q = np.log1p(-qq)
    order_m1 = orders - 1
    log_t_one = log1q + (log1q - log1mexp(eps + lq)) * order_m1
    log_t_two = lq + eps * order_m1
    log_t = logaddexp(log_t_one, log_t_two)
    bound[rows] = np.minimum(bound[rows], log_t / order_m1)
    return bound
