"""Renyi-DP bounds of one answer of each PATE aggregator, vectorised over queries and orders.

Every bound here rests on the neighbouring relation of the pipeline: adding or removing one individual
changes one shard, hence one teacher, hence moves at most one vote from one class to another. The vote
histogram therefore changes by at most 1 in two classes (L2 sensitivity sqrt(2), L1 sensitivity 2) and
its maximum changes by at most 1.

Shapes: ``votes`` is (Q, C) (queries x classes), ``orders`` is (O,), log-probabilities are (Q,), RDP
curves are (Q, O) per query or (O,) for a data-independent bound. Natural logs throughout.

References: Papernot et al., "Semi-supervised knowledge transfer for deep learning from private training
data", ICLR 2017 (PATE 2017); Papernot et al., "Scalable private learning with PATE", ICLR 2018
(PATE 2018; theorem numbers follow its arXiv version 1802.08908).
"""

from __future__ import annotations

import math

import numpy as np

from pate.accounting._numerics import (
    check_logs,
    check_orders,
    check_positive,
    check_votes,
    gaussian_logsf,
    log1mexp,
    logaddexp,
    logsumexp_rows,
    runner_up_gaps,
)
from pate.errors import PateError

# ----------------------------------------------------------------------------------------------------
# GNMax


def rdp_gnmax_data_independent(sigma: float, orders: np.ndarray) -> np.ndarray:
    """Data-independent RDP of one GNMax answer: ``order / sigma**2``.

    Guarantee: adding or removing one individual moves at most one vote from one class to another, so the
    vote histogram has L2 sensitivity sqrt(2) and the Gaussian mechanism with noise sigma is
    (order, order / sigma^2)-RDP at every order (PATE 2018, Proposition 8). GNMax releases only the
    argmax of the noisy histogram, a post-processing.

    >>> rdp_gnmax_data_independent(20.0, np.array([2.0, 10.0])).tolist()
    [0.005, 0.025]
    """
    sigma = check_positive("sigma", sigma)
    return check_orders(orders) / sigma**2


def logq_gnmax(votes: np.ndarray, sigma: float) -> np.ndarray:
    """Upper bound on ``ln q``, q = Pr[GNMax answer != plurality class], per query (PATE 2018, Prop. 7).

    Union bound over the other classes j: ``q <= sum_j Pr[N(0, 2 sigma^2) >= n_i* - n_j]`` with ``i*``
    the first index of the maximum (a tie contributes 1/2), capped at ``ln(1 - 1/C)``.

    >>> round(float(logq_gnmax(np.array([[250, 0, 0]]), 100.0)[0]), 4)  # ln(2 Pr[N(0,1) >= 1.77])
    -2.5627
    """
    sigma = check_positive("sigma", sigma)
    votes = check_votes(votes, allow_fractional=True)
    return _logq_gaussian(votes, sigma)


def _logq_gaussian(votes: np.ndarray, sigma: float) -> np.ndarray:
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


def rdp_gnmax(logq: np.ndarray, sigma: float, orders: np.ndarray) -> np.ndarray:
    """Data-dependent RDP of one GNMax answer per query, given upper bounds ``logq`` on ln q.

    Theorem 6 of PATE 2018 with the choices of Proposition 10: mu2 = sigma sqrt(-ln q), mu1 = mu2 + 1,
    eps_i = mu_i / sigma^2. When mu2 > 1, -ln q > eps2 and ln q <= (mu2 - 1) eps2 - mu2 ln(mu1/(mu1-1)
    * mu2/(mu2-1)), the bound at each order lambda < mu1 is
    ``ln[(1-q) A^(lambda-1) + q B^(lambda-1)] / (lambda-1)`` with ``A = (1-q)/(1-(q e^eps2)^(1-1/mu2))``
    and ``B = e^eps1 / q^(1/(mu1-1))``. It is never above the data-independent ``lambda / sigma^2``
    (used elsewhere), and it is 0 when ``ln q = -inf`` (the answer is then fixed).

    The bound holds for any ``q`` that upper-bounds the true probability, because it is non-decreasing in
    q on the range where it applies (PATE 2018, Theorem 6).

    Returns an array (Q, O).
    """
    sigma = check_positive("sigma", sigma)
    orders = check_orders(orders)
    logq = check_logs("logq", logq)
    unique, inverse = np.unique(logq, return_inverse=True)
    return _rdp_gaussian_core(unique, sigma**2, orders)[inverse]


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


