"""Renyi DP of a mechanism run on a Poisson sample of individuals (Zhu and Wang, ICML 2019).

The individual-voter aggregator draws, per query, a fresh Poisson sample of individuals: each is in
the sample independently with probability ``rate``, from the OS CSPRNG. The mechanism then runs on the
sample only. This module bounds the RDP of that composite, ``M o PoissonSample``, under adding or
removing one individual, from the RDP curve ``eps(l)`` of ``M`` itself at integer orders ``l``.

Bound used (Zhu and Wang, "Poisson subsampled Renyi differential privacy", ICML 2019, Theorem 6, the
general upper bound; it assumes nothing of ``M`` beyond its RDP curve, so it holds for discrete
Gaussian noise as for any other): for an integer order ``a >= 2`` and rate ``g``,

    (a - 1) * eps_sub(a) <= log[ (1-g)^(a-1) (1 + (a-1) g)
                                 + C(a,2) g^2 (1-g)^(a-2) e^{eps(2)}
                                 + 3 sum_{l=3..a} C(a,l) g^l (1-g)^(a-l) e^{(l-1) eps(l)} ].

For a fractional order the bound interpolates ``(a - 1) * eps_sub(a)`` linearly between the two
neighbouring integers. That is valid because ``(a - 1) D_a(P || Q)`` is convex in ``a`` for any pair of
distributions (van Erven and Harremoes 2014, Corollary 2), so the chord over the integers bounds it,
and the bound of each endpoint bounds the chord; below 2 the left end is ``a = 1``, where the product
is 0. Finally the subsampled mechanism is never worse than ``M`` (Renyi divergence is jointly
quasi-convex), so the result is the minimum of the bound and ``eps(a)``.

:func:`rdp_poisson_gaussian_tight` is the same sum without the factor 3, which is exact for the
continuous Gaussian mechanism (Mironov, Talwar and Zhang 2019): it exists to cross-check the
arithmetic against ``dp_accounting`` and to measure what the factor 3 costs; the pipeline charges
:func:`rdp_poisson_subsampled`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import gammaln, logsumexp

from pate.accounting._numerics import check_orders, check_positive
from pate.errors import PateError

#: Integer orders above this are not summed term by term (the sum has one term per integer up to the
#: order); their bound is the base mechanism's RDP, which is always valid.
LARGEST_SUMMED_ORDER = 20_000


def check_rate(rate: float) -> float:
    """Return the sampling rate as a float in (0, 1]."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise PateError(f"`rate` is {rate!r}, expected a sampling probability in (0, 1]") from None
    if not (0.0 < value <= 1.0):
        raise PateError(f"`rate` is {rate!r}, expected a sampling probability in (0, 1]")
    return value


def _log_sum_at_integer(order: int, rate: float, base: np.ndarray, factor: float) -> float:
    """``log`` of the bracket of Theorem 6 at integer ``order`` (``base[l]`` = eps(l), l >= 2)."""
    if rate == 1.0:
        return (order - 1) * float(base[order])
    log_rate, log_keep = np.log(rate), np.log1p(-rate)
    ell = np.arange(2, order + 1, dtype=np.float64)
    log_binom = gammaln(order + 1) - gammaln(ell + 1) - gammaln(order - ell + 1)
    terms = log_binom + ell * log_rate + (order - ell) * log_keep + (ell - 1) * base[2 : order + 1]
    terms[1:] += np.log(factor)  # l >= 3
    head = (order - 1) * log_keep + np.log1p((order - 1) * rate)
    return float(logsumexp(np.concatenate(([head], terms))))


def _subsampled_curve(
    rate: float, base_rdp: Callable[[np.ndarray], np.ndarray], orders: np.ndarray, factor: float
) -> np.ndarray:
    rate = check_rate(rate)
    orders = check_orders(orders)
    base_at_orders = np.asarray(base_rdp(orders), dtype=np.float64)
    if base_at_orders.shape != orders.shape or np.any(~(base_at_orders >= 0)):
        raise PateError("`base_rdp` must return one RDP value >= 0 per order")
    summed = orders <= LARGEST_SUMMED_ORDER
    top = int(np.ceil(orders[summed].max())) if summed.any() else 2
    top = max(top, 2)
    base = np.zeros(top + 2)
    base[2:] = np.asarray(base_rdp(np.arange(2, top + 2, dtype=np.float64)), dtype=np.float64)
    if np.any(~(base[2:] >= 0)) or np.any(~np.isfinite(base[2:])):
        raise PateError("`base_rdp` must return finite RDP values >= 0")
    scaled: dict[int, float] = {1: 0.0}  # (a - 1) * bound at the integers a needed

    def at(order: int) -> float:
        if order not in scaled:
            own = (order - 1) * base[order]
            scaled[order] = min(_log_sum_at_integer(order, rate, base, factor), own)
        return scaled[order]

    result = base_at_orders.copy()
    for i in np.flatnonzero(summed):
        order = orders[i]
        low = int(np.floor(order))
        t = order - low
        chord = at(low) if t == 0 else (1 - t) * at(low) + t * at(low + 1)
        result[i] = min(chord / (order - 1), base_at_orders[i])
    return result


def rdp_poisson_subsampled(
    rate: float, base_rdp: Callable[[np.ndarray], np.ndarray], orders: np.ndarray
) -> np.ndarray:
    """RDP at ``orders`` of a mechanism with RDP curve ``base_rdp`` run on a Poisson sample.

    Guarantee: if ``M`` is (l, base_rdp(l))-RDP for adding or removing one individual at every integer
    ``l >= 2``, then ``M`` applied to a sample that holds each individual independently with
    probability ``rate`` is (a, result)-RDP at each order ``a`` of ``orders``, for adding or removing
    one individual (Zhu and Wang 2019, Theorem 6; fractional orders by convexity; see the module
    docstring). ``base_rdp`` takes an array of orders and returns an array of RDP values.

    >>> gauss = lambda a: a / (2 * 4.0**2)
    >>> bound = rdp_poisson_subsampled(0.01, gauss, np.array([2.0, 8.0, 32.0]))
    >>> bool(np.all(bound < gauss(np.array([2.0, 8.0, 32.0])) / 100))
    True
    """
    return _subsampled_curve(rate, base_rdp, orders, factor=3.0)


def rdp_poisson_gaussian_tight(
    rate: float, noise_multiplier: float, orders: np.ndarray
) -> np.ndarray:
    """Exact RDP at integer ``orders`` of the Poisson-sampled (continuous) Gaussian mechanism.

    The sum of :func:`rdp_poisson_subsampled` without its factor 3, with ``eps(l) = l / (2 s^2)``: the
    sampled Gaussian mechanism's exact value (Mironov, Talwar and Zhang 2019), for cross-checks only.
    Fractional orders get the chord between integers (an upper bound, not the exact value).
    """
    noise_multiplier = check_positive("noise_multiplier", noise_multiplier)
    return _subsampled_curve(
        rate, lambda a: np.asarray(a) / (2.0 * noise_multiplier**2), orders, factor=1.0
    )
