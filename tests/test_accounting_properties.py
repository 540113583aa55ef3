"""Mathematical properties of the PATE bounds, and cross-checks with dp_accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from hypothesis import given, settings
from hypothesis import strategies as st

from pate.accounting import (
    DEFAULT_ORDERS,
    PAPER_ORDERS,
    analyze,
    check_gnss_conditions,
    epsilon_from_rdp,
    logmgf_2017,
    logpr_answered,
    logq_gnmax,
    logq_lnmax,
    order_at_edge,
    plan,
    rdp_gnmax,
    rdp_gnmax_data_independent,
    rdp_lnmax,
    rdp_lnmax_data_independent,
    rdp_threshold,
    rdp_threshold_data_independent,
)

ORDERS = PAPER_ORDERS


@st.composite
def histograms(draw, max_teachers: int = 400, max_classes: int = 20):
    teachers = draw(st.integers(1, max_teachers))
    classes = draw(st.integers(2, max_classes))
    cuts = sorted(
        draw(st.lists(st.integers(0, teachers), min_size=classes - 1, max_size=classes - 1))
    )
    counts = np.diff(np.concatenate([[0], cuts, [teachers]]))
    order = draw(st.permutations(range(classes)))
    return counts[list(order)]


sigmas = st.floats(0.5, 500.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(votes=histograms(), sigma=sigmas)
def test_gnmax_bound_between_zero_and_data_independent(votes, sigma):
    rdp = rdp_gnmax(logq_gnmax(votes[None], sigma), sigma, ORDERS)[0]
    assert np.all(rdp >= 0)
    assert np.all(rdp <= rdp_gnmax_data_independent(sigma, ORDERS))


@settings(max_examples=150, deadline=None)
@given(votes=histograms(), sigma=sigmas)
def test_gnmax_bound_monotone_in_the_vote_gap(votes, sigma):
    ranked = -np.sort(-votes)
    if ranked[1] == 0:
        return
    wider = ranked.copy()
    wider[0] += 1
    wider[1] -= 1
    narrow = rdp_gnmax(logq_gnmax(ranked[None], sigma), sigma, ORDERS)[0]
    wide = rdp_gnmax(logq_gnmax(wider[None], sigma), sigma, ORDERS)[0]
    assert np.all(wide <= narrow * (1 + 1e-12) + 1e-300)


@settings(max_examples=100, deadline=None)
@given(votes=histograms(), sigma=sigmas, factor=st.floats(1.01, 10.0))
def test_more_noise_means_larger_q_and_smaller_data_independent_cost(votes, sigma, factor):
    assert logq_gnmax(votes[None], sigma * factor)[0] >= logq_gnmax(votes[None], sigma)[0] - 1e-12
    assert np.all(
        rdp_gnmax_data_independent(sigma * factor, ORDERS)
        < rdp_gnmax_data_independent(sigma, ORDERS)
    )
    assert np.all(
        rdp_threshold_data_independent(sigma * factor, ORDERS)
        < rdp_threshold_data_independent(sigma, ORDERS)
    )
    assert np.all(
        rdp_lnmax_data_independent(sigma * factor, ORDERS)
        <= rdp_lnmax_data_independent(sigma, ORDERS)
    )
    assert logq_lnmax(votes[None], sigma * factor)[0] >= logq_lnmax(votes[None], sigma)[0] - 1e-12


@settings(max_examples=100, deadline=None)
@given(votes=histograms(), sigma1=sigmas, threshold=st.floats(0, 500))
def test_threshold_and_lnmax_bounds_never_exceed_data_independent(votes, sigma1, threshold):
    rdp = rdp_threshold(logpr_answered(votes[None], threshold, sigma1), sigma1, ORDERS)[0]
    assert np.all(rdp >= 0) and np.all(rdp <= rdp_threshold_data_independent(sigma1, ORDERS))
    scale = sigma1 / 10
    rdp = rdp_lnmax(logq_lnmax(votes[None], scale), scale, ORDERS)[0]
    assert np.all(rdp >= 0) and np.all(rdp <= rdp_lnmax_data_independent(scale, ORDERS))


def test_certain_answers_cost_nothing():
    assert np.all(rdp_gnmax(np.array([-np.inf]), 10.0, ORDERS) == 0)
    assert np.all(rdp_threshold(np.array([0.0, -np.inf]), 10.0, ORDERS) == 0)
    assert np.all(rdp_lnmax(np.array([-np.inf]), 10.0, ORDERS) == 0)
    # Unanimous votes with little noise: q ~ e^-6e6, and the bound is 0 at every order below
    # mu1 = sigma sqrt(-ln q) + 1 ~ 2500 (Theorem 6 does not reach further).
    votes = np.zeros((3, 10), dtype=int)
    votes[:, 0] = 5000
    report = analyze(votes, mechanism="gnmax", sigma=1.0, orders="paper")
    assert np.all(report.rdp_data_dependent == 0)
    assert report.data_dependent[0].epsilon == 0.0
    assert report.data_independent[0].epsilon > 10


def test_data_dependent_beats_data_independent_with_consensus():
    votes = np.array([[240, 2, 1, 1, 1, 1, 1, 1, 1, 1]] * 100)
    report = analyze(votes, mechanism="gnmax", sigma=20, conversion="classic", orders="paper")
    assert report.data_dependent[0].epsilon < report.data_independent[0].epsilon / 10


@settings(max_examples=60, deadline=None)
@given(
    scale=st.floats(1e-4, 10.0),
    deltas=st.lists(st.floats(1e-12, 0.5), min_size=2, max_size=2, unique=True),
    conversion=st.sampled_from(["classic", "improved"]),
)
def test_conversion_monotone_in_delta(scale, deltas, conversion):
    small, large = sorted(deltas)
    rdp = scale * DEFAULT_ORDERS
    eps_small = epsilon_from_rdp(rdp, DEFAULT_ORDERS, small, conversion=conversion)[0]
    eps_large = epsilon_from_rdp(rdp, DEFAULT_ORDERS, large, conversion=conversion)[0]
    assert eps_large <= eps_small


@settings(max_examples=60, deadline=None)
@given(scale=st.floats(1e-5, 10.0), delta=st.floats(1e-12, 0.5))
def test_improved_conversion_never_worse_than_classic(scale, delta):
    rdp = scale * DEFAULT_ORDERS
    improved = epsilon_from_rdp(rdp, DEFAULT_ORDERS, delta, conversion="improved")[0]
    classic = epsilon_from_rdp(rdp, DEFAULT_ORDERS, delta, conversion="classic")[0]
    assert improved <= classic


def test_improved_conversion_equals_dp_accounting():
    rng = np.random.default_rng(0)
    orders = DEFAULT_ORDERS[DEFAULT_ORDERS > 1.01]
    for _ in range(50):
        rdp = rng.uniform(0, 3) * orders ** rng.uniform(0.3, 1.5) + rng.uniform(0, 0.1)
        delta = 10 ** rng.uniform(-12, -2)
        ours = epsilon_from_rdp(rdp, orders, delta, conversion="improved")
        theirs = rdp_privacy_accountant.compute_epsilon(orders, rdp, delta)
        assert ours[0] == pytest.approx(theirs[0], rel=1e-12, abs=1e-15)
        assert ours[1] == theirs[1]
    # The KL shortcut: delta^2 > 1 - exp(-rdp) gives epsilon 0.
    tiny = np.full(orders.shape, 1e-12)
    assert epsilon_from_rdp(tiny, orders, 1e-5)[0] == 0.0


@pytest.mark.parametrize("sigma", [0.8, 5.0, 40.0, 150.0])
def test_gaussian_steps_equal_dp_accounting(sigma):
    orders = PAPER_ORDERS
    accountant = rdp_privacy_accountant.RdpAccountant(orders=list(orders))
    # GNMax: L2 sensitivity sqrt(2), so the noise multiplier is sigma / sqrt(2).
    accountant.compose(dp_event.GaussianDpEvent(sigma / math.sqrt(2)), count=7)
    np.testing.assert_allclose(
        accountant._rdp, 7 * rdp_gnmax_data_independent(sigma, orders), rtol=1e-12
    )
    # The threshold check: sensitivity 1.
    threshold = rdp_privacy_accountant.RdpAccountant(orders=list(orders))
    threshold.compose(dp_event.GaussianDpEvent(sigma))
    np.testing.assert_allclose(
        threshold._rdp, rdp_threshold_data_independent(sigma, orders), rtol=1e-12
    )
    # End to end: analyze's data-independent epsilon (improved conversion) is dp_accounting's.
    votes = np.tile([30, 20, 0], (7, 1))
    report = analyze(votes, mechanism="gnmax", sigma=sigma, orders=orders, delta=1e-6)
    eps, order = accountant.get_epsilon_and_optimal_order(1e-6)
    assert report.data_independent[0].epsilon == pytest.approx(eps, rel=1e-12)
    assert report.data_independent[0].order == order


@pytest.mark.parametrize("scale", [2.0, 20.0, 50.0])
def test_laplace_step_consistent_with_dp_accounting(scale):
    """LNMax's data-independent bound is the papers' pure-DP one: at least the exact RDP of the noisy
    histogram (two counts change by 1: two Laplace mechanisms), equal to eps = 2/scale at large
    orders."""
    orders = np.concatenate([DEFAULT_ORDERS, [1e5, 1e7]])
    accountant = rdp_privacy_accountant.RdpAccountant(orders=list(orders))
    accountant.compose(dp_event.LaplaceDpEvent(scale), count=2)
    ours = rdp_lnmax_data_independent(scale, orders)
    assert np.all(ours >= accountant._rdp * (1 - 1e-12))
    assert accountant._rdp[-1] == pytest.approx(2 / scale, rel=1e-5)
    assert ours[-1] == 2 / scale
    # The 2017 log-moment at moment l is l times the RDP at order l + 1.
    moments = np.arange(1.0, 9.0)
    np.testing.assert_allclose(
        logmgf_2017(np.array([1.0]), 2 / scale, moments)[0],
        moments * rdp_lnmax_data_independent(scale, moments + 1),
        rtol=1e-12,
    )


def test_moments_2017_invalid_region_uses_the_data_independent_bound():
    """For eps > ln 2 and e^-eps < q < 0.5, the 2017 code raises a negative number to a power. The
    theorem needs q < 1/(e^eps + 1); outside it the bound is the data-independent one."""
    eps, q = 1.0, 0.45
    moments = np.arange(1.0, 9.0)
    ours = logmgf_2017(np.array([q]), eps, moments)[0]
    np.testing.assert_array_equal(
        ours, np.minimum(0.5 * eps**2 * moments * (moments + 1), eps * moments)
    )
    naive = np.log(
        np.abs((1 - q) * ((1 - q) / (1 - math.exp(eps) * q)) ** moments + q * np.exp(eps * moments))
    )
    assert np.any(naive < ours - 1e-6)  # what the unguarded formula would have claimed
    # Inside the valid region the data-dependent term is used and is smaller.
    assert np.all(logmgf_2017(np.array([0.01]), eps, moments)[0] <= ours)


def test_order_at_edge():
    assert order_at_edge(2.0, PAPER_ORDERS)
    assert order_at_edge(PAPER_ORDERS.max(), PAPER_ORDERS)
    assert not order_at_edge(100.0, PAPER_ORDERS)
    votes = np.tile([250, 0, 0], (100_000, 1))
    report = analyze(votes[:5], mechanism="gnmax", sigma=2000.0, orders="paper")
    assert report.data_independent[0].order == PAPER_ORDERS.max()
    assert any("largest order" in warning for warning in report.warnings)


def test_gnss_conditions():
    assert check_gnss_conditions(100.0, 10, 20.0) == (True, True)
    assert check_gnss_conditions(40.0, 10, 20.0) == (True, True)
    # At the Table-2 MNIST setting's order the difference beta(BU(q)) - beta(q) decreases below q1
    # (checked independently at 50 digits): C6 fails there.
    assert check_gnss_conditions(40.0, 10, 47.0) == (True, False)


@settings(max_examples=40, deadline=None)
@given(
    epsilon=st.floats(0.05, 20.0),
    delta=st.floats(1e-10, 1e-3),
    queries=st.integers(1, 20_000),
    fraction=st.floats(0.05, 1.0),
    conversion=st.sampled_from(["classic", "improved"]),
)
def test_plan_round_trips(epsilon, delta, queries, fraction, conversion):
    orders = DEFAULT_ORDERS
    try:
        result = plan(
            epsilon=epsilon,
            delta=delta,
            queries=queries,
            teachers=250,
            classes=10,
            answered_fraction=fraction,
            conversion=conversion,
        )
    except Exception as exc:  # a target below what the conversion can certify is refused
        assert "cannot certify" in str(exc)
        return

    def gnmax_eps(sigma):
        rdp = queries * rdp_gnmax_data_independent(sigma, orders)
        return epsilon_from_rdp(rdp, orders, delta, conversion=conversion)[0]

    sigma = result.gnmax.sigma
    assert gnmax_eps(sigma) <= epsilon
    assert gnmax_eps(sigma * (1 - 1e-6)) > epsilon

    c = result.confident_gnmax
    assert c.answered == max(1, math.ceil(fraction * queries - 1e-9))

    def confident_eps(scale):
        rdp = queries * rdp_threshold_data_independent(c.sigma1 * scale, orders)
        rdp = rdp + c.answered * rdp_gnmax_data_independent(c.sigma2 * scale, orders)
        return epsilon_from_rdp(rdp, orders, delta, conversion=conversion)[0]

    assert confident_eps(1.0) <= epsilon
    assert confident_eps(1 - 1e-6) > epsilon
