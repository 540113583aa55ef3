"""The Poisson-subsampled RDP bound: dp_accounting's sampled Gaussian, and exact divergences of a
discrete Gaussian count on a Poisson sample, computed by brute force in both directions."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from scipy.special import logsumexp

from pate.accounting.orders import DEFAULT_ORDERS, PAPER_ORDERS
from pate.accounting.subsampled import rdp_poisson_gaussian_tight, rdp_poisson_subsampled
from pate.errors import PateError


def _dp_accounting(rate: float, noise_multiplier: float, orders: np.ndarray) -> np.ndarray:
    logging.getLogger("absl").setLevel(logging.ERROR)  # its warnings on orders it cannot sum
    accountant = rdp_privacy_accountant.RdpAccountant(orders=list(orders))
    accountant.compose(
        dp_event.PoissonSampledDpEvent(rate, dp_event.GaussianDpEvent(noise_multiplier))
    )
    return np.asarray(accountant._rdp)


@pytest.mark.parametrize("rate,noise", [(0.01, 1.0), (0.05, 4.0), (0.2, 0.8), (0.5, 2.0)])
def test_the_sum_without_factor_three_is_dp_accountings_sampled_gaussian(rate, noise):
    """At integer orders the bracket with factor 1 is the exact sampled-Gaussian RDP (MTZ 2019)."""
    orders = np.arange(2.0, 257.0)
    ours = rdp_poisson_gaussian_tight(rate, noise, orders)
    np.testing.assert_allclose(ours, _dp_accounting(rate, noise, orders), rtol=1e-9)


@pytest.mark.parametrize("orders", [DEFAULT_ORDERS, PAPER_ORDERS], ids=["default", "paper"])
@pytest.mark.parametrize("rate,noise", [(0.01, 1.0), (0.05, 4.0), (0.3, 1.5)])
def test_general_bound_is_above_the_exact_value_and_below_the_unsampled_one(orders, rate, noise):
    """Against dp_accounting at the integer orders of the list, where its value is exact. (Between
    integers it is an upper bound, not the exact value, and can exceed ours: at order 1.8, rate 0.05,
    noise 4, it gives 1.643e-4 where quadrature of the divergence gives 1.450e-4 and ours 1.612e-4.)"""
    ours = rdp_poisson_subsampled(rate, lambda a: a / (2 * noise**2), orders)
    integer = (orders == np.round(orders)) & (orders <= 1000)
    assert integer.sum() >= 90
    exact = _dp_accounting(rate, noise, orders[integer])
    assert np.all(ours[integer] >= exact * (1 - 1e-12))
    assert np.all(ours <= orders / (2 * noise**2) * (1 + 1e-12))
    rising = ours[np.argsort(orders, kind="stable")]  # RDP never falls with the order
    assert np.all(np.diff(rising) >= -1e-15 * rising[1:])
    # Subsampling pays: at small orders a small rate divides the cost by far more than 1/rate.
    small = orders <= 8
    assert np.all(ours[small] < orders[small] / (2 * noise**2) * min(1.0, 10 * rate))


def test_rate_one_is_the_base_mechanism():
    orders = np.array([1.5, 2.0, 3.5, 40.0])
    np.testing.assert_allclose(
        rdp_poisson_subsampled(1.0, lambda a: a / 8.0, orders), orders / 8.0, rtol=1e-12
    )


def _log_discrete_gaussian(center: int, sigma: float, support: np.ndarray) -> np.ndarray:
    log_weights = -((support - center) ** 2) / (2 * sigma**2)
    return log_weights - logsumexp(log_weights)


def _renyi(log_p: np.ndarray, log_q: np.ndarray, order: float) -> float:
    return float(logsumexp(order * log_p + (1 - order) * log_q) / (order - 1))


@pytest.mark.parametrize("sigma", [0.7, 2.0, 6.0])
@pytest.mark.parametrize("rate", [0.02, 0.2, 0.7])
def test_bound_holds_for_a_discrete_gaussian_count_in_both_directions(sigma, rate):
    """A count plus discrete Gaussian noise (sensitivity 1, RDP a / (2 sigma^2), Canonne, Kamath and
    Steinke 2020) on a Poisson sample: the dataset without the individual gives N_Z(0, sigma^2); with
    it, the mixture (1 - rate) N_Z(0) + rate N_Z(1). Every order's exact divergence, both ways, is
    below the bound."""
    support = np.arange(-40 * int(np.ceil(sigma)) - 40, 40 * int(np.ceil(sigma)) + 41)
    without = _log_discrete_gaussian(0, sigma, support)
    with_one = np.logaddexp(
        np.log1p(-rate) + without, np.log(rate) + _log_discrete_gaussian(1, sigma, support)
    )
    orders = np.array([1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.5, 10.0, 16.0, 31.0])
    bound = rdp_poisson_subsampled(rate, lambda a: a / (2 * sigma**2), orders)
    for order, limit in zip(orders, bound, strict=True):
        forward = _renyi(with_one, without, order)
        backward = _renyi(without, with_one, order)
        assert max(forward, backward) <= limit * (1 + 1e-9) + 1e-12, (order, forward, backward)


@pytest.mark.parametrize("rate", [0, -0.1, 1.5, float("nan"), "x"])
def test_a_rate_outside_zero_one_is_refused(rate):
    with pytest.raises(PateError, match="`rate`"):
        rdp_poisson_subsampled(rate, lambda a: a, np.array([2.0]))


def test_a_base_curve_that_is_not_an_rdp_curve_is_refused():
    with pytest.raises(PateError, match="base_rdp"):
        rdp_poisson_subsampled(0.1, lambda a: -a, np.array([2.0]))
    with pytest.raises(PateError, match="base_rdp"):
        rdp_poisson_subsampled(0.1, lambda a: np.array([1.0]), np.array([2.0, 3.0]))