def _rdp_gaussian_core(logq: np.ndarray, variance: float, orders: np.ndarray) -> np.ndarray:
    """Theorem 6 + Proposition 10 for log-probabilities (U,) and orders (O,) -> (U, O); no checks."""
    sorted_orders, back = _sorted(orders)
    bound = np.empty((logq.size, orders.size))
    bound[:] = sorted_orders / variance
    bound[np.isneginf(logq)] = 0.0

    def store(rows: np.ndarray, start: int, stop: int, block: np.ndarray) -> None:
        bound[rows, start:stop] = block

    _for_each_dependent_block(logq, variance, sorted_orders, store)
    return bound if back is None else bound[:, back]


def _rdp_gaussian_sum(
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


def is_data_independent_always_optimal_gnmax(
    num_teachers: int, num_classes: int, sigma: float, orders: np.ndarray
) -> np.ndarray:
    """Per order: can the data-dependent GNMax bound never beat the data-independent one?

    Checked at the unanimous histogram (the smallest q), with ``numpy.isclose`` as the papers' scripts
    do. Returns a boolean array (O,).
    """
    sigma = check_positive("sigma", sigma)
    orders = check_orders(orders)
    unanimous = np.zeros((1, num_classes), dtype=np.int64)
    unanimous[0, 0] = num_teachers
    logq = _logq_gaussian(unanimous, sigma)
    dependent = _rdp_gaussian_core(logq, sigma**2, orders)[0]
    return np.isclose(dependent, orders / sigma**2)


# ----------------------------------------------------------------------------------------------------
# The threshold step of Confident-GNMax and Interactive-GNMax


def _threshold_variance(sigma1: float) -> float:
    # The threshold step adds N(0, sigma1^2) to max(votes), which has sensitivity 1: it is GNMax's bound
    # (sensitivity sqrt(2)) with sigma replaced by sqrt(2) * sigma1.
    return (2**0.5 * sigma1) ** 2


def logpr_answered(votes: np.ndarray, threshold: float, sigma1: float) -> np.ndarray:
    """``ln Pr[answered]`` of the threshold step, per query: ``ln Pr[round(max) + N(0, sigma1^2) >= T]``.

    ``max(votes)`` is rounded to the nearest integer, half to even (Python's ``round``), as in the papers'
    code; this is what makes Interactive-GNMax's fractional, student-discounted votes (votes minus
    baseline, possibly negative) fit the same analysis. Integer votes are unchanged.

    >>> round(float(logpr_answered(np.array([[200, 50]]), 200, 40.0)[0]), 6)
    -0.693147
    """
    sigma1 = check_positive("sigma1", sigma1)
    threshold = _check_threshold(threshold)
    votes = check_votes(votes, allow_fractional=True)
    return _logpr_answered(votes, threshold, sigma1)


def _logpr_answered(votes: np.ndarray, threshold: float, sigma1: float) -> np.ndarray:
    top = np.round(np.max(votes, axis=-1))
    return gaussian_logsf(threshold - top, sigma1)


def _check_threshold(threshold: float) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise PateError(f"Expected threshold={threshold!r} to be a finite number.") from None
    if not math.isfinite(value):
        raise PateError(f"Expected threshold={threshold} to be a finite number.")
    return value


def rdp_threshold_data_independent(sigma1: float, orders: np.ndarray) -> np.ndarray:
    """Data-independent RDP of the threshold step: ``order / (2 sigma1^2)``.

    Guarantee: max(votes) has sensitivity 1 under the one-individual relation, so adding N(0, sigma1^2) to
    it is the Gaussian mechanism, (order, order / (2 sigma1^2))-RDP (PATE 2018, Section 4.1).
    """
    sigma1 = check_positive("sigma1", sigma1)
    return check_orders(orders) / _threshold_variance(sigma1)


def rdp_threshold(logpr: np.ndarray, sigma1: float, orders: np.ndarray) -> np.ndarray:
    """Data-dependent RDP of the threshold step per query, from ``ln Pr[answered]`` (Q,) -> (Q, O).

    The step's output is binary, so the role of q in Theorem 6 is played by the probability of the less
    likely outcome, ``min(p, 1 - p)``; the bound is GNMax's with sigma replaced by sqrt(2) sigma1.
    """
    sigma1 = check_positive("sigma1", sigma1)
    orders = check_orders(orders)
    logpr = check_logs("logpr", logpr)
    unique, inverse = np.unique(logpr, return_inverse=True)
    return _rdp_threshold_core(unique, sigma1, orders)[inverse]


def _rdp_threshold_core(logpr: np.ndarray, sigma1: float, orders: np.ndarray) -> np.ndarray:
    logq = np.minimum(logpr, log1mexp(logpr))
    return _rdp_gaussian_core(logq, _threshold_variance(sigma1), orders)


def is_data_independent_always_optimal_threshold(
    num_teachers: int, threshold: float, sigma1: float, orders: np.ndarray
) -> np.ndarray:
    """Per order: can the data-dependent threshold bound never beat the data-independent one?

    The bound depends on the votes only through max(votes), which lies in [0, num_teachers] for both
    Confident- and Interactive-GNMax, and it is checked at both ends with ``numpy.isclose``. (The papers'
    version combines the two ends with Python's ``and``, which only works for a single order; this one
    is elementwise and returns a boolean array (O,).)
    """
    sigma1 = check_positive("sigma1", sigma1)
    orders = check_orders(orders)
    ends = np.array([[0.0], [float(num_teachers)]])
    logpr = _logpr_answered(ends, _check_threshold(threshold), sigma1)
    dependent = _rdp_threshold_core(logpr, sigma1, orders)
    independent = orders / _threshold_variance(sigma1)
    return np.isclose(dependent[0], independent) & np.isclose(dependent[1], independent)


# ----------------------------------------------------------------------------------------------------
# LNMax (Laplace noise), PATE 2018 treatment


def logq_lnmax(votes: np.ndarray, scale: float) -> np.ndarray:
    """Upper bound on ``ln q`` for LNMax with Laplace noise of scale ``scale`` on every count, per query.

    Union bound with Pr[j beats i*] <= (2 + g_j)/4 e^(-g_j), g_j = (n_i* - n_j)/scale (PATE 2017,
    Lemma 4), capped at ``ln(1 - 1/C)``.
    """
    scale = check_positive("scale", scale)
    votes = check_votes(votes, allow_fractional=True)
    return _logq_laplace(votes, scale)


def _logq_laplace(votes: np.ndarray, scale: float) -> np.ndarray:
    num_classes = votes.shape[-1]
    gaps, is_top = runner_up_gaps(votes)
    normalized = -gaps / scale
    terms = np.log(2 - normalized) + math.log(0.25) + normalized
    return np.minimum(logsumexp_rows(terms, is_top), math.log(1 - (1 / num_classes)))


def rdp_lnmax_data_independent(scale: float, orders: np.ndarray) -> np.ndarray:
    """Data-independent RDP of one LNMax answer: ``min(eps^2 order / 2, eps)`` with ``eps = 2/scale``.

    Guarantee: moving one vote changes two counts by 1 each (L1 sensitivity 2), so the Laplace noisy
    argmax is eps = 2/scale pure DP, and an eps-DP mechanism is (order, min(eps, eps^2 order/2))-RDP
    (Bun and Steinke 2016, Proposition 3.3). This is the bound of the PATE papers; the exact RDP of the
    noisy histogram (dp_accounting's Laplace accountant, composed over the two changed counts) is
    smaller at small orders and tends to the same eps.
    """
    scale = check_positive("scale", scale)
    orders = check_orders(orders)
    eps = 2.0 / scale
    return np.minimum(0.5 * eps * eps * orders, eps)


def rdp_lnmax(logq: np.ndarray, scale: float, orders: np.ndarray) -> np.ndarray:
    """Data-dependent RDP of one LNMax answer per query (PATE 2017, Theorem 3, in RDP form).

    With eps = 2/scale and q = e^logq: when ``q <= 1/(e^eps + 1)`` the bound at order lambda is
    ``min(eps^2 lambda/2, ln(t)/(lambda-1), eps)`` with
    ``t = (1-q) ((1-q)/(1 - e^eps q))^(lambda-1) + q e^(eps (lambda-1))``; otherwise it is the
    data-independent ``min(eps^2 lambda / 2, eps)``. Returns (Q, O).
    """
    scale = check_positive("scale", scale)
    orders = check_orders(orders)
    logq = check_logs("logq", logq)
    unique, inverse = np.unique(logq, return_inverse=True)
    return _rdp_pure_eps_core(unique, 2.0 / scale, orders)[inverse]


def _rdp_pure_eps_core(logq: np.ndarray, eps: float, orders: np.ndarray) -> np.ndarray:
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
