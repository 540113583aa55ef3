"""Tests of pate.accounting.discrete: the tails of the exact discrete noise, against brute-force sums and
Monte Carlo runs of the samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference_pmfs import gaussian_log_pmf, laplace_log_pmf
from scipy import stats
from scipy.special import logsumexp

from pate.accounting import discrete as discrete_module
from pate.accounting.discrete import (
    log_pr_answered_discrete,
    log_sf_discrete_gaussian,
    log_tail_difference_discrete_gaussian,
    log_tail_difference_discrete_laplace,
    logq_gnmax_discrete,
    logq_lnmax_discrete,
)
from pate.errors import PateError
from pate.noise import SeededNoise

# ----------------------------------------------------------------------------------------------------
# Reference pmfs


def brute_difference_tail(log_pmf, reach: int, gap: int) -> float:
    support = np.arange(-reach, reach + 1)
    lp = log_pmf(support)
    pairs = lp[:, None] + lp[None, :]
    difference = support[None, :] - support[:, None]
    return float(logsumexp(pairs[difference >= gap]))


@pytest.mark.parametrize("sigma", [0.4, 2.0, 9.5])
def test_gaussian_difference_tail_is_a_tight_upper_bound(sigma: float) -> None:
    gaps = np.array([0, 1, 2, 5, 13, 40])
    ours = log_tail_difference_discrete_gaussian(gaps, sigma)
    reach = int(40 * sigma) + 40
    for gap, value in zip(gaps, ours, strict=True):
        exact = brute_difference_tail(lambda x: gaussian_log_pmf(sigma, x), reach, int(gap))
        assert exact <= value <= exact + 1e-8 * (1 + abs(exact))


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_laplace_difference_tail_closed_form(scale: float) -> None:
    gaps = np.array([0, 1, 4, 20])
    ours = log_tail_difference_discrete_laplace(gaps, scale)
    reach = int(60 * scale) + 60
    for gap, value in zip(gaps, ours, strict=True):
        exact = brute_difference_tail(lambda x: laplace_log_pmf(scale, x), reach, int(gap))
        assert exact <= value <= exact + 1e-8 * (1 + abs(exact))
    # continuous limit: (2 + g) e^{-g} / 4 at h = g * scale
    big = log_tail_difference_discrete_laplace(np.array([3000]), 1000.0)[0]
    assert big == pytest.approx(math.log((2 + 3) * math.exp(-3) / 4), abs=2e-3)


def test_continuous_gaussian_tail_is_not_a_valid_bound_for_discrete_noise() -> None:
    """Why logq_gnmax_discrete exists: Phi_bar(g / (sqrt(2) sigma)) underestimates the discrete tail."""
    sigma = 20.0
    gaps = np.arange(0, 60)
    discrete = log_tail_difference_discrete_gaussian(gaps, sigma)
    continuous = stats.norm.logsf(gaps / (math.sqrt(2) * sigma))
    assert np.all(discrete > continuous)


@pytest.mark.parametrize("sigma", [0.7, 5.0, 40.0])
def test_log_sf_discrete_gaussian(sigma: float) -> None:
    offsets = np.array([-60, -3, -1, 0, 1, 2, 7, 50])
    ours = log_sf_discrete_gaussian(offsets, sigma)
    support = np.arange(-int(40 * sigma) - 120, int(40 * sigma) + 121)
    lp = gaussian_log_pmf(sigma, support)
    for x, value in zip(offsets, ours, strict=True):
        exact = float(logsumexp(lp[support >= x]))
        assert exact - 1e-15 <= value <= exact + 1e-8 * (1 + abs(exact))
    assert ours[3] > math.log(0.5)  # Pr[Z >= 0] > 1/2: ties have mass
    assert np.all(np.diff(ours) <= 0)


def monte_carlo_error_rate(votes: np.ndarray, draw, trials: int) -> float:
    noisy = votes[None, :] + draw((trials, votes.size))
    return float(np.mean(np.argmax(noisy, axis=1) != np.argmax(votes)))


@pytest.mark.parametrize("votes", [[12, 8], [8, 12], [6, 6]])
def test_logq_gnmax_discrete_is_exact_for_two_classes(votes: list[int]) -> None:
    votes_array = np.array(votes)
    sigma, trials = 4.0, 80_000
    q = math.exp(logq_gnmax_discrete(votes_array[None, :], sigma)[0])
    rate = monte_carlo_error_rate(
        votes_array, lambda size: SeededNoise(41).discrete_gaussian(sigma, size), trials
    )
    assert abs(rate - q) < 5 * math.sqrt(q * (1 - q) / trials)


def test_logq_gnmax_discrete_bounds_three_classes_and_is_capped() -> None:
    votes = np.array([[3, 9, 7]])
    q = math.exp(logq_gnmax_discrete(votes, 3.0)[0])
    rate = monte_carlo_error_rate(
        votes[0], lambda size: SeededNoise(42).discrete_gaussian(3.0, size), 50_000
    )
    assert rate <= q < 1.3 * rate  # the union bound counts double wins twice
    flat = logq_gnmax_discrete(np.array([[5, 5, 5], [100, 0, 0]]), 1000.0)
    assert flat[0] == pytest.approx(math.log(2 / 3))
    assert flat[1] == pytest.approx(math.log(2 / 3))
    # strong consensus: far below the continuous-formula scale, and finite
    strong = logq_gnmax_discrete(np.array([[240, 2, 1, 1, 1, 1, 1, 1, 1, 1]]), 20.0)[0]
    assert -40 < strong < -30


@pytest.mark.parametrize("votes", [[10, 7], [7, 10]])
def test_logq_lnmax_discrete_is_exact_for_two_classes(votes: list[int]) -> None:
    votes_array = np.array(votes)
    scale, trials = 3.0, 80_000
    q = math.exp(logq_lnmax_discrete(votes_array[None, :], scale)[0])
    rate = monte_carlo_error_rate(
        votes_array, lambda size: SeededNoise(43).discrete_laplace(scale, size), trials
    )
    assert abs(rate - q) < 5 * math.sqrt(q * (1 - q) / trials)


def test_logq_rejects_bad_votes() -> None:
    with pytest.raises(PateError, match="votes has shape"):
        logq_gnmax_discrete(np.array([1, 2, 3]), 1.0)
    with pytest.raises(PateError, match="dtype"):
        logq_gnmax_discrete(np.array([[1.5, 2.0]]), 1.0)
    assert discrete_module._table_size(3) == 256 and discrete_module._table_size(300) == 512


def test_log_pr_answered_discrete_is_both_tails_of_the_check() -> None:
    offsets = np.array([-4, 0, 1, 6])
    log_answered, log_rejected = log_pr_answered_discrete(offsets, 3.0)
    assert np.array_equal(log_answered, log_sf_discrete_gaussian(offsets, 3.0))
    assert np.array_equal(log_rejected, log_sf_discrete_gaussian(1 - offsets, 3.0))
    total = np.exp(log_answered) + np.exp(log_rejected)
    assert total == pytest.approx(np.ones(offsets.size), abs=1e-8)
