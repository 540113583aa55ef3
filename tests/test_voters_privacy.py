"""Sensitivity of the voters' histogram by brute force, and exact output distributions of the
subsampled screen and answer against the RDP they are charged."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from scipy.special import logsumexp
from voters_reference import groups_of, reference_histogram

from pate.accounting.subsampled import rdp_poisson_subsampled
from pate.errors import PateError
from pate.voters.accounting import (
    rdp_voters_answer,
    rdp_voters_answer_numerical,
    rdp_voters_query,
    rdp_voters_query_numerical,
    rdp_voters_run,
    rdp_voters_screen,
    rdp_voters_screen_numerical,
)
from pate.voters.search import VoterSearch
from pate.voters.store import VoterStore

POSITIONS = (0.0, 1.0, 2.0)
CLASSES = 2


def _universe() -> tuple[VoterStore, list[tuple[tuple[float, int], ...]]]:
    """Every individual with one or two records, each record at a position of POSITIONS with a label
    of 0..CLASSES-1 (27 kinds), plus a second copy of six kinds, so that a sample may hold two
    individuals with identical records (ties between individuals)."""
    records = [(x, y) for x in POSITIONS for y in range(CLASSES)]
    kinds = [(r,) for r in records] + list(itertools.combinations_with_replacement(records, 2))
    kinds = kinds + kinds[:3] + kinds[6:9]
    features = np.array([[x] for kind in kinds for x, _ in kind], dtype=np.float32)
    labels = np.array([y for kind in kinds for _, y in kind])
    sizes = [len(kind) for kind in kinds]
    store = VoterStore(
        features=features,
        labels=labels,
        individual_id=np.repeat(np.arange(len(kinds)), sizes),
        offsets=np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
        num_classes=CLASSES,
    )
    return store, kinds


def test_histogram_sensitivity_by_brute_force():
    """Every sample of at most 3 individuals of the universe (a dataset of a few individuals, or any
    Poisson subsample of one, is such a set), every query position, k = 1, 2, 3: the search's
    histogram equals the reference brute force; adding any other individual (with all its records)
    moves the histogram by at most sqrt(2) in L2 and its maximum by at most 1, and both are attained.
    """
    store, _ = _universe()
    universe = store.num_individuals
    samples = [s for size in range(4) for s in itertools.combinations(range(universe), size)]
    index = {frozenset(s): i for i, s in enumerate(samples)}
    masks = np.zeros((len(samples), universe), dtype=bool)
    for row, sample in enumerate(samples):
        masks[row, list(sample)] = True
    queries = np.array([[0.0], [1.0], [1.5]], dtype=np.float32)
    search = VoterSearch(store, record_chunk=3, query_chunk=len(samples))
    groups = groups_of(store)
    worst_l2, worst_max = 0.0, 0
    for query in queries:
        repeated = np.repeat(query[None], len(samples), axis=0)
        ((_, _, dist, vote),) = list(search.minima(repeated))
        for k in (1, 2, 3):
            hist = search.histograms(dist, vote, masks, k)
            for row in range(0, len(samples), 7):  # the reference is slow: every 7th sample
                expected = reference_histogram(groups, list(samples[row]), query, k, CLASSES)
                np.testing.assert_array_equal(hist[row], expected)
            small = [i for i, s in enumerate(samples) if len(s) < 3]
            for row in small:
                present = set(samples[row])
                grown = [
                    index[frozenset(present | {u})] for u in range(universe) if u not in present
                ]
                change = hist[grown] - hist[row]
                l2 = np.sqrt((change**2).sum(axis=1)).max()
                moved = np.abs(hist[grown].max(axis=1) - hist[row].max()).max()
                assert l2 <= np.sqrt(2) + 1e-12 and moved <= 1, (samples[row], query, k)
                worst_l2, worst_max = max(worst_l2, l2), max(worst_max, moved)
    assert worst_l2 == pytest.approx(np.sqrt(2)) and worst_max == 1  # the bounds are attained


def _log_pmf(center: float, sigma: float, support: np.ndarray) -> np.ndarray:
    log_weights = -((support - center) ** 2) / (2 * sigma**2)
    return log_weights - logsumexp(
        -(support**2) / (2 * sigma**2)
    )  # same normaliser, any integer center


def _renyi(log_p: np.ndarray, log_q: np.ndarray, order: float) -> float:
    return float(logsumexp(order * log_p + (1 - order) * log_q) / (order - 1))


def _mixture(histograms: dict[frozenset, np.ndarray], members: list[int], rate: float, log_pmf):
    """Log-pmf of the released value over the Poisson samples of ``members``."""
    parts = []
    for size in range(len(members) + 1):
        for sample in itertools.combinations(members, size):
            weight = size * np.log(rate) + (len(members) - size) * np.log1p(-rate)
            parts.append(weight + log_pmf(histograms[frozenset(sample)]))
    return logsumexp(np.stack(parts), axis=0)


ORDERS = np.array([1.5, 2.0, 3.0, 5.0, 8.0, 16.0, 32.0])


def _dataset_histograms(k: int) -> tuple[dict[frozenset, np.ndarray], list[int], int]:
    """A tiny dataset (individuals 0-2 at 1.0, 2.0, 0.0 with labels 0, 0, 1) and the newcomer 3 at
    1.0 with label 1: adding it can take a class-0 vote away and give one to class 1."""
    store = VoterStore(
        features=np.array([[1.0], [2.0], [0.0], [1.0]], dtype=np.float32),
        labels=np.array([0, 0, 1, 1]),
        individual_id=np.arange(4),
        offsets=np.arange(5),
        num_classes=2,
    )
    members = [0, 1, 2, 3]
    samples = [s for size in range(5) for s in itertools.combinations(members, size)]
    masks = np.zeros((len(samples), 4), dtype=bool)
    for row, sample in enumerate(samples):
        masks[row, list(sample)] = True
    search = VoterSearch(store, query_chunk=len(samples))
    ((_, _, dist, vote),) = list(search.minima(np.ones((len(samples), 1), np.float32)))
    hist = search.histograms(dist, vote, masks, k)
    return {frozenset(s): hist[i] for i, s in enumerate(samples)}, [0, 1, 2], 3


@pytest.mark.parametrize("rate", [0.2, 0.6])
@pytest.mark.parametrize("sigma1", [0.8, 2.0])
def test_exact_subsampled_screen_is_within_its_charge(rate, sigma1):
    """The screen releases (a function of) max_j h_j(S) + Z1: its exact distribution over every
    Poisson sample, with and without the newcomer, both directions, against rdp_voters_screen."""
    histograms, dataset, newcomer = _dataset_histograms(k=2)
    support = np.arange(-60, 64)
    pmf = lambda h: _log_pmf(int(h.max()), sigma1, support)  # noqa: E731
    without = _mixture(histograms, dataset, rate, pmf)
    with_one = _mixture(histograms, dataset + [newcomer], rate, pmf)
    bound = rdp_voters_screen(rate, sigma1, ORDERS)
    numerical = rdp_voters_screen_numerical(rate, sigma1, ORDERS)
    worst = 0.0
    for order, limit, tight in zip(ORDERS, bound, numerical, strict=True):
        divergence = max(_renyi(with_one, without, order), _renyi(without, with_one, order))
        assert divergence <= tight * (1 + 1e-9) <= limit * (1 + 2e-9), (order, divergence, tight)
        worst = max(worst, divergence / limit)
    assert worst > 0.02  # the example reaches a few percent of the bound or more, not 0


@pytest.mark.parametrize("rate", [0.2, 0.6])
@pytest.mark.parametrize("sigma2", [0.8, 2.0])
def test_exact_subsampled_answer_is_within_its_charge(rate, sigma2):
    """The answer releases (a function of) the noisy histogram h(S) + Z: its exact two-dimensional
    distribution over every Poisson sample, both directions, against rdp_voters_answer."""
    histograms, dataset, newcomer = _dataset_histograms(k=2)
    grid = np.arange(-30, 33)
    a, b = np.meshgrid(grid, grid, indexing="ij")

    def pmf(h):
        return (
            _log_pmf(int(h[0]), sigma2, grid)[:, None] + _log_pmf(int(h[1]), sigma2, grid)[None, :]
        ).ravel()

    assert a.size == pmf(np.array([0, 0])).size
    without = _mixture(histograms, dataset, rate, pmf)
    with_one = _mixture(histograms, dataset + [newcomer], rate, pmf)
    bound = rdp_voters_answer(rate, sigma2, ORDERS)
    numerical = rdp_voters_answer_numerical(rate, sigma2, ORDERS)
    worst = 0.0
    for order, limit, tight in zip(ORDERS, bound, numerical, strict=True):
        divergence = max(_renyi(with_one, without, order), _renyi(without, with_one, order))
        assert divergence <= tight * (1 + 1e-9) <= limit * (1 + 2e-9), (order, divergence, tight)
        worst = max(worst, divergence / limit)
    assert worst > 0.02


def _pair(log_q: np.ndarray, log_q_shifted: np.ndarray, rate: float, order: float) -> float:
    mixture = np.logaddexp(np.log1p(-rate) + log_q, np.log(rate) + log_q_shifted)
    return max(_renyi(mixture, log_q, order), _renyi(log_q, mixture, order))


@pytest.mark.parametrize("rate,sigma", [(0.05, 1.5), (0.3, 0.7), (0.6, 3.0)])
def test_numerical_bounds_are_the_worst_pairs_summed_directly(rate, sigma):
    """The screen's pair on the integers and the answer's pairs on the integer plane (one vote moved
    between two classes, or one vote added), summed directly without the one-dimensional reduction."""
    orders = np.array([1.5, 2.0, 3.0, 7.5, 20.0])
    line = np.arange(-40 * int(np.ceil(sigma)) - 80, 40 * int(np.ceil(sigma)) + 81)
    base = _log_pmf(0, sigma, line)
    screen = [_pair(base, _log_pmf(1, sigma, line), rate, a) for a in orders]
    np.testing.assert_allclose(rdp_voters_screen_numerical(rate, sigma, orders), screen, rtol=1e-7)
    plane = base[:, None] + base[None, :]
    moved = (_log_pmf(1, sigma, line)[:, None] + _log_pmf(-1, sigma, line)[None, :]).ravel()
    added = (_log_pmf(1, sigma, line)[:, None] + base[None, :]).ravel()
    answer = [
        max(_pair(plane.ravel(), moved, rate, a), _pair(plane.ravel(), added, rate, a))
        for a in orders
    ]
    np.testing.assert_allclose(rdp_voters_answer_numerical(rate, sigma, orders), answer, rtol=1e-7)
    # The general Zhu-Wang bound is above both, and far above at small rates and large noise.
    assert np.all(rdp_voters_answer(rate, sigma, orders) >= np.array(answer) * (1 - 1e-9))


def test_numerical_bound_removes_the_general_bounds_floor():
    """Zhu-Wang's general bound keeps a term 2 C(a, 3) q^3 as the noise grows; the discrete Gaussian's
    own sum falls like the sampled Gaussian (dp_accounting) instead."""
    orders = np.arange(2.0, 33.0)
    rate, sigma1, sigma2 = 0.05, 40.0, 25.0
    general = rdp_voters_query(rate, sigma1, sigma2, True, orders)
    numerical = rdp_voters_query_numerical(rate, sigma1, sigma2, True, orders)
    continuous = _dp_accounting(rate, sigma1, orders) + _dp_accounting(
        rate, sigma2 / np.sqrt(2), orders
    )
    assert np.all(numerical <= general)
    assert general[1] > 10 * numerical[1]  # order 3: 2.7e-4 against 1.4e-5
    np.testing.assert_allclose(numerical, continuous, rtol=0.02)
    np.testing.assert_array_equal(
        rdp_voters_query_numerical(rate, sigma1, sigma2, False, orders),
        rdp_voters_screen_numerical(rate, sigma1, orders),
    )


def _dp_accounting(rate: float, noise_multiplier: float, orders: np.ndarray) -> np.ndarray:
    logging.getLogger("absl").setLevel(logging.ERROR)
    accountant = rdp_privacy_accountant.RdpAccountant(orders=list(orders))
    accountant.compose(
        dp_event.PoissonSampledDpEvent(rate, dp_event.GaussianDpEvent(noise_multiplier))
    )
    return np.asarray(accountant._rdp)


def test_per_query_charge_is_the_two_subsampled_steps():
    orders = np.arange(2.0, 65.0)
    rate, sigma1, sigma2 = 0.05, 40.0, 25.0
    screen = rdp_voters_screen(rate, sigma1, orders)
    answer = rdp_voters_answer(rate, sigma2, orders)
    # Sensitivity 1 with sigma1 and sqrt(2) with sigma2: noise multipliers sigma1 and sigma2 / sqrt(2).
    np.testing.assert_allclose(
        screen, rdp_poisson_subsampled(rate, lambda a: a / (2 * sigma1**2), orders)
    )
    assert np.all(screen >= _dp_accounting(rate, sigma1, orders) * (1 - 1e-9))
    assert np.all(answer >= _dp_accounting(rate, sigma2 / np.sqrt(2), orders) * (1 - 1e-9))
    assert np.all(answer <= orders / sigma2**2)
    np.testing.assert_array_equal(rdp_voters_query(rate, sigma1, sigma2, False, orders), screen)
    np.testing.assert_allclose(
        rdp_voters_query(rate, sigma1, sigma2, True, orders), screen + answer
    )
    np.testing.assert_allclose(
        rdp_voters_run(rate, sigma1, sigma2, 100, 30, orders), 100 * screen + 30 * answer
    )


@pytest.mark.parametrize(
    "call,field",
    [
        (lambda: rdp_voters_screen(0.1, 0.0, ORDERS), "`sigma1`"),
        (lambda: rdp_voters_answer(0.1, float("inf"), ORDERS), "`sigma2`"),
        (lambda: rdp_voters_answer(1.1, 1.0, ORDERS), "`rate`"),
        (lambda: rdp_voters_run(0.1, 1.0, 1.0, 3, 4, ORDERS), "`answered`"),
        (lambda: rdp_voters_run(0.1, 1.0, 1.0, -1, 0, ORDERS), "`queries`"),
    ],
)
def test_bad_parameters_name_their_field(call, field):
    with pytest.raises(PateError, match=field):
        call()
