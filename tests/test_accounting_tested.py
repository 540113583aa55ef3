"""The propose-test-release accountant (pate.accounting.tested) against brute force on small ensembles.

Every bound is checked against the exact output distribution of the real mechanism (discrete Gaussian
noise, ties toward the smallest index): the per-query joint bound J against the exact Renyi divergence
of every neighbouring pair, the symmetric bound F in both directions, the grid's local sensitivity
against every neighbour, and the smooth sensitivity's defining property on random vote arrays.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pate.accounting import tested
from pate.accounting.tested import (
    PtrMechanism,
    answers_statistic,
    joint_rdp_grid,
    parameters,
    private_test,
    query_statistics,
    symmetric_grid,
)
from pate.errors import PateError


def _pmf(sigma: float, radius: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.arange(-radius, radius + 1)
    w = np.exp(-(z.astype(float) ** 2) / (2 * sigma**2))
    return z, w / w.sum()


def _gnmax_distribution(hist: tuple[int, ...], sigma: float) -> np.ndarray:
    """Exact Pr[argmax(hist + Z) = c], Z iid discrete Gaussian, ties toward the smallest index."""
    z, p = _pmf(sigma, int(12 * sigma) + 3)
    m = len(hist)
    out = np.zeros(m)
    grids = np.meshgrid(*([z] * m), indexing="ij")
    probs = np.ones_like(grids[0], dtype=float)
    for k in range(m):
        probs = probs * p[grids[k] - z[0]]
    noisy = np.stack([hist[k] + grids[k] for k in range(m)], axis=-1)
    winner = np.argmax(noisy, axis=-1)
    for c in range(m):
        out[c] = probs[winner == c].sum()
    return out / out.sum()


def _answer_probability(top: int, threshold: float, sigma1: float) -> float:
    z, p = _pmf(sigma1, int(12 * sigma1) + 3)
    return float(p[z >= math.ceil(threshold) - top].sum())


def _distribution(hist, mech: PtrMechanism) -> np.ndarray:
    gn = _gnmax_distribution(hist, mech.sigma2)
    if not mech.confident:
        return gn
    p = _answer_probability(max(hist), mech.threshold, mech.sigma1)
    return np.concatenate([[1 - p], p * gn])


def _renyi(p: np.ndarray, q: np.ndarray, order: float) -> float:
    keep = p > 0
    return float(np.log(np.sum(p[keep] ** order * q[keep] ** (1 - order))) / (order - 1))


def _histograms(n: int, m: int):
    for cut in itertools.combinations(range(n + m - 1), m - 1):
        bounds = (-1, *cut, n + m - 1)
        yield tuple(bounds[i + 1] - bounds[i] - 1 for i in range(m))


def _neighbours(hist):
    m = len(hist)
    for a in range(m):
        if hist[a] == 0:
            continue
        for b in range(m):
            if b != a:
                h = list(hist)
                h[a] -= 1
                h[b] += 1
                yield tuple(h)


def _stats(hist) -> tuple[int, int]:
    top2 = sorted(hist, reverse=True)[:2]
    return top2[0], top2[0] - top2[1]


MECHANISMS = [
    PtrMechanism(num_teachers=7, num_classes=3, sigma2=1.2),
    PtrMechanism(num_teachers=7, num_classes=3, sigma2=1.2, threshold=5.0, sigma1=1.5),
]


@pytest.mark.parametrize("mech", MECHANISMS, ids=["gnmax", "confident"])
@pytest.mark.parametrize("order", [2.0, 6.0])
def test_grid_bounds_every_neighbouring_pair(mech, order):
    joint = joint_rdp_grid(mech, order)
    symmetric, local = symmetric_grid(joint)
    n, m = mech.num_teachers, mech.num_classes
    dists = {h: _distribution(h, mech) for h in _histograms(n, m)}
    checked = tight = 0
    for h, dist in dists.items():
        v, s = _stats(h)
        row = v if mech.confident else 0
        for g in _neighbours(h):
            exact = _renyi(dist, dists[g], order)
            assert exact <= joint[row, s] + 1e-9, (h, g, exact, joint[row, s])
            back = _renyi(dists[g], dist, order)
            assert max(exact, back) <= symmetric[row, s] + 1e-9
            vg, sg = _stats(g)
            change = abs(symmetric[vg if mech.confident else 0, sg] - symmetric[row, s])
            assert change <= local[row, s] + 1e-12
            checked += 1
            tight += exact > 0.5 * joint[row, s]
    assert checked > 100
    assert tight > 0  # the bound is not vacuous: it is within a factor 2 somewhere


def test_joint_bound_never_exceeds_the_data_independent_one_and_drops_with_consensus():
    mech = PtrMechanism(
        num_teachers=250, num_classes=10, sigma2=40.0, threshold=200.0, sigma1=150.0
    )
    joint = joint_rdp_grid(mech, 20.0)
    assert joint.max() <= mech.data_independent_rdp(20.0) + 1e-15
    assert joint[240, 230] < 0.1 * joint[240, 20]  # consensus is cheap
    declining = PtrMechanism(250, 10, sigma2=40.0, threshold=200.0, sigma1=40.0)
    joint = joint_rdp_grid(declining, 20.0)
    assert joint[20, 5] < 0.01 * joint[240, 5]  # a query the threshold declines is cheap


@pytest.mark.parametrize("mech", MECHANISMS, ids=["gnmax", "confident"])
def test_smooth_sensitivity_is_beta_smooth_and_bounds_the_local_sensitivity(mech):
    rng = np.random.default_rng(0)
    n, m = mech.num_teachers, mech.num_classes
    order, beta = 4.0, 0.1
    for _ in range(20):
        teacher_votes = rng.integers(0, m, size=(5, n))
        if rng.random() < 0.5:
            teacher_votes[:, : n - 1] = 0  # near consensus
        votes = np.stack([np.bincount(r, minlength=m) for r in teacher_votes])
        bound, smooth = answers_statistic(votes, mech, order, beta)
        for t in range(n):
            for label in range(m):
                other = teacher_votes.copy()
                other[:, t] = label
                votes2 = np.stack([np.bincount(r, minlength=m) for r in other])
                bound2, smooth2 = answers_statistic(votes2, mech, order, beta)
                assert abs(bound2 - bound) <= smooth + 1e-12
                assert smooth2 <= math.exp(beta) * smooth + 1e-12


def test_query_statistics():
    votes = np.array([[5, 2, 0], [3, 3, 1], [0, 0, 7]])
    v, s = query_statistics(votes, confident=True)
    assert v.tolist() == [5, 3, 7] and s.tolist() == [3, 0, 7]
    assert query_statistics(votes, confident=False)[0].tolist() == [0, 0, 0]


def test_parameters_certify_the_target_epsilon():
    for conversion in ("classic", "improved"):
        params = parameters(
            epsilon=2.0,
            delta=1e-5,
            order=20.0,
            beta=0.01,
            sigma_test=10.0,
            queries=100,
            conversion=conversion,
        )
        assert tested.guarantee(params) == pytest.approx(2.0, rel=1e-12)
        assert params.delta_rdp + params.delta_test == pytest.approx(1e-5)
        z = params.mu / ((1 + params.mu * math.expm1(params.beta)) * params.sigma_test)
        from scipy.stats import norm

        assert norm.sf(z) == pytest.approx(params.delta_test, rel=1e-9)


def _unanimous(queries: int) -> np.ndarray:
    votes = np.zeros((queries, 10), dtype=np.int64)
    votes[:, 0] = 250
    return votes


def _split(queries: int) -> np.ndarray:
    votes = np.zeros((queries, 10), dtype=np.int64)
    votes[:, 0] = votes[:, 1] = 125
    return votes


def test_the_test_passes_below_the_budget_and_fails_above_it():
    mech = PtrMechanism(num_teachers=250, num_classes=10, sigma2=40.0)
    settings = dict(epsilon=3.0, delta=1e-5, order=10.0, beta=0.03, sigma_test=4.0)
    small, large = parameters(queries=100, **settings), parameters(queries=300, **settings)
    worst_small = 100 * mech.data_independent_rdp(10.0)
    worst_large = 300 * mech.data_independent_rdp(10.0)
    assert worst_small < small.answers_budget < worst_large  # B sits between the two worst cases
    assert private_test(_unanimous(100), mech, small, 0.0).passed
    assert private_test(_split(100), mech, small, 0.0).passed  # fits even in the worst case
    outcome = private_test(_split(300), mech, large, -4.0)  # lucky noise does not save it
    assert outcome.answers_bound > large.answers_budget and not outcome.passed
    with pytest.raises(PateError, match="fixed in advance"):
        private_test(_unanimous(10), mech, small, 0.0)


def test_refuses_what_it_does_not_cover():
    with pytest.raises(PateError, match="tested budget mode"):
        PtrMechanism.from_aggregator({"mechanism": "lnmax", "scale": 20.0}, 10, 3)
    with pytest.raises(PateError, match="go together"):
        PtrMechanism(10, 3, 4.0, threshold=5.0)
    mech = PtrMechanism.from_aggregator(
        {"mechanism": "confident-gnmax", "threshold": 8, "sigma1": 3, "sigma2": 2}, 10, 3
    )
    assert mech.confident and mech.sigma2 == 2.0
