"""What one query of the individual-voter aggregator costs, in Renyi DP (proofs in docs/voters.md).

Per query, on two independent Poisson samples of individuals (rate ``q`` each):

* the screen: ``max_j h_j(S1) + N_Z(0, sigma1^2) >= T``; ``max_j h_j`` moves by at most 1 when one
  individual joins or leaves the sample, so on the sample it is ``(a, a / (2 sigma1^2))``-RDP;
* the answer, only when the screen passed: ``argmax_j (h_j(S2) + N_Z(0, sigma2^2))``; the histogram
  moves by at most ``sqrt(2)`` in L2, so on the sample it is ``(a, a / sigma2^2)``-RDP.

Each runs on its own sample, so each is a Poisson-subsampled mechanism by itself
(:func:`pate.accounting.subsampled.rdp_poisson_subsampled`, valid for discrete noise), and the answer
runs or not as a function of the screen's released bit alone: adaptive composition charges the
answer's cost only on answered queries.

Two bounds for each step. ``rdp_voters_*`` use the general Zhu-Wang bound
(:func:`~pate.accounting.subsampled.rdp_poisson_subsampled`), valid for any base mechanism; it keeps a
term of order ``q^3`` however large the noise (about ``2 C(a, 3) q^3 / (a - 1)`` per query), which at
``q = 0.05`` multiplies the epsilon of many queries several times. ``rdp_voters_*_numerical`` sum the
worst-case pair of these discrete Gaussian steps directly (joint convexity reduces every sample to one
pair; docs/voters.md); they are never above the general bound and match the sampled Gaussian within
a few percent at large noise.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import logsumexp

from pate.accounting._numerics import check_orders
from pate.accounting.subsampled import check_rate, rdp_poisson_subsampled
from pate.errors import PateError

__all__ = [
    "rdp_voters_answer",
    "rdp_voters_answer_numerical",
    "rdp_voters_query",
    "rdp_voters_query_numerical",
    "rdp_voters_run",
    "rdp_voters_screen",
    "rdp_voters_screen_numerical",
]


def check_positive(name: str, value: float) -> float:
    """``value`` as a finite float > 0, else a PateError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PateError(f"`{name}` is {value!r}, expected a number > 0")
    if not np.isfinite(value) or value <= 0:
        raise PateError(f"`{name}` is {value!r}, expected a finite number > 0")
    return float(value)


def rdp_voters_screen(rate: float, sigma1: float, orders: np.ndarray) -> np.ndarray:
    """RDP at ``orders`` of one screen on a Poisson sample at ``rate`` (threshold noise ``sigma1``)."""
    sigma1 = check_positive("sigma1", sigma1)
    return rdp_poisson_subsampled(
        check_rate(rate), lambda a: np.asarray(a) / (2.0 * sigma1**2), check_orders(orders)
    )


def rdp_voters_answer(rate: float, sigma2: float, orders: np.ndarray) -> np.ndarray:
    """RDP at ``orders`` of one noisy argmax on a Poisson sample at ``rate`` (vote noise ``sigma2``)."""
    sigma2 = check_positive("sigma2", sigma2)
    return rdp_poisson_subsampled(
        check_rate(rate), lambda a: np.asarray(a) / sigma2**2, check_orders(orders)
    )


def rdp_voters_query(
    rate: float, sigma1: float, sigma2: float, answered: bool, orders: np.ndarray
) -> np.ndarray:
    """The RDP curve one query charges: the screen's, plus the answer's when ``answered``."""
    screen = rdp_voters_screen(rate, sigma1, orders)
    if not answered:
        return screen
    return screen + rdp_voters_answer(rate, sigma2, orders)


