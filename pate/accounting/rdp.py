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

import numpy as np

from pate.accounting._cores import (
    logpr_answered_core,
    logq_gaussian,
    logq_laplace,
    rdp_gaussian_core,
    rdp_pure_eps_core,
    rdp_threshold_core,
    threshold_variance,
)
from pate.accounting._numerics import (
    check_logs,
    check_orders,
    check_positive,
    check_threshold,
    check_votes,
)

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
    return logq_gaussian(votes, sigma)


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
    return rdp_gaussian_core(unique, sigma**2, orders)[inverse]


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
    logq = logq_gaussian(unanimous, sigma)
    dependent = rdp_gaussian_core(logq, sigma**2, orders)[0]
    return np.isclose(dependent, orders / sigma**2)


# ----------------------------------------------------------------------------------------------------
# The threshold step of Confident-GNMax and Interactive-GNMax


def logpr_answered(votes: np.ndarray, threshold: float, sigma1: float) -> np.ndarray:
    """``ln Pr[answered]`` of the threshold step, per query: ``ln Pr[round(max) + N(0, sigma1^2) >= T]``.

    ``max(votes)`` is rounded to the nearest integer, half to even (Python's ``round``), as in the papers'
    code; this is what makes Interactive-GNMax's fractional, student-discounted votes (votes minus
    baseline, possibly negative) fit the same analysis. Integer votes are unchanged.

    >>> round(float(logpr_answered(np.array([[200, 50]]), 200, 40.0)[0]), 6)
    -0.693147
    """
    sigma1 = check_positive("sigma1", sigma1)
    threshold = check_threshold(threshold)
    votes = check_votes(votes, allow_fractional=True)
    return logpr_answered_core(votes, threshold, sigma1)


def rdp_threshold_data_independent(sigma1: float, orders: np.ndarray) -> np.ndarray:
    """Data-independent RDP of the threshold step: ``order / (2 sigma1^2)``.

    Guarantee: max(votes) has sensitivity 1 under the one-individual relation, so adding N(0, sigma1^2) to
    it is the Gaussian mechanism, (order, order / (2 sigma1^2))-RDP (PATE 2018, Section 4.1).
    """
    sigma1 = check_positive("sigma1", sigma1)
    return check_orders(orders) / threshold_variance(sigma1)


def rdp_threshold(logpr: np.ndarray, sigma1: float, orders: np.ndarray) -> np.ndarray:
    """Data-dependent RDP of the threshold step per query, from ``ln Pr[answered]`` (Q,) -> (Q, O).

    The step's output is binary, so the role of q in Theorem 6 is played by the probability of the less
    likely outcome, ``min(p, 1 - p)``; the bound is GNMax's with sigma replaced by sqrt(2) sigma1.
    """
    sigma1 = check_positive("sigma1", sigma1)
    orders = check_orders(orders)
    logpr = check_logs("logpr", logpr)
    unique, inverse = np.unique(logpr, return_inverse=True)
    return rdp_threshold_core(unique, sigma1, orders)[inverse]


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
    logpr = logpr_answered_core(ends, check_threshold(threshold), sigma1)
    dependent = rdp_threshold_core(logpr, sigma1, orders)
    independent = orders / threshold_variance(sigma1)
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
    return logq_laplace(votes, scale)


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
    return rdp_pure_eps_core(unique, 2.0 / scale, orders)[inverse]
