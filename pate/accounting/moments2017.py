"""The PATE 2017 moments accountant for LNMax (Papernot et al., ICLR 2017, Section 3 and Appendix).

LNMax adds Laplace noise ``Lap(1/gamma)`` to every vote count and answers the noisy argmax. Moving one
vote changes two counts by 1, so one answer is ``2 gamma``-DP. The 2017 analysis bounds the log-moment
``alpha(l)`` of the privacy loss at moments l = 1..8 from the probability q that the answer is not the
plurality class (Theorem 3), composes by summing over queries, and converts with
``eps = min_l (alpha(l) + ln(1/delta)) / l``. (A log-moment at moment l is l times the RDP at order
l + 1.) Its smoothed sensitivity lets the data-dependent epsilon itself be released.

All functions are vectorised over queries (Q) and moments (L).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pate.accounting._numerics import check_delta, check_positive, check_votes
from pate.errors import PateError

#: The moments of the 2017 analysis script.
DEFAULT_MOMENTS: np.ndarray = np.arange(1.0, 9.0)


def _check_moments(moments: np.ndarray) -> np.ndarray:
    array = np.atleast_1d(np.asarray(moments, dtype=np.float64))
    bad = ~(np.isfinite(array) & (array > 0))
    if array.ndim != 1 or array.size == 0 or bad.any():
        raise PateError(f"moments is {moments!r}, expected a non-empty list of moments > 0")
    return array


def q_lnmax_2017(votes: np.ndarray, gamma: float) -> np.ndarray:
    """Upper bound on q = Pr[LNMax answer != plurality class], per query (PATE 2017, Lemma 4).

    ``sum_j (2 + g_j) / (4 e^(g_j))`` with ``g_j = gamma (n_i* - n_j)`` over the classes other than the
    plurality ``i*`` (first index on ties), capped at ``1 - 1/C``. Returns q, not ln q, as the 2017 code.
    """
    gamma = check_positive("gamma", gamma)
    votes = check_votes(votes, allow_fractional=True)
    return _q_noisy_max(votes, gamma)


def _q_noisy_max(votes: np.ndarray, gamma: float) -> np.ndarray:
    winner = np.argmax(votes, axis=-1)
    top = np.take_along_axis(votes, winner[..., None], axis=-1)
    gap = -(gamma * (votes - top))
    terms = (gap + 2.0) / (4.0 * np.exp(gap))
    np.put_along_axis(terms, winner[..., None], 0.0, axis=-1)
    return np.minimum(np.sum(terms, axis=-1), 1.0 - (1.0 / votes.shape[-1]))


def logmgf_2017(q: np.ndarray, eps: float, moments: np.ndarray = DEFAULT_MOMENTS) -> np.ndarray:
    """Log-moment bound of one eps-DP answer whose non-plurality probability is at most q.

    ``min(eps^2 l (l + 1) / 2, ln t, eps l)`` with ``t = (1-q) ((1-q)/(1 - e^eps q))^l + q e^(eps l)``
    (PATE 2017, Theorem 3), where the middle term is used only when it is valid:
    ``q < (e^eps - 1)/(e^(2 eps) - 1) = 1/(e^eps + 1)``. (q, L).

    Note on the 2017 code: it uses the middle term for every ``q < 0.5``. For
    ``1/(e^eps + 1) <= q < 0.5`` that is harmless (there ``ln t >= eps l``, so the minimum is unchanged,
    and we evaluate it exactly as that code does); but when ``e^eps q >= 1`` (possible only for
    ``eps > ln 2``) it raises a negative number to the power l and can return a value below the valid
    bound. There we use the data-independent ``min(eps^2 l (l+1)/2, eps l)``, as the theorem requires.
    """
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    moments = _check_moments(moments)
    eps = float(eps)
    independent = np.minimum(0.5 * eps * eps * moments * (moments + 1), eps * moments)
    out = np.empty(q.shape + moments.shape)
    out[...] = independent
    use = (q < 0.5) & (1 - math.exp(eps) * q > 0)
    if use.any():
        qq = q[use][:, None]
        with np.errstate(over="ignore"):
            t_one = (1 - qq) * np.power((1 - qq) / (1 - math.exp(eps) * qq), moments)
            t_two = qq * np.exp(eps * moments)
            log_t = np.log(t_one + t_two)
        out[use] = np.minimum(independent, log_t)
    return out


def _sensitivity_at_distance(
    votes: np.ndarray, gamma: float, moments: np.ndarray, distances: np.ndarray
) -> np.ndarray:
    """The 2017 code's local sensitivity of the log-moment at distance k, (Q, K, L).

    Sorted counts s; at distance k the two leading counts become s0 - k and s1 + k; the sensitivity is
    the change of the log-moment when one more vote moves, ``alpha(s0-k-1, s1+k+1) - alpha(s0-k, s1+k)``.
    It is 0 when ``counts[0] < counts[1] + k`` on the counts as given (unsorted: a quirk of the 2017 code,
    kept so its published smoothed sensitivities are reproduced) and when ``gamma l / 2 > 1``.
    """
    sorted_votes = -np.sort(-votes, axis=1)
    shifts = np.concatenate([distances, [distances[-1] + 1]])
    states = np.repeat(sorted_votes[:, None, :], shifts.size, axis=1).astype(np.float64)
    states[..., 0] -= shifts
    states[..., 1] += shifts
    q = _q_noisy_max(states, gamma)  # (Q, K + 1)
    alpha = logmgf_2017(q.reshape(-1), 2.0 * gamma, moments).reshape(q.shape + moments.shape)
    sensitivity = alpha[:, 1:, :] - alpha[:, :-1, :]
    gap_ok = votes[:, 0, None] >= votes[:, 1, None] + distances[None, :]
    sensitivity = np.where(gap_ok[..., None], sensitivity, 0.0)
    return np.where(0.5 * gamma * moments > 1, 0.0, sensitivity)


def smoothed_sensitivity_2017(
    votes: np.ndarray,
    gamma: float,
    moments: np.ndarray = DEFAULT_MOMENTS,
    beta: float = 0.09,
) -> np.ndarray:
    """beta-smoothed sensitivity of each query's log-moments, as PATE 2017's analysis computes it. (Q, L).

    ``max_k e^(-beta k) LS(k)`` over k = 0, 1, ... max(counts), stopping after the first k >= 1 whose
    sensitivity is exactly 0 (as the 2017 code does; see ``_sensitivity_at_distance`` for LS(k)).
    """
    gamma = check_positive("gamma", gamma)
    beta = check_positive("beta", beta)
    moments = _check_moments(moments)
    votes = check_votes(votes)
    num_queries = votes.shape[0]
    limit = votes.max(axis=1)
    best = _sensitivity_at_distance(votes, gamma, moments, np.array([0]))[:, 0, :]
    # Walk k = 1, 2, ... in blocks, for the (query, moment) pairs that have not stopped yet.
    active = np.ones((num_queries, moments.size), dtype=bool)
    active &= limit[:, None] >= 1
    start, block = 1, 16
    while active.any():
        rows = np.flatnonzero(active.any(axis=1))
        block = int(min(block, max(1, 2_000_000 // (rows.size * votes.shape[1]))))
        distances = np.arange(start, start + block)
        sens = _sensitivity_at_distance(votes[rows], gamma, moments, distances)  # (R, K, L)
        in_range = distances[None, :] <= limit[rows, None]  # k <= max(counts)
        zero = (sens == 0.0) | ~in_range[..., None]
        # The walk includes the first zero (it contributes 0) and stops there.
        seen_zero_before = np.cumsum(zero, axis=1) - zero > 0
        counted = ~seen_zero_before & in_range[..., None] & active[rows][:, None, :]
        discounted = np.exp(-beta * distances)[None, :, None] * sens
        candidate = np.max(np.where(counted, discounted, -np.inf), axis=1)
        best[rows] = np.maximum(best[rows], candidate)
        stopped = zero.any(axis=1)
        active[rows] &= ~stopped
        start += block
        block *= 2
    return best


@dataclass(frozen=True)
class MomentsAnalysis2017:
    """PATE 2017's epsilon of LNMax over Q queries at ``delta``, data-dependent and independent."""

    gamma: float
    delta: float
    moments: np.ndarray
    log_moments: np.ndarray
    epsilon_per_moment: np.ndarray
    epsilon: float
    moment: float
    data_independent_epsilon: float
    data_independent_moment: float
    smoothed_sensitivity: np.ndarray | None
    beta: float

    def to_dict(self) -> dict:
        out = {
            "gamma": self.gamma,
            "delta": self.delta,
            "epsilon": self.epsilon,
            "moment": self.moment,
            "data_independent": {
                "epsilon": self.data_independent_epsilon,
                "moment": self.data_independent_moment,
            },
            "epsilon_per_moment": self.epsilon_per_moment.tolist(),
        }
        if self.smoothed_sensitivity is not None:
            release_eps = 2.0 * self.beta * math.log(1 / self.delta)
            index = int(np.argmin(self.epsilon_per_moment))
            out["smoothed_sensitivity"] = {
                "beta": self.beta,
                "per_moment": self.smoothed_sensitivity.tolist(),
                "at_moment": float(self.smoothed_sensitivity[index]),
                "release_epsilon": release_eps,
                "laplace_scale": 2.0 / release_eps * float(self.smoothed_sensitivity[index]),
            }
        return out


