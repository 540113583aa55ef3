"""Vectorised accounting against the per-query loop of scripts/accounting_loop.py.

The loop is written one histogram at a time in the style of the papers' scripts (and is itself checked
against the reference file below), so these tests extend the reference values to many more
histograms: random ones, 5000 teachers x 150 classes, and the PATE 2017 LNMax analysis.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import accounting_loop as loop  # noqa: E402

from pate.accounting import (  # noqa: E402
    DEFAULT_ORDERS,
    PAPER_ORDERS,
    analyze,
    local_sensitivity_gnmax,
    local_sensitivity_threshold,
    logmgf_2017,
    logpr_answered,
    logq_gnmax,
    logq_lnmax,
    moments_analysis_2017,
    optimise_smooth_sensitivity,
    q_lnmax_2017,
    rdp_gnmax,
    rdp_lnmax,
    rdp_threshold,
    smoothed_sensitivity_2017,
)

RTOL = 1e-9


def random_votes(rng, queries: int, teachers: int, classes: int) -> np.ndarray:
    concentration = 10 ** rng.uniform(-2.0, 0.7, size=queries)
    probabilities = np.stack([rng.dirichlet(np.full(classes, c)) for c in concentration])
    return rng.multinomial(teachers, probabilities)


SETTINGS = [
    # (teachers, classes, sigma)
    (250, 10, 40.0),
    (250, 10, 20.0),
    (100, 2, 10.0),
    (5000, 150, 100.0),
    (5000, 150, 300.0),
]


@pytest.mark.parametrize(("teachers", "classes", "sigma"), SETTINGS)
def test_gnmax_threshold_lnmax_match_loop(teachers, classes, sigma):
    rng = np.random.default_rng(teachers + classes + int(sigma))
    votes = random_votes(rng, 30, teachers, classes)
    orders = PAPER_ORDERS

    logq = logq_gnmax(votes, sigma)
    expected = [loop.logq_gaussian(v, sigma) for v in votes]
    np.testing.assert_allclose(logq, expected, rtol=RTOL)
    np.testing.assert_allclose(
        rdp_gnmax(logq, sigma, orders),
        [loop.rdp_gaussian(x, sigma, orders) for x in expected],
        rtol=RTOL,
        atol=1e-15,
    )

    threshold, sigma1 = 0.7 * teachers, 2.5 * sigma
    logpr = logpr_answered(votes, threshold, sigma1)
    expected = [loop.logpr_answered(v, threshold, sigma1) for v in votes]
    np.testing.assert_allclose(logpr, expected, rtol=RTOL)
    np.testing.assert_allclose(
        rdp_threshold(logpr, sigma1, orders),
        [loop.rdp_threshold(x, sigma1, orders) for x in expected],
        rtol=RTOL,
        atol=1e-15,
    )

    scale = sigma / 2
    logq = logq_lnmax(votes, scale)
    expected = [loop.logq_laplace(v, scale) for v in votes]
    np.testing.assert_allclose(logq, expected, rtol=RTOL)
    np.testing.assert_allclose(
        rdp_lnmax(logq, scale, orders),
        [loop.rdp_pure(x, 2 / scale, orders) for x in expected],
        rtol=RTOL,
        atol=1e-15,
    )


def test_analyze_matches_loop_composition():
    rng = np.random.default_rng(7)
    votes = random_votes(rng, 300, 250, 10)
    report = analyze(
        votes,
        mechanism="confident-gnmax",
        threshold=200,
        sigma1=150,
        sigma2=40,
        orders="paper",
        conversion="classic",
        delta=1e-6,
    )
    curve, answered = loop.analyze_confident(votes, 200, 150.0, 40.0, PAPER_ORDERS)
    np.testing.assert_allclose(report.rdp_data_dependent, curve, rtol=RTOL)
    assert report.expected_answered == pytest.approx(answered, rel=RTOL)
    eps, order = loop.eps_classic(curve, PAPER_ORDERS, 1e-6)
    assert report.data_dependent[0].epsilon == pytest.approx(eps, rel=RTOL)
    assert report.data_dependent[0].order == order

    report = analyze(votes, mechanism="gnmax", sigma=25, orders=DEFAULT_ORDERS)
    np.testing.assert_allclose(
        report.rdp_data_dependent, loop.analyze_gnmax(votes, 25.0, DEFAULT_ORDERS), rtol=RTOL
    )


@pytest.mark.parametrize(
    ("teachers", "classes", "sigma", "order"),
    [
        (250, 10, 40.0, 5.0),
        (250, 10, 40.0, 20.0),
        (250, 10, 100.0, 10.0),
        (250, 3, 15.0, 8.0),
    ],
)
def test_local_sensitivities_match_loop(teachers, classes, sigma, order):
    rng = np.random.default_rng(int(sigma * order) + classes)
    votes = random_votes(rng, 8, teachers, classes)
    ours = local_sensitivity_gnmax(votes, sigma, order, num_teachers=teachers)
    theirs = np.array([loop.local_sensitivity_gnmax(v, teachers, sigma, order) for v in votes])
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-15)

    threshold, sigma1 = 0.6 * teachers, 0.2 * teachers
    ours = local_sensitivity_threshold(votes, threshold, sigma1, order, num_teachers=teachers)
    theirs = np.array(
        [loop.local_sensitivity_threshold(v, teachers, threshold, sigma1, order) for v in votes]
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-18)


def test_local_sensitivities_large_ensemble():
    rng = np.random.default_rng(11)
    votes = random_votes(rng, 3, 5000, 150)
    ours = local_sensitivity_gnmax(votes, 200.0, 10.0, num_teachers=5000)
    theirs = np.array([loop.local_sensitivity_gnmax(v, 5000, 200.0, 10.0) for v in votes])
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-15)


def test_smooth_sensitivity_search_matches_loop():
    rng = np.random.default_rng(5)
    votes = random_votes(rng, 40, 250, 10)
    release = optimise_smooth_sensitivity(
        votes,
        sigma2=40.0,
        order=20.0,
        delta=1e-5,
        threshold=200,
        sigma1=50.0,
        num_teachers=250,
        conversion="classic",
        check_conditions=False,
    )
    assert not release.data_independent_step1 and not release.data_independent_step2
    found = loop.smooth_sensitivity_search(votes, 250, 200, 50.0, 40.0, 20.0, True)
    assert release.rdp_at_order == pytest.approx(found["rdp"], rel=RTOL)
    assert release.beta == found["beta"]
    assert release.sensitivity == pytest.approx(found["sensitivity"], rel=RTOL)
    assert release.noise_sigma == pytest.approx(found["noise_sigma"], rel=RTOL)


@pytest.mark.parametrize(
    ("teachers", "classes", "gamma"),
    [
        (250, 10, 0.05),
        (250, 10, 0.1),
        (250, 10, 0.5),  # 2 gamma > ln 2: the 2017 code's q < 0.5 shortcut would be invalid here
        (100, 2, 0.2),
        (5000, 150, 0.02),
    ],
)
def test_moments_2017_match_loop(teachers, classes, gamma):
    rng = np.random.default_rng(int(gamma * 1000) + classes)
    votes = random_votes(rng, 20, teachers, classes)
    moments = np.arange(1.0, 9.0)
    q = q_lnmax_2017(votes, gamma)
    expected_q = [loop.q_noisy_max(v, gamma) for v in votes]
    np.testing.assert_allclose(q, expected_q, rtol=RTOL)
    np.testing.assert_allclose(
        logmgf_2017(q, 2 * gamma, moments),
        [[loop.logmgf(x, 2 * gamma, m) for m in moments] for x in expected_q],
        rtol=RTOL,
        atol=1e-15,
    )
    np.testing.assert_allclose(
        smoothed_sensitivity_2017(votes, gamma, moments, 0.09),
        [[loop.smoothed_sens_2017(v, gamma, m, 0.09) for m in moments] for v in votes],
        rtol=1e-9,
        atol=1e-15,
    )


def test_moments_2017_analysis_formula():
    rng = np.random.default_rng(3)
    votes = random_votes(rng, 100, 250, 10)
    gamma, delta = 0.05, 1e-5
    analysis = moments_analysis_2017(votes, gamma, delta, smooth_sensitivity=True)
    moments = np.arange(1.0, 9.0)
    total = np.array(
        [sum(loop.logmgf(loop.q_noisy_max(v, gamma), 2 * gamma, m) for v in votes) for m in moments]
    )
    eps = (total - np.log(delta)) / moments
    assert analysis.epsilon == pytest.approx(eps.min(), rel=RTOL)
    assert analysis.moment == moments[np.argmin(eps)]
    independent = (
        len(votes)
        * np.minimum(0.5 * (2 * gamma) ** 2 * moments * (moments + 1), 2 * gamma * moments)
        - np.log(delta)
    ) / moments
    assert analysis.data_independent_epsilon == pytest.approx(independent.min(), rel=RTOL)
    sens = (
        np.array([sum(loop.smoothed_sens_2017(v, gamma, m, 0.09) for v in votes) for m in moments])
        / moments
    )
    np.testing.assert_allclose(analysis.smoothed_sensitivity, sens, rtol=1e-9, atol=1e-15)


def test_loop_oracle_reproduces_reference_file():
    """The oracle itself agrees with the reference values (so it is a fair judge above)."""
    path = Path(__file__).resolve().parents[2] / "shared/pate-vectors/reference-subset.json"
    if not path.is_file():
        pytest.skip("reference-subset.json not found")
    ref = json.loads(path.read_text())
    counts = {h["name"]: np.array(h["counts"]) for h in ref["histograms"]}
    for entry in ref["data_dependent_gnmax"]:
        for sigma, values in entry["by_sigma"].items():
            logq = loop.logq_gaussian(counts[entry["name"]], float(sigma))
            assert logq == pytest.approx(values["logq"], rel=1e-12)
            np.testing.assert_allclose(
                loop.rdp_gaussian(logq, float(sigma), PAPER_ORDERS),
                [float(x) for x in values["rdp"]],
                rtol=1e-12,
                atol=1e-18,
            )
    for entry in ref["smooth_sensitivity"]["gnmax_local_and_smooth_sensitivity"]:
        expected = np.concatenate([[v] * n for v, n in entry["local_sensitivity_at_distance_rle"]])
        got = loop.local_sensitivity_gnmax(
            counts[entry["name"]], entry["num_teachers"], entry["sigma"], entry["order"]
        )
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)
