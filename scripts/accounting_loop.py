"""A straightforward per-query implementation of the PATE analysis, one histogram at a time.

Written in the style of the papers' analysis scripts (scalar math, a Python loop over queries, and for
smooth sensitivity a step-by-step walk over neighbouring histograms). It is slow on purpose: it is the
oracle that ``tests/test_accounting_loop.py`` checks ``pate.accounting`` against, and the baseline of
``scripts/bench_accounting.py``. It is not used by the pipeline.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats


def log_sum(values) -> float:
    largest = max(values)
    if largest == -math.inf:
        return -math.inf
    return largest + math.log(sum(math.exp(v - largest) for v in values))


def log_one_minus_exp(x: float) -> float:
    if x < -1:
        return math.log1p(-math.exp(x))
    if x < 0:
        return math.log(-math.expm1(x))
    return -math.inf


def logq_gaussian(counts, sigma: float) -> float:
    counts = np.asarray(counts)
    winner = int(np.argmax(counts))
    others = [counts[winner] - counts[j] for j in range(len(counts)) if j != winner]
    terms = stats.norm.logsf(np.array(others, dtype=float), scale=math.sqrt(2 * sigma**2))
    return min(log_sum(list(terms)), math.log(1 - 1 / len(counts)))


def rdp_gaussian(logq: float, sigma: float, orders: np.ndarray) -> np.ndarray:
    orders = np.asarray(orders, dtype=float)
    if logq == -math.inf:
        return np.zeros(len(orders))
    variance = sigma**2
    result = orders / variance
    mu2 = math.sqrt(variance * -logq)
    mu1 = mu2 + 1
    if mu2 <= 1:
        return result
    eps1, eps2 = mu1 / variance, mu2 / variance
    limit = (mu2 - 1) * eps2 - mu2 * (math.log(1 + 1 / (mu1 - 1)) + math.log(1 + 1 / (mu2 - 1)))
    if not (logq <= limit and -logq > eps2):
        return result
    log1q = log_one_minus_exp(logq)
    log_a = (orders - 1) * (log1q - log_one_minus_exp((logq + eps2) * (1 - 1 / mu2)))
    log_b = (orders - 1) * (eps1 - logq / (mu1 - 1))
    dependent = np.logaddexp(log1q + log_a, logq + log_b) / (orders - 1)
    below = orders < mu1
    result[below] = np.minimum(result, dependent)[below]
    return result


def logpr_answered(counts, threshold: float, sigma1: float) -> float:
    return float(stats.norm.logsf(threshold - round(float(max(counts))), scale=sigma1))


def rdp_threshold(logpr: float, sigma1: float, orders: np.ndarray) -> np.ndarray:
    logq = min(logpr, log_one_minus_exp(logpr))
    return rdp_gaussian(logq, 2**0.5 * sigma1, orders)


def logq_laplace(counts, scale: float) -> float:
    counts = np.asarray(counts)
    winner = int(np.argmax(counts))
    terms = []
    for j in range(len(counts)):
        if j != winner:
            c = (counts[j] - counts[winner]) / scale
            terms.append(math.log(2 - c) + math.log(0.25) + c)
    return min(log_sum(terms), math.log(1 - 1 / len(counts)))


def rdp_pure(logq: float, eps: float, orders: np.ndarray) -> np.ndarray:
    orders = np.asarray(orders, dtype=float)
    q = math.exp(logq)
    result = np.minimum(0.5 * eps * eps * orders, eps)
    if q <= 1 / (math.exp(eps) + 1):
        one = math.log1p(-q) + (math.log1p(-q) - log_one_minus_exp(eps + logq)) * (orders - 1)
        two = logq + eps * (orders - 1)
        result = np.minimum(result, np.logaddexp(one, two) / (orders - 1))
    return result


def eps_classic(rdp: np.ndarray, orders: np.ndarray, delta: float) -> tuple[float, float]:
    eps = np.asarray(rdp) - math.log(delta) / (np.asarray(orders) - 1)
    best = int(np.argmin(eps))
    return float(eps[best]), float(orders[best])


# ----------------------------------------------------------------------------------------------------
# Whole analyses, one query at a time


def analyze_gnmax(votes: np.ndarray, sigma: float, orders: np.ndarray) -> np.ndarray:
    total = np.zeros(len(orders))
    for counts in votes:
        total += rdp_gaussian(logq_gaussian(counts, sigma), sigma, orders)
    return total


def analyze_confident(
    votes: np.ndarray, threshold: float, sigma1: float, sigma2: float, orders: np.ndarray
) -> tuple[np.ndarray, float]:
    total = np.zeros(len(orders))
    answered = 0.0
    for counts in votes:
        logpr = logpr_answered(counts, threshold, sigma1)
        step1 = rdp_threshold(logpr, sigma1, orders)
        step2 = rdp_gaussian(logq_gaussian(counts, sigma2), sigma2, orders)
        total += step1 + math.exp(logpr) * step2
        answered += math.exp(logpr)
    return total, answered


# ----------------------------------------------------------------------------------------------------
# Smooth sensitivity, one histogram and one step at a time

_logq0_cache: dict = {}
_threshold_cache: dict = {}


def _dependent(sigma: float, logq: float, order: float) -> float:
    variance = sigma**2
    mu2 = sigma * math.sqrt(-logq)
    mu1 = mu2 + 1
    log1q = math.log1p(-math.exp(logq))
    log_a = (order - 1) * (log1q - math.log1p(-math.exp((logq + mu2 / variance) * (1 - 1 / mu2))))
    log_b = (order - 1) * (mu1 / variance - logq / (mu1 - 1))
    return float(np.logaddexp(log1q + log_a, logq + log_b)) / (order - 1)


def logq0(sigma: float, order: float) -> float:
    key = (sigma, order)
    if key not in _logq0_cache:
        independent = order / sigma**2
        upper = min(-((1 + 1 / sigma) ** 2), -(((order - 0.99) / sigma) ** 2), -1 / sigma**2)
        if _dependent(sigma, upper, order) - independent < 0:
            _logq0_cache[key] = upper
        else:
            lower = 2 * upper
            while _dependent(sigma, lower, order) - independent > 0:
                lower *= 1.5
            _logq0_cache[key] = optimize.brentq(
                lambda x: _dependent(sigma, x, order) - independent, lower, upper
            )
    return _logq0_cache[key]


def _bl(q: float, sigma: float, m: int) -> float:
    return (m - 1) / 2 * special.erfc(special.erfcinv(2 * q / (m - 1)) + 1 / sigma)


def _bu(q: float, sigma: float, m: int) -> float:
    return min(1.0, (m - 1) / 2 * special.erfc(special.erfcinv(2 * q / (m - 1)) - 1 / sigma))


def _rdp_curve(sigma: float, logq: float, order: float) -> float:
    if logq == -math.inf:
        return 0.0
    if logq >= logq0(sigma, order):
        return order / sigma**2
    return _dependent(sigma, logq, order)


def _safe_log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _local(logq: float, sigma: float, m: int, order: float) -> float:
    q0 = logq0(sigma, order)
    q1 = math.log(_bl(math.exp(q0), sigma, m))
    if q1 <= logq <= q0:
        logq = q1
    here = _rdp_curve(sigma, logq, order)
    up = _rdp_curve(sigma, _safe_log(_bu(math.exp(logq), sigma, m)), order)
    down = _rdp_curve(sigma, _safe_log(_bl(math.exp(logq), sigma, m)), order)
    return max(up - here, here - down)


def local_sensitivity_gnmax(counts, num_teachers: int, sigma: float, order: float) -> np.ndarray:
    m = len(counts)
    q0 = logq0(sigma, order)
    q1 = math.log(_bl(math.exp(q0), sigma, m))
    logq = logq_gaussian(np.asarray(counts), sigma)
    result = np.full(num_teachers, _local(q1, sigma, m, order))
    if q1 <= logq <= q0:
        return result
    state = sorted((int(c) for c in counts), reverse=True)
    result[0] = _local(logq, sigma, m, order)
    distance = 0
    left = logq > q0
    while (left and logq > q0 and state[1] > 0) or (not left and logq < q1):
        distance += 1
        if distance >= num_teachers:
            break
        if left:
            state[0] += 1
            state[1] -= 1
            i = 1
            while i < m - 1 and state[i] < state[i + 1]:
                state[i], state[i + 1] = state[i + 1], state[i]
                i += 1
        else:
            state[0] -= 1
            state[1] += 1
        logq = logq_gaussian(np.array(state), sigma)
        result[distance] = _local(logq, sigma, m, order)
    return result


def local_sensitivity_threshold(
    counts, num_teachers: int, threshold: float, sigma1: float, order: float
) -> np.ndarray:
    key = (num_teachers, threshold, sigma1, order)
    if key not in _threshold_cache:  # computed once per setting, as the papers' script caches it
        _threshold_cache[key] = [
            rdp_threshold(
                float(stats.norm.logsf(threshold - v, scale=sigma1)), sigma1, np.array([order])
            )[0]
            for v in range(num_teachers + 1)
        ]
    rdp = _threshold_cache[key]

    def at(v: int) -> float:
        steps = []
        if v > 0:
            steps.append(abs(rdp[v - 1] - rdp[v]))
        if v < num_teachers:
            steps.append(abs(rdp[v + 1] - rdp[v]))
        return max(steps)

    top = int(round(float(max(counts))))
    result = np.zeros(num_teachers)
    for d in range(max(top, num_teachers - top)):
        candidates = []
        if top + d <= num_teachers:
            candidates.append(at(top + d))
        if top - d >= 0:
            candidates.append(at(top - d))
        result[d] = max(candidates)
    return result


def smooth_sensitivity_search(
    votes: np.ndarray,
    num_teachers: int,
    threshold: float,
    sigma1: float,
    sigma2: float,
    order: float,
    include_threshold: bool,
) -> dict:
    """Expected RDP and local sensitivity summed over queries, then the search over beta."""
    rdp_total = 0.0
    ls_total = np.zeros(num_teachers)
    for counts in votes:
        logpr = logpr_answered(counts, threshold, sigma1)
        pr = math.exp(logpr)
        if include_threshold:
            step1 = rdp_threshold(logpr, sigma1, np.array([order]))[0]
            ls_total += local_sensitivity_threshold(counts, num_teachers, threshold, sigma1, order)
        else:
            step1 = order / (2**0.5 * sigma1) ** 2
        step2 = rdp_gaussian(logq_gaussian(counts, sigma2), sigma2, np.array([order]))[0]
        rdp_total += step1 + pr * step2
        ls_total += pr * local_sensitivity_gnmax(counts, num_teachers, sigma2, order)
    best = (math.inf, None, None, None)
    for beta in np.arange(0.3 / order, 0.495 / order, 0.01 / order):
        ss = float(np.max(ls_total * np.exp(-beta * np.arange(num_teachers))))
        sigma_ss = (order * math.exp(2 * beta) / ss) ** (1 / 3)
        release = order * math.exp(2 * beta) / sigma_ss**2 + (
            -0.5 * math.log(1 - 2 * order * beta) + beta * order
        ) / (order - 1)
        cost = rdp_total + release + 2 * ss * sigma_ss
        if cost < best[0]:
            best = (cost, beta, ss, sigma_ss)
    return {
        "rdp": rdp_total,
        "ls": ls_total,
        "beta": best[1],
        "sensitivity": best[2],
        "noise_sigma": best[3],
    }


# ----------------------------------------------------------------------------------------------------
# PATE 2017


def q_noisy_max(counts, gamma: float) -> float:
    counts = np.asarray(counts)
    winner = int(np.argmax(counts))
    q = 0.0
    for j in range(len(counts)):
        if j != winner:
            gap = -gamma * (counts[j] - counts[winner])
            q += (gap + 2.0) / (4.0 * math.exp(gap))
    return min(q, 1.0 - 1.0 / len(counts))


def logmgf(q: float, eps: float, moment: float) -> float:
    log_t = eps * moment
    if q < 1 / (math.exp(eps) + 1) or (q < 0.5 and 1 - math.exp(eps) * q > 0):
        t = (1 - q) * ((1 - q) / (1 - math.exp(eps) * q)) ** moment + q * math.exp(eps * moment)
        log_t = math.log(t)
    return min(0.5 * eps * eps * moment * (moment + 1), log_t, eps * moment)


def _sens_2017(counts, gamma: float, moment: float, k: int) -> float:
    if 0.5 * gamma * moment > 1:
        return 0.0
    if counts[0] < counts[1] + k:
        return 0.0
    state = sorted((int(c) for c in counts), reverse=True)
    state[0] -= k
    state[1] += k
    before = logmgf(q_noisy_max(state, gamma), 2 * gamma, moment)
    state[0] -= 1
    state[1] += 1
    return logmgf(q_noisy_max(state, gamma), 2 * gamma, moment) - before


def smoothed_sens_2017(counts, gamma: float, moment: float, beta: float) -> float:
    k = 0
    best = _sens_2017(counts, gamma, moment, 0)
    while k < max(counts):
        k += 1
        value = _sens_2017(counts, gamma, moment, k)
        best = max(best, math.exp(-beta * k) * value)
        if value == 0.0:
            break
    return best