def rdp_voters_run(
    rate: float, sigma1: float, sigma2: float, queries: int, answered: int, orders: np.ndarray
) -> np.ndarray:
    """The curve of ``queries`` screened queries of which ``answered`` were answered (composition)."""
    for name, value in (("queries", queries), ("answered", answered)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise PateError(f"`{name}` is {value!r}, expected a non-negative integer")
    if answered > queries:
        raise PateError(f"`answered` is {answered}, expected at most `queries` ({queries})")
    return queries * rdp_voters_screen(rate, sigma1, orders) + answered * rdp_voters_answer(
        rate, sigma2, orders
    )


# ----------------------------------------------------------------------------------------------------
# A numerical bound for exactly these two discrete Gaussian steps (docs/voters.md, "A tighter bound")

#: Orders above this get the base mechanism's RDP (always valid) instead of the summed value.
LARGEST_NUMERICAL_ORDER = 2_000.0


def _log_discrete_gaussian(sigma: float, support: np.ndarray) -> np.ndarray:
    log_weights = -(support.astype(np.float64) ** 2) / (2.0 * sigma**2)
    return log_weights - logsumexp(log_weights)


def _worst_pair_rdp(
    log_q: np.ndarray, log_ratio: np.ndarray, rate: float, orders: np.ndarray
) -> np.ndarray:
    """``max(D_a(P || Q), D_a(Q || P))`` for ``P = (1 - rate) Q + rate Q'`` where ``log_ratio`` is
    ``ln Q'/Q`` on the support of ``Q`` (given as ``log_q``), at each order, with a float margin."""
    # ln r(w), r = (1 - rate) + rate * Q'/Q, without losing digits when rate * (Q'/Q - 1) is small.
    with np.errstate(over="ignore"):
        log_r = np.where(
            log_ratio < 1.0,
            np.log1p(rate * np.expm1(np.minimum(log_ratio, 1.0))),
            np.logaddexp(np.log1p(-rate), np.log(rate) + log_ratio),
        )
    eps = np.finfo(float).eps
    out = np.empty(orders.size)
    for i, order in enumerate(orders):
        worst = 0.0
        for power in (order, 1.0 - order):
            # sum_w Q(w) (r(w)^power - 1), then ln(1 + that): first-order terms cancel exactly. The
            # positive and negative terms are summed apart, in log space (they may overflow).
            x = power * log_r
            with np.errstate(divide="ignore"):
                log_abs = log_q + np.where(
                    x > 0, x + np.log1p(-np.exp(-np.abs(x))), np.log(-np.expm1(np.minimum(x, 0.0)))
                )
            up = float(logsumexp(log_abs[x > 0])) if np.any(x > 0) else -np.inf
            down = float(logsumexp(log_abs[x < 0])) if np.any(x < 0) else -np.inf
            if up < 30.0:
                total = np.exp(up) - np.exp(down)
                margin = 64 * eps * (np.exp(up) + np.exp(down) + 1.0)
                value = np.log1p(total + margin)
            else:  # ln(e^up - e^down + 1), with a relative margin
                value = up + np.log1p(np.exp(-up) - np.exp(down - up)) + 64 * eps * up
            if not np.isfinite(value):
                raise PateError(f"numerical RDP at order {order} is {value}, expected a number")
            worst = max(worst, value / (order - 1.0))
        out[i] = worst
    return out


def _support(sigma: float, reach: float) -> np.ndarray:
    width = int(np.ceil(40.0 * sigma + 40.0))
    return np.arange(-width, int(np.ceil(reach)) + width + 1)


def rdp_voters_screen_numerical(rate: float, sigma1: float, orders: np.ndarray) -> np.ndarray:
    """The screen's Poisson-subsampled RDP computed for the discrete Gaussian itself.

    By joint convexity the worst case over samples is one pair ``Q = N_Z(c, sigma1^2)``,
    ``P = (1 - q) Q + q N_Z(c + 1, sigma1^2)`` (the offset moves by at most 1), both directions, and
    translation invariance on the integers makes it ``c = 0``; the divergences are then sums over the
    integers, evaluated here (support to ``40 sigma`` past the summands' peak; orders above
    :data:`LARGEST_NUMERICAL_ORDER` get the unsampled ``a / (2 sigma1^2)``). Never above
    :func:`rdp_voters_screen`'s general bound (the minimum of both is returned).
    """
    orders = check_orders(orders)
    return np.array(
        _screen_numerical(check_rate(rate), check_positive("sigma1", sigma1), tuple(orders))
    )


def rdp_voters_answer_numerical(rate: float, sigma2: float, orders: np.ndarray) -> np.ndarray:
    """The answer's Poisson-subsampled RDP computed for the discrete Gaussian itself.

    The histogram moves by ``e_i - e_j`` or ``e_i`` (or not at all); the other classes' noise is the
    same on both sides and drops out. For ``e_i - e_j`` the likelihood ratio depends only on
    ``w = Z_i - Z_j`` (``ln Q'/Q = (w - 1) / sigma2^2``), whose law is the convolution of two
    ``N_Z(0, sigma2^2)``; for ``e_i`` it is the one-dimensional pair of the screen. The larger of the
    two, both directions, at every order (same conventions as :func:`rdp_voters_screen_numerical`);
    never above :func:`rdp_voters_answer`'s general bound.
    """
    orders = check_orders(orders)
    return np.array(
        _answer_numerical(check_rate(rate), check_positive("sigma2", sigma2), tuple(orders))
    )


@functools.lru_cache(maxsize=64)
def _screen_numerical(rate: float, sigma1: float, orders: tuple[float, ...]) -> tuple[float, ...]:
    """The summed screen bound (cached by rate, sigma and orders)."""
    orders = np.array(orders)
    general = rdp_voters_screen(rate, sigma1, orders)
    summed = orders <= LARGEST_NUMERICAL_ORDER
    if not summed.any() or rate == 1.0:
        return tuple(general)
    support = _support(sigma1, orders[summed].max())
    log_q = _log_discrete_gaussian(sigma1, support)
    log_ratio = (2.0 * support - 1.0) / (2.0 * sigma1**2)
    result = general.copy()
    result[summed] = np.minimum(
        general[summed], _worst_pair_rdp(log_q, log_ratio, rate, orders[summed])
    )
    return tuple(result)


@functools.lru_cache(maxsize=64)
def _answer_numerical(rate: float, sigma2: float, orders: tuple[float, ...]) -> tuple[float, ...]:
    """The summed answer bound (cached)."""
    orders = np.array(orders)
    general = rdp_voters_answer(rate, sigma2, orders)
    summed = orders <= LARGEST_NUMERICAL_ORDER
    if not summed.any() or rate == 1.0:
        return tuple(general)
    top = orders[summed].max()
    single = _support(sigma2, top)
    log_single = _log_discrete_gaussian(sigma2, single)
    one_vote = _worst_pair_rdp(
        log_single, (2.0 * single - 1.0) / (2.0 * sigma2**2), rate, orders[summed]
    )
    # The law of w = Z_i - Z_j in closed form, in log space: sum_x N(x) N(x - w) =
    # exp(-w^2 / (4 sigma^2)) * sum_x exp(-(x - w/2)^2 / sigma^2) / theta^2, where the sum depends only
    # on the parity of w and theta = sum_x exp(-x^2 / (2 sigma^2)).
    width = int(np.ceil(80.0 * sigma2 + 80.0))
    w_all = np.arange(-width, int(np.ceil(2.0 * top)) + width + 1)
    x = np.arange(-width, width + 1, dtype=np.float64)
    log_theta = logsumexp(-(x**2) / (2.0 * sigma2**2))
    log_parity = np.array(
        [logsumexp(-(x**2) / sigma2**2), logsumexp(-((x - 0.5) ** 2) / sigma2**2)]
    )
    log_w = -(w_all.astype(np.float64) ** 2) / (4.0 * sigma2**2) + log_parity[w_all % 2]
    log_w = log_w - 2.0 * log_theta
    two_votes = _worst_pair_rdp(log_w, (w_all - 1.0) / sigma2**2, rate, orders[summed])
    result = general.copy()
    result[summed] = np.minimum(general[summed], np.maximum(one_vote, two_votes))
    return tuple(result)


def rdp_voters_query_numerical(
    rate: float, sigma1: float, sigma2: float, answered: bool, orders: np.ndarray
) -> np.ndarray:
    """:func:`rdp_voters_query` with the numerical bounds of the two steps."""
    screen = rdp_voters_screen_numerical(rate, sigma1, orders)
    if not answered:
        return screen
    return screen + rdp_voters_answer_numerical(rate, sigma2, orders)
