"""Smooth-sensitivity release of the data-dependent epsilon (PATE 2018, Appendix B).

The data-dependent RDP of GNMax and of the threshold step depends on the private votes, so it cannot be
published as is. PATE 2018 bounds its local sensitivity at every Hamming distance d from the actual
votes (distance = number of teachers whose vote changes), takes the beta-smooth sensitivity
``SS = max_d e^(-beta d) LS(d)``, and publishes the cumulative RDP plus Gaussian noise scaled by SS
(the GNSS mechanism, Theorem 23), whose own RDP cost is added to the published epsilon.

Everything is vectorised over queries; the only per-order work is the root ``logq0`` (cached).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from pate.accounting._cores import (
    logpr_answered_core,
    logq_gaussian,
    rdp_gaussian_core,
    rdp_threshold_core,
    selection_votes,
    threshold_variance,
)
from pate.accounting._numerics import (
    check_delta,
    check_positive,
    check_threshold,
    check_votes,
    gaussian_logsf,
    log1mexp,
    logaddexp,
)
from pate.accounting.conversion import check_conversion, epsilon_per_order
from pate.accounting.rdp import (
    is_data_independent_always_optimal_gnmax,
    is_data_independent_always_optimal_threshold,
)
from pate.errors import PateError

# ----------------------------------------------------------------------------------------------------
# The GNMax bound as a function of q, and the points q0 and q1


def _check_order(order: float) -> float:
    try:
        value = float(order)
    except (TypeError, ValueError):
        raise PateError(f"Expected order={order!r} > 1.") from None
    if not math.isfinite(value) or value <= 1:
        raise PateError(f"Expected order={order} > 1.")
    return value


def _dependent_bound_scalar(sigma: float, logq: float, order: float) -> float:
    """Theorem 6 at one (logq, order), without its validity checks (the caller compares to logq0)."""
    variance = sigma**2
    mu2 = sigma * math.sqrt(-logq)
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / variance, mu2 / variance
    log1q = math.log1p(-math.exp(logq))
    log_a = (order - 1) * (log1q - math.log1p(-math.exp((logq + eps2) * (1 - 1 / mu2))))
    log_b = (order - 1) * (eps1 - logq / (mu1 - 1))
    return float(np.logaddexp(log1q + log_a, logq + log_b)) / (order - 1)


def _dependent_bound(sigma: float, logq: np.ndarray, order: float) -> np.ndarray:
    """Vectorised ``_dependent_bound_scalar``; 0 at ``logq = -inf``."""
    logq = np.asarray(logq, dtype=np.float64)
    variance = sigma**2
    with np.errstate(divide="ignore", invalid="ignore"):
        mu2 = sigma * np.sqrt(-logq)
        mu1 = mu2 + 1
        eps1, eps2 = mu1 / variance, mu2 / variance
        log1q = log1mexp(logq)
        log_a = (order - 1) * (log1q - log1mexp((logq + eps2) * (1 - 1 / mu2)))
        log_b = (order - 1) * (eps1 - logq / (mu1 - 1))
        bound = logaddexp(log1q + log_a, logq + log_b) / (order - 1)
    return np.where(np.isneginf(logq), 0.0, bound)


def _valid_for_theorem6(sigma: float, logq: float, order: float) -> bool:
    mu2 = sigma * math.sqrt(-logq)
    mu1 = mu2 + 1
    if mu1 < order:
        return False
    eps2 = mu2 / sigma**2
    # Lemma 9 of PATE 2018, in log space.
    return logq <= (mu2 - 1) * eps2 - mu2 * math.log(mu1 / (mu1 - 1) * mu2 / (mu2 - 1))


@functools.lru_cache(maxsize=4096)
def logq0_gnmax(sigma: float, order: float) -> float:
    """``ln q0``: at this order the data-dependent GNMax bound is used for ``ln q < ln q0`` only.

    q0 is the root of (data-dependent - data-independent) below the natural upper bound
    ``min(-(1 + 1/sigma)^2, -((order - 0.99)/sigma)^2, -1/sigma^2)``, bracketed by repeated scaling
    by 1.5 and found with Brent's method (xtol 2e-12), as in PATE 2018's smooth-sensitivity code.
    """
    sigma = check_positive("sigma", sigma)
    order = _check_order(order)
    independent = order / sigma**2

    def excess(logq: float) -> float:
        return _dependent_bound_scalar(sigma, logq, order) - independent

    upper = min(-((1 + 1.0 / sigma) ** 2), -(((order - 0.99) / sigma) ** 2), -1 / sigma**2)
    if not _valid_for_theorem6(sigma, upper, order):
        raise PateError(
            f"smooth sensitivity: Theorem 6 does not apply below ln q = {upper} at sigma={sigma}, "
            f"order={order}, expected it to"
        )
    if excess(upper) < 0:
        return upper
    lower = 2 * upper
    while excess(lower) > 0:
        if lower < -10_000:
            raise PateError(
                f"smooth sensitivity: no ln q0 above -10000 at sigma={sigma}, order={order}"
            )
        lower *= 1.5
    from scipy import optimize  # imported here: it is slow to import and needed only here

    root = optimize.brentq(excess, lower, upper, xtol=2e-12)
    return float(root)


def _log_bl(logq: np.ndarray, sigma: float, num_classes: int) -> np.ndarray:
    """``ln BL(q)``, BL(q) = (m-1)/2 erfc(erfcinv(2q/(m-1)) + 1/sigma), in log space (no underflow)."""
    log_m1 = math.log(num_classes - 1)
    return log_m1 + special.log_ndtr(special.ndtri_exp(logq - log_m1) - math.sqrt(2) / sigma)


def _log_bu(logq: np.ndarray, sigma: float, num_classes: int) -> np.ndarray:
    """``ln BU(q)``, BU(q) = min(1, (m-1)/2 erfc(erfcinv(2q/(m-1)) - 1/sigma)), in log space."""
    log_m1 = math.log(num_classes - 1)
    value = log_m1 + special.log_ndtr(special.ndtri_exp(logq - log_m1) + math.sqrt(2) / sigma)
    return np.minimum(value, 0.0)


def logq1_gnmax(sigma: float, order: float, num_classes: int) -> float:
    """``ln q1 = ln BL(q0)``: the smallest ln q one vote away from q0 (PATE 2018, Algorithm 3)."""
    logq0 = logq0_gnmax(float(sigma), float(order))
    return float(_log_bl(np.array(logq0), float(sigma), int(num_classes)))


# ----------------------------------------------------------------------------------------------------
# Local sensitivity of the GNMax bound (Algorithms 3-5)


@dataclass(frozen=True)
class _GnmaxCurve:
    sigma: float
    order: float
    num_classes: int
    logq0: float
    logq1: float

    @classmethod
    def make(cls, sigma: float, order: float, num_classes: int) -> _GnmaxCurve:
        logq0 = logq0_gnmax(sigma, order)
        logq1 = float(_log_bl(np.array(logq0), sigma, num_classes))
        return cls(sigma, order, num_classes, logq0, logq1)

    def rdp(self, logq: np.ndarray) -> np.ndarray:
        """The bound as a function of ln q: data-independent from logq0 up."""
        independent = self.order / self.sigma**2
        with np.errstate(invalid="ignore"):
            dependent = _dependent_bound(self.sigma, np.minimum(logq, self.logq0), self.order)
        return np.where(logq >= self.logq0, independent, dependent)

    def local_sensitivity(self, logq: np.ndarray) -> np.ndarray:
        """Algorithm 3: max change of the bound when one vote moves, at a histogram with this ln q."""
        logq = np.asarray(logq, dtype=np.float64)
        logq = np.where((self.logq1 <= logq) & (logq <= self.logq0), self.logq1, logq)
        here = self.rdp(logq)
        log_m1 = math.log(self.num_classes - 1)
        with np.errstate(divide="ignore"):
            quantile = special.ndtri_exp(logq - log_m1)
            shift = math.sqrt(2) / self.sigma
            up = self.rdp(np.minimum(log_m1 + special.log_ndtr(quantile + shift), 0.0))
            down = self.rdp(log_m1 + special.log_ndtr(quantile - shift))
        return np.maximum(up - here, here - down)

    @functools.cached_property
    def plateau(self) -> float:
        return float(self.local_sensitivity(np.array(self.logq1)))


@dataclass(frozen=True)
class GnmaxSensitivityPaths:
    """Local sensitivities of the GNMax bound at distances 0..num_teachers-1, for Q queries.

    Stored compactly: query ``q`` has explicit values ``values[starts[q]:starts[q] + stops[q] + 1]`` for
    d = 0..stops[q]; every further distance has the value ``plateau`` (``stops[q] = -1``: all plateau).
    """

    num_teachers: int
    plateau: float
    stops: np.ndarray
    starts: np.ndarray
    values: np.ndarray

    def dense(self) -> np.ndarray:
        """The (Q, num_teachers) array ``LS[q, d]``."""
        out = np.full((self.stops.size, self.num_teachers), self.plateau)
        query, distance = self._coordinates()
        out[query, distance] = self.values
        return out

    def _coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        lengths = self.stops + 1
        query = np.repeat(np.arange(self.stops.size), lengths)
        distance = np.arange(self.values.size) - np.repeat(self.starts, lengths)
        return query, distance

    def weighted_sum(self, weights: np.ndarray) -> np.ndarray:
        """``sum_q weights[q] LS[q, :]`` without forming the dense array."""
        query, distance = self._coordinates()
        total = np.bincount(
            distance, weights=weights[query] * self.values, minlength=self.num_teachers
        )[: self.num_teachers]
        tail_start = np.bincount(self.stops + 1, weights=weights, minlength=self.num_teachers + 1)
        total += self.plateau * np.cumsum(tail_start)[: self.num_teachers]
        return total

    def smooth(self, betas: np.ndarray) -> np.ndarray:
        """``max_d e^(-beta d) LS[q, d]`` for each query and beta -> (Q, B)."""
        betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
        query, distance = self._coordinates()
        discounted = self.values[:, None] * np.exp(-np.outer(distance, betas))
        out = np.zeros((self.stops.size, betas.size))
        np.maximum.at(out, query, discounted)
        tail = self.stops + 1
        has_tail = tail <= self.num_teachers - 1
        tail_value = self.plateau * np.exp(-np.outer(tail, betas))
        return np.where(has_tail[:, None], np.maximum(out, tail_value), out)


class _TailTable:
    """``ln Pr[N(0, 2 sigma^2) >= g]`` for the integer gaps g = 0..largest (and linear values)."""

    def __init__(self, sigma: float, largest: int) -> None:
        scale = math.sqrt(2 * sigma**2)
        self.largest = largest
        self.log = gaussian_logsf(np.arange(largest + 1, dtype=np.float64), scale)
        # In linear space when no entry underflows (then sums need no shift).
        self.linear = np.exp(self.log) if self.log[-1] > -700.0 else None

    def logq(self, gaps, smallest: np.ndarray, cap: float) -> np.ndarray:
        """``ln sum_j Pr[N >= gaps_j]`` over an iterable of gap arrays; ``smallest`` is the least gap."""
        if self.linear is not None:
            total = None
            for gap in gaps:
                term = self.linear[np.clip(gap, 0, self.largest)]
                total = term if total is None else total + term
            return np.minimum(np.log(total), cap)
        top = self.log[np.clip(smallest, 0, self.largest)]
        total = None
        for gap in gaps:
            term = np.exp(np.maximum(self.log[np.clip(gap, 0, self.largest)] - top, -708.0))
            total = term if total is None else total + term
        return np.minimum(top + np.log(total), cap)


def _left_logq(
    top: np.ndarray, rest: np.ndarray, distances: np.ndarray, table: _TailTable, cap: float
) -> tuple[np.ndarray, np.ndarray]:
    """ln q after d steps to the left, for every query (rows) and distance (columns).

    Each step moves one vote from the current largest other class to the leader. ``rest`` (Q, m-1) is
    sorted in non-increasing order. After d steps the k largest other counts are levelled to share
    ``S_k - d`` votes as evenly as possible (``level`` or ``level + 1``), k the smallest count whose
    level stays at or above the next count; the leader has ``top + d``. Returns (ln q, largest other
    count), both (Q, D).
    """
    num_rest = rest.shape[1]
    cumulative = np.cumsum(rest, axis=1)
    following = np.concatenate([rest[:, 1:], np.zeros((rest.shape[0], 1), rest.dtype)], axis=1)
    cost = cumulative - np.arange(1, num_rest + 1) * following  # non-decreasing in k
    k = 1 + np.sum(cost.T[:, :, None] < distances[None, None, :], axis=0)  # (Q, D)
    np.minimum(k, num_rest, out=k)
    shared = np.take_along_axis(cumulative, k - 1, axis=1) - distances[None, :]
    level, extra = np.divmod(shared, k)
    leader = top[:, None] + distances[None, :]

    def gaps():
        for j in range(num_rest):
            value = np.where(j < k, level + (j < extra), rest[:, j, None])
            yield leader - value

    largest_other = level + (extra > 0)
    return table.logq(gaps(), leader - largest_other, cap), largest_other


def _right_logq(
    top: np.ndarray, rest: np.ndarray, distances: np.ndarray, table: _TailTable, cap: float
) -> np.ndarray | None:
    """ln q after d steps to the right (one vote from the leader to the runner-up per step), (Q, D).

    None when the runner-up would overtake the leader within these distances (the caller then
    evaluates the histograms directly).
    """
    gap_first = (top - rest[:, 0])[:, None] - 2 * distances[None, :]
    if gap_first.min() < 0:
        return None

    def gaps():
        yield gap_first
        for j in range(1, rest.shape[1]):
            yield (top - rest[:, j])[:, None] - distances[None, :]

    return table.logq(gaps(), gap_first, cap)


def _paths(
    sorted_votes: np.ndarray,
    logq_start: np.ndarray,
    curve: _GnmaxCurve,
    num_teachers: int,
    go_left: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Walk Algorithm 4/5's path of every query, a block of distances at a time.

    Going left (q above q0): one vote moves from the largest other class to the leader per step, until
    ln q <= ln q0 or no other vote is left. Going right (q below q1): one vote moves from the leader to
    the runner-up per step, until ln q >= ln q1. Returns ``stops`` (Q,) and the explicit entries as
    flat arrays ``(query, distance, logq)`` for d = 0..stops[q].
    """
    num_queries, num_classes = sorted_votes.shape
    top = sorted_votes[:, 0]
    rest = sorted_votes[:, 1:]
    cap = math.log(1 - (1 / num_classes))
    table = _TailTable(curve.sigma, int(2 * num_teachers))
    stops = np.zeros(num_queries, dtype=np.int64)
    queries = [np.arange(num_queries)]
    distances_out = [np.zeros(num_queries, dtype=np.int64)]
    logqs = [logq_start]
    active = np.flatnonzero(rest[:, 0] > 0) if go_left else np.arange(num_queries)
    start, block = 1, 16
    while active.size:
        block = int(min(block, max(1, 4_000_000 // (active.size * num_classes))))
        distances = np.arange(start, start + block)
        if go_left:
            logq, largest_other = _left_logq(top[active], rest[active], distances, table, cap)
            carry_on = (logq > curve.logq0) & (largest_other > 0)
        else:
            logq = _right_logq(top[active], rest[active], distances, table, cap)
            if logq is None:
                states = np.repeat(sorted_votes[active, None, :], block, axis=1)
                states[..., 0] -= distances[None, :]
                states[..., 1] += distances[None, :]
                logq = logq_gaussian(states, curve.sigma)
            carry_on = logq < curve.logq1
        carry_on &= distances[None, :] < num_teachers - 1
        finished = ~carry_on.all(axis=1)
        last = np.where(finished, np.argmin(carry_on, axis=1), block - 1)
        keep = np.arange(block)[None, :] <= last[:, None]
        rows, columns = np.nonzero(keep)
        queries.append(active[rows])
        distances_out.append(distances[columns])
        logqs.append(logq[rows, columns])
        stops[active[finished]] = start + last[finished]
        active = active[~finished]
        start += block
        block *= 2
    return stops, np.concatenate(queries), np.concatenate(distances_out), np.concatenate(logqs)


def local_sensitivity_paths_gnmax(
    votes: np.ndarray, sigma: float, order: float, *, num_teachers: int
) -> GnmaxSensitivityPaths:
    """Local sensitivities of the order-``order`` GNMax bound at every distance, for every query.

    Algorithms 3-5 of PATE 2018: from the actual votes, walk towards the region [q1, q0] where the
    sensitivity peaks (moving one vote per step between the two leading classes, or from the largest
    other class to the leader), evaluating Algorithm 3's bound at each step; once there, the bound is
    the plateau value at q1 for every larger distance.
    """
    sigma = check_positive("sigma", sigma)
    order = _check_order(order)
    votes = check_votes(votes, teachers=num_teachers)
    curve = _GnmaxCurve.make(sigma, order, votes.shape[1])
    sorted_votes = -np.sort(-votes, axis=1)
    logq = logq_gaussian(votes, sigma)
    stops = np.full(votes.shape[0], -1, dtype=np.int64)
    parts = []
    for go_left, rows in (
        (True, np.flatnonzero(logq > curve.logq0)),
        (False, np.flatnonzero(logq < curve.logq1)),
    ):
        if rows.size:
            row_stops, query, distance, path_logq = _paths(
                sorted_votes[rows], logq[rows], curve, num_teachers, go_left
            )
            stops[rows] = row_stops
            parts.append((rows[query], distance, path_logq))
    if parts:
        query = np.concatenate([p[0] for p in parts])
        distance = np.concatenate([p[1] for p in parts])
        path_logq = np.concatenate([p[2] for p in parts])
        order_of_entries = np.lexsort((distance, query))
        unique, inverse = np.unique(path_logq[order_of_entries], return_inverse=True)
        values = curve.local_sensitivity(unique)[inverse]
    else:
        values = np.empty(0)
    lengths = stops + 1
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return GnmaxSensitivityPaths(num_teachers, curve.plateau, stops, starts, values)


def local_sensitivity_gnmax(
    votes: np.ndarray, sigma: float, order: float, *, num_teachers: int
) -> np.ndarray:
    """``LS[q, d]``: bound on the local sensitivity of GNMax's RDP at order ``order`` at distance d.

    Returns (Q, num_teachers), d = 0..num_teachers-1 (PATE 2018, Algorithms 3-5).
    """
    return local_sensitivity_paths_gnmax(votes, sigma, order, num_teachers=num_teachers).dense()


# ----------------------------------------------------------------------------------------------------
# Local sensitivity of the threshold step


def _threshold_step_sensitivity(
    num_teachers: int, threshold: float, sigma1: float, order: float
) -> np.ndarray:
    """Per value v = 0..num_teachers of max(votes): the largest change of the RDP when v moves by 1."""
    values = np.arange(num_teachers + 1, dtype=np.float64)
    logpr = logpr_answered_core(values[:, None], threshold, sigma1)
    rdp = rdp_threshold_core(logpr, sigma1, np.array([order]))[:, 0]
    steps = np.abs(np.diff(rdp))
    out = np.zeros(num_teachers + 1)
    out[1:] = steps
    out[:-1] = np.maximum(out[:-1], steps)
    return out


def _threshold_tops(votes: np.ndarray, num_teachers: int) -> np.ndarray:
    tops = np.round(np.max(votes, axis=1)).astype(np.int64)
    bad = (tops < 0) | (tops > num_teachers)
    if bad.any():
        raise PateError(
            f"votes: row {int(np.argmax(bad))} has max {tops[bad][0]}, expected 0..{num_teachers}"
        )
    return tops


def _threshold_rows(tops: np.ndarray, per_value: np.ndarray, num_teachers: int) -> np.ndarray:
    distance = np.arange(num_teachers)[None, :]
    up = tops[:, None] + distance
    down = tops[:, None] - distance
    value_up = np.where(up <= num_teachers, per_value[np.minimum(up, num_teachers)], 0.0)
    value_down = np.where(down >= 0, per_value[np.maximum(down, 0)], 0.0)
    reach = np.maximum(tops, num_teachers - tops)[:, None]
    return np.where(distance < reach, np.maximum(value_up, value_down), 0.0)


def local_sensitivity_threshold(
    votes: np.ndarray, threshold: float, sigma1: float, order: float, *, num_teachers: int
) -> np.ndarray:
    """``LS[q, d]`` of the threshold step's RDP at order ``order``, d = 0..num_teachers-1.

    The bound depends on the votes only through v = round(max(votes)), which moves by at most 1 per
    changed teacher; LS at distance d is the largest one-step change at v - d or v + d within
    [0, num_teachers] (PATE 2018, Appendix B). Accepts fractional votes (Interactive-GNMax).
    """
    sigma1 = check_positive("sigma1", sigma1)
    order = _check_order(order)
    threshold = check_threshold(threshold)
    votes = check_votes(votes, allow_fractional=True)
    per_value = _threshold_step_sensitivity(num_teachers, threshold, sigma1, order)
    return _threshold_rows(_threshold_tops(votes, num_teachers), per_value, num_teachers)


def _threshold_weighted_sum(
    tops: np.ndarray, weights: np.ndarray, per_value: np.ndarray, num_teachers: int
) -> np.ndarray:
    by_top = np.bincount(tops, weights=weights, minlength=num_teachers + 1)
    present = np.flatnonzero(by_top)
    total = np.zeros(num_teachers)
    chunk = max(1, 2_000_000 // max(num_teachers, 1))
    for begin in range(0, present.size, chunk):
        rows = present[begin : begin + chunk]
        total += by_top[rows] @ _threshold_rows(rows, per_value, num_teachers)
    return total


# ----------------------------------------------------------------------------------------------------
# Smooth sensitivity and the GNSS release


def discounted_max(beta: float, local_sensitivity: np.ndarray) -> np.ndarray:
    """beta-smooth sensitivity ``max_d e^(-beta d) LS[..., d]`` over the last axis."""
    ls = np.asarray(local_sensitivity, dtype=np.float64)
    return np.max(ls * np.exp(-beta * np.arange(ls.shape[-1])), axis=-1)


def smooth_sensitivity_gnmax(
    votes: np.ndarray, sigma: float, order: float, beta: float, *, num_teachers: int
) -> np.ndarray:
    """beta-smooth sensitivity of each query's GNMax RDP at ``order`` -> (Q,)."""
    paths = local_sensitivity_paths_gnmax(votes, sigma, order, num_teachers=num_teachers)
    return paths.smooth(np.array([float(beta)]))[:, 0]


def rdp_gnss(beta: float, sigma: float, order: float) -> float:
    """RDP of releasing f(x) + SS_beta(x) N(0, sigma^2) (PATE 2018, Theorem 23).

    ``order e^(2 beta) / sigma^2 + (beta order - ln(1 - 2 order beta)/2) / (order - 1)``, valid for
    ``1 < order < 1 / (2 beta)``.
    """
    if beta > 0 and not 1 < order < 1 / (2 * beta):
        raise PateError(f"Expected order={order} in (1, 1/(2 beta)) = (1, {1 / (2 * beta)}).")
    return order * math.exp(2 * beta) / sigma**2 + (
        -0.5 * math.log(1 - 2 * order * beta) + beta * order
    ) / (order - 1)


def _is_non_decreasing(values: np.ndarray) -> bool:
    steps = np.diff(values)
    scale = np.maximum(np.abs(values[1:]), np.abs(values[:-1]))
    return bool(np.all(steps >= -1e-9 * scale - 1e-300))


def check_gnss_conditions(sigma: float, num_classes: int, order: float) -> tuple[bool, bool]:
    """Numerical check of conditions C5 and C6 of PATE 2018 (Section B.4.2) that Algorithm 3 needs.

    C5: the data-dependent bound beta(q) is non-decreasing on (0, q0). C6: beta(BU(q)) - beta(q) is
    non-decreasing on (0, BL(q0)). Both are checked on a dense grid of ln q (linear near the upper end,
    geometric down to ln q = -10^5), with a relative tolerance of 1e-9 for rounding. (The papers check
    the sign of a symbolic derivative at a numerical minimum; a grid in log space also covers the very
    small q that large ensembles reach.)
    """
    sigma = check_positive("sigma", sigma)
    order = _check_order(order)
    curve = _GnmaxCurve.make(sigma, order, int(num_classes))

    def grid(upper: float) -> np.ndarray:
        near = np.linspace(upper - 60.0, upper, 3001)
        far = -np.geomspace(-(upper - 60.0), 1e5, 2000)[::-1]
        return np.unique(np.concatenate([far, near]))

    logq = grid(curve.logq0)
    cond5 = _is_non_decreasing(_dependent_bound(sigma, logq, order))
    if not cond5:
        return False, False
    logq = grid(curve.logq1)
    upper = _dependent_bound(
        sigma, np.minimum(_log_bu(logq, sigma, num_classes), curve.logq0), order
    )
    cond6 = _is_non_decreasing(upper - _dependent_bound(sigma, logq, order))
    return cond5, cond6


@dataclass(frozen=True)
class SmoothSensitivityRelease:
    """The parameters and cost of publishing the data-dependent epsilon with GNSS (PATE 2018, App. B).

    ``epsilon_with_release`` is what may be published: the data-dependent RDP at ``order`` plus the RDP
    of the GNSS release, converted at ``delta``. The noisy value to publish is the data-dependent RDP
    plus ``sensitivity * noise_sigma * N(0, 1)`` (standard deviation ``noise_std``). Parameters were
    chosen with full view of the votes, as in the paper: what is released is the noisy value.
    """

    order: float
    beta: float
    sensitivity: float
    noise_sigma: float
    noise_std: float
    rdp_at_order: float
    rdp_release: float
    epsilon_before: float
    epsilon_with_release: float
    delta: float
    data_independent_step1: bool
    data_independent_step2: bool
    conditions_hold: bool
    expected_answered: float

    def to_dict(self) -> dict:
        finite = math.isfinite(self.noise_sigma)
        return {
            "order": self.order,
            "beta": self.beta,
            "sensitivity": self.sensitivity,
            "noise_sigma": self.noise_sigma if finite else None,
            "noise_std": self.noise_std if finite else 0.0,
            "epsilon_before": self.epsilon_before,
            "epsilon_with_release": self.epsilon_with_release,
            "rdp_release": self.rdp_release,
            "data_independent_steps": [self.data_independent_step1, self.data_independent_step2],
            "conditions_hold": self.conditions_hold,
        }


def optimise_smooth_sensitivity(
    votes: np.ndarray,
    *,
    sigma2: float,
    order: float,
    delta: float,
    threshold: float | None = None,
    sigma1: float | None = None,
    baseline: np.ndarray | None = None,
    num_teachers: int | None = None,
    conversion: str = "classic",
    check_conditions: bool = True,
) -> SmoothSensitivityRelease:
    """The papers' search for the GNSS parameters at one order (PATE 2018's smooth-sensitivity table).

    Per query: the expected RDP ``rdp1 + Pr[answered] rdp2`` and the expected local sensitivity
    ``LS1 + Pr[answered] LS2`` (threshold step 1 and GNMax step 2; a step whose data-dependent bound
    can never beat the data-independent one at this order uses the data-independent bound and has no
    sensitivity). Summed over queries; then for beta in ``arange(0.3, 0.495, 0.01) / order``:
    ``SS = max_d e^(-beta d) LS(d)``, ``sigma_ss = (order e^(2 beta) / SS)^(1/3)`` (minimising
    ``order e^(2 beta)/sigma^2 + 2 SS sigma``), and the beta minimising
    ``rdp + rdp_gnss(beta, sigma_ss) + 2 SS sigma_ss`` (the upper end of the noisy value's 2-sigma
    interval) is chosen. Without ``threshold`` this is plain GNMax.
    """
    sigma2 = check_positive("sigma2", sigma2)
    order = _check_order(order)
    delta = check_delta(delta)
    conversion = check_conversion(conversion)
    if (threshold is None) != (sigma1 is None):
        raise PateError("threshold and sigma1 must be given together, expected both or neither")
    votes = check_votes(votes, teachers=num_teachers)
    if num_teachers is None:
        num_teachers = _count_teachers(votes)
    num_queries, num_classes = votes.shape
    orders = np.array([order])

    if threshold is None:
        ind_step1 = True
        log_answered = np.zeros(num_queries)
        rdp1 = np.zeros(num_queries)
    else:
        sigma1 = check_positive("sigma1", sigma1)
        threshold = check_threshold(threshold)
        selected = selection_votes(votes, baseline)
        ind_step1 = bool(
            np.all(
                is_data_independent_always_optimal_threshold(
                    num_teachers, threshold, sigma1, orders
                )
            )
        )
        log_answered = logpr_answered_core(selected, threshold, sigma1)
        if ind_step1:
            rdp1 = np.full(num_queries, order / threshold_variance(sigma1))
        else:
            unique, inverse = np.unique(log_answered, return_inverse=True)
            rdp1 = rdp_threshold_core(unique, sigma1, orders)[inverse, 0]
    answered = np.exp(log_answered)
    ind_step2 = bool(
        np.all(is_data_independent_always_optimal_gnmax(num_teachers, num_classes, sigma2, orders))
    )
    if ind_step2:
        rdp2 = np.full(num_queries, order / sigma2**2)
    else:
        logq = logq_gaussian(votes, sigma2)
        unique, inverse = np.unique(logq, return_inverse=True)
        rdp2 = rdp_gaussian_core(unique, sigma2**2, orders)[inverse, 0]
    rdp_total = float(np.sum(rdp1 + answered * rdp2))

    ls_total = np.zeros(num_teachers)
    if not ind_step1:
        per_value = _threshold_step_sensitivity(num_teachers, threshold, sigma1, order)
        tops = _threshold_tops(selected, num_teachers)
        ls_total += _threshold_weighted_sum(tops, np.ones(num_queries), per_value, num_teachers)
    if not ind_step2:
        paths = local_sensitivity_paths_gnmax(votes, sigma2, order, num_teachers=num_teachers)
        ls_total += paths.weighted_sum(answered)

    conditions_hold = True
    if not ind_step2 and check_conditions:
        conditions_hold = all(check_gnss_conditions(sigma2, num_classes, order))

    before = float(epsilon_per_order(np.array([rdp_total]), orders, delta, conversion)[0])
    if (ind_step1 and ind_step2) or not np.any(ls_total > 0):
        beta, sensitivity, noise_sigma, release = 0.0, 0.0, math.inf, 0.0
    else:
        betas = np.arange(0.3 / order, 0.495 / order, 0.01 / order)
        sensitivities = np.max(ls_total * np.exp(-np.outer(betas, np.arange(num_teachers))), axis=1)
        noise_sigmas = (order * np.exp(2 * betas) / sensitivities) ** (1 / 3)
        releases = np.array(
            [rdp_gnss(b, s, order) for b, s in zip(betas, noise_sigmas, strict=True)]
        )
        costs = rdp_total + releases + 2 * sensitivities * noise_sigmas
        best = int(np.nanargmin(costs))
        beta, sensitivity = float(betas[best]), float(sensitivities[best])
        noise_sigma, release = float(noise_sigmas[best]), float(releases[best])
    after = float(epsilon_per_order(np.array([rdp_total + release]), orders, delta, conversion)[0])
    return SmoothSensitivityRelease(
        order=order,
        beta=beta,
        sensitivity=sensitivity,
        noise_sigma=noise_sigma,
        noise_std=sensitivity * noise_sigma if math.isfinite(noise_sigma) else 0.0,
        rdp_at_order=rdp_total,
        rdp_release=release,
        epsilon_before=before,
        epsilon_with_release=after,
        delta=delta,
        data_independent_step1=ind_step1,
        data_independent_step2=ind_step2,
        conditions_hold=conditions_hold,
        expected_answered=float(np.sum(answered)),
    )


def _count_teachers(votes: np.ndarray) -> int:
    sums = votes.sum(axis=1)
    if sums.min() != sums.max():
        row = int(np.argmax(sums != sums[0]))
        raise PateError(
            f"votes: row {row} sums to {sums[row]} but row 0 to {sums[0]}, expected the same number of "
            "teachers per query (or pass --teachers)"
        )
    return int(sums[0])