def moments_analysis_2017(
    votes: np.ndarray,
    gamma: float,
    delta: float,
    *,
    moments: np.ndarray = DEFAULT_MOMENTS,
    smooth_sensitivity: bool = False,
    beta: float = 0.09,
) -> MomentsAnalysis2017:
    """PATE 2017's analysis of LNMax answers to the queries in ``votes`` (its ``analysis.py``).

    ``eps = min_l (sum_queries alpha(l) - ln delta) / l`` with alpha from :func:`logmgf_2017` at
    ``eps = 2 gamma``; the data-independent epsilon uses q = 1 for every query. With
    ``smooth_sensitivity``, also ``sum_queries SS(l) / l``: the smoothed sensitivity of the epsilon at
    each moment; the 2017 recipe releases it with Laplace noise of scale ``2 SS / eps'``,
    ``eps' = 2 beta ln(1/delta)`` (Nissim et al. 2007, Corollary 2.4).
    """
    gamma = check_positive("gamma", gamma)
    delta = check_delta(delta)
    moments = _check_moments(moments)
    votes = check_votes(votes)
    q = _q_noisy_max(votes, gamma)
    log_moments = logmgf_2017(q, 2.0 * gamma, moments).sum(axis=0)
    eps_per_moment = (log_moments - math.log(delta)) / moments
    index = int(np.argmin(eps_per_moment))
    independent = votes.shape[0] * logmgf_2017(np.array([1.0]), 2.0 * gamma, moments)[0]
    eps_independent = (independent - math.log(delta)) / moments
    index_independent = int(np.argmin(eps_independent))
    sensitivity = None
    if smooth_sensitivity:
        sensitivity = smoothed_sensitivity_2017(votes, gamma, moments, beta).sum(axis=0) / moments
    return MomentsAnalysis2017(
        gamma=gamma,
        delta=delta,
        moments=moments,
        log_moments=log_moments,
        epsilon_per_moment=eps_per_moment,
        epsilon=float(eps_per_moment[index]),
        moment=float(moments[index]),
        data_independent_epsilon=float(eps_independent[index_independent]),
        data_independent_moment=float(moments[index_independent]),
        smoothed_sensitivity=sensitivity,
        beta=beta,
    )
