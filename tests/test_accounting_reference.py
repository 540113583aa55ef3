"""pate.accounting against the reference values of the PATE papers' own analysis code.

The values live in ``shared/pate-vectors/reference-subset.json`` (next to the repository, or at
``$PATE_VECTORS``); its "conventions" section defines each quantity. Tolerances follow it: rtol 1e-9
for log-probabilities, RDP and epsilon, exact optimal orders, rtol 1e-6 for the smooth-sensitivity
quantities.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pate.accounting import (
    PAPER_ORDERS,
    analyze,
    discounted_max,
    epsilon_from_rdp,
    is_data_independent_always_optimal_gnmax,
    is_data_independent_always_optimal_threshold,
    local_sensitivity_gnmax,
    logpr_answered,
    logq0_gnmax,
    logq1_gnmax,
    logq_gnmax,
    logq_lnmax,
    optimise_smooth_sensitivity,
    rdp_gnmax,
    rdp_gnmax_data_independent,
    rdp_gnss,
    rdp_lnmax,
    rdp_threshold,
    rdp_threshold_data_independent,
    smooth_sensitivity_gnmax,
)


def _vectors_path() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared/pate-vectors/reference-subset.json"]
    if os.environ.get("PATE_VECTORS"):
        given = Path(os.environ["PATE_VECTORS"])
        candidates.append(given / "reference-subset.json" if given.is_dir() else given)
    return next((path for path in candidates if path.is_file()), None)


_PATH = _vectors_path()
pytestmark = pytest.mark.skipif(_PATH is None, reason="reference-subset.json not found")


def _floats(values) -> np.ndarray:
    return np.array([float(v) for v in values])  # "inf"/"-inf"/"nan" are stored as strings


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads(_PATH.read_text())


@pytest.fixture(scope="module")
def histograms(ref) -> dict[str, np.ndarray]:
    return {h["name"]: np.array(h["counts"]) for h in ref["histograms"]}


def close(actual, expected, rtol=1e-9, atol=1e-15):
    np.testing.assert_allclose(actual, _floats(np.atleast_1d(expected)), rtol=rtol, atol=atol)


#: Orders are compared for what they mean, not bit for bit: np.logspace's power kernel differs by CPU,
#: and on some machines 5 of the 298 paper orders differ from the reference by one ulp (1.7e-16).
ORDER_RTOL = 1e-12


def same_order(found: float, expected) -> bool:
    return found == pytest.approx(float(expected), rel=ORDER_RTOL, abs=0)


def duplicates(orders: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of positions holding the same order (to ORDER_RTOL)."""
    same = np.isclose(orders[:, None], orders[None, :], rtol=ORDER_RTOL, atol=0)
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(same), strict=True) if i < j}


def test_paper_orders_are_the_scripts_list(ref):
    """The same count, the same values to a relative 1e-12, and the same duplicates (100 is both
    the last of the linear part and the first of the logarithmic one)."""
    expected = _floats(ref["orders"])
    assert PAPER_ORDERS.shape == expected.shape == (298,)
    np.testing.assert_allclose(PAPER_ORDERS, expected, rtol=ORDER_RTOL, atol=0)
    assert duplicates(PAPER_ORDERS) == duplicates(expected) == {(196, 198)}
    assert same_order(PAPER_ORDERS[196], 100.0) and same_order(PAPER_ORDERS[198], 100.0)


def test_orders_are_compared_by_meaning_not_bits():
    """One ulp apart is the same order; one duplicate merged or split is not the same list."""
    shifted = PAPER_ORDERS.copy()
    shifted[250] = np.nextafter(shifted[250], np.inf)
    np.testing.assert_allclose(shifted, PAPER_ORDERS, rtol=ORDER_RTOL, atol=0)
    assert duplicates(shifted) == duplicates(PAPER_ORDERS) and same_order(
        shifted[250], PAPER_ORDERS[250]
    )
    split = PAPER_ORDERS.copy()
    split[198] = np.nextafter(100.0, np.inf)  # an ulp: still the same duplicate
    assert duplicates(split) == {(196, 198)}
    split[198] = 100.0 * (1 + 1e-9)  # a different order
    assert duplicates(split) == set() and not same_order(split[198], 100.0)


def test_data_independent_gnmax(ref):
    for entry in ref["data_independent_gnmax"]:
        rdp = entry["queries"] * rdp_gnmax_data_independent(entry["sigma"], PAPER_ORDERS)
        eps, order = epsilon_from_rdp(rdp, PAPER_ORDERS, entry["delta"], conversion="classic")
        close(eps, entry["eps"])
        assert same_order(order, entry["order_opt"])
        assert PAPER_ORDERS[entry["order_opt_index"]] == order


def test_data_dependent_gnmax(ref, histograms):
    for entry in ref["data_dependent_gnmax"]:
        votes = histograms[entry["name"]][None, :]
        for sigma_text, values in entry["by_sigma"].items():
            sigma = float(sigma_text)
            logq = logq_gnmax(votes, sigma)
            close(logq, values["logq"])
            rdp = rdp_gnmax(logq, sigma, PAPER_ORDERS)[0]
            close(rdp, values["rdp"])
            below = np.sum(rdp < rdp_gnmax_data_independent(sigma, PAPER_ORDERS))
            assert below == values["num_orders_strictly_below_data_independent"]
            eps, order = epsilon_from_rdp(rdp, PAPER_ORDERS, 1e-5, conversion="classic")
            close(eps, values["single_query_eps_delta_1e-5"])
            assert same_order(order, values["single_query_order_opt_delta_1e-5"])


def test_confident_gnmax_threshold(ref, histograms):
    for setting in ref["confident_gnmax_threshold"]:
        sigma1, threshold = setting["sigma1"], setting["threshold"]
        close(
            rdp_threshold_data_independent(sigma1, PAPER_ORDERS),
            setting["rdp_data_independent_threshold"],
        )
        for entry in setting["per_histogram"]:
            logpr = logpr_answered(histograms[entry["name"]][None, :], threshold, sigma1)
            close(logpr, entry["logpr_answered"])
            close(rdp_threshold(logpr, sigma1, PAPER_ORDERS)[0], entry["rdp_threshold"])


def test_composed_public_gnmax(ref, histograms):
    for entry in ref["composed_public"]:
        sigma = entry["sigma"]
        total = sum(
            rdp_gnmax(logq_gnmax(h[None, :], sigma), sigma, PAPER_ORDERS)[0]
            for h in histograms.values()
        )
        eps, order = epsilon_from_rdp(total, PAPER_ORDERS, entry["delta"], conversion="classic")
        close(eps, entry["epsilon"])
        assert same_order(order, entry["order"])


def test_composed_through_analyze(ref, histograms):
    """The same composition through analyze, on the histograms that share 10 classes."""
    votes = np.stack([h for h in histograms.values() if h.size == 10])
    sigma = 40
    report = analyze(
        votes, mechanism="gnmax", sigma=sigma, delta=1e-5, orders="paper", conversion="classic"
    )
    total = sum(rdp_gnmax(logq_gnmax(v[None], sigma), sigma, PAPER_ORDERS)[0] for v in votes)
    np.testing.assert_allclose(report.rdp_data_dependent, total, rtol=1e-12, atol=1e-18)


def test_lnmax_2018(ref, histograms):
    for setting in ref["lnmax_2018"]:
        scale = setting["lambda"]
        assert setting["pure_eps"] == pytest.approx(2 / scale)
        for entry in setting["per_histogram"]:
            logq = logq_lnmax(histograms[entry["name"]][None, :], scale)
            close(logq, entry["logq"])
            close(rdp_lnmax(logq, scale, PAPER_ORDERS)[0], entry["rdp"])


def test_logq0_and_logq1(ref):
    for entry in ref["smooth_sensitivity"]["logq0_logq1"]:
        close(logq0_gnmax(entry["sigma"], entry["order"]), entry["logq0"], rtol=1e-6)
        close(
            logq1_gnmax(entry["sigma"], entry["order"], 10),
            entry["logq1_num_classes_10"],
            rtol=1e-6,
        )


def test_gnmax_local_and_smooth_sensitivity(ref, histograms):
    for entry in ref["smooth_sensitivity"]["gnmax_local_and_smooth_sensitivity"]:
        votes = histograms[entry["name"]][None, :]
        expected = np.concatenate([[v] * n for v, n in entry["local_sensitivity_at_distance_rle"]])
        close(logq_gnmax(votes, entry["sigma"]), entry["logq"])
        ls = local_sensitivity_gnmax(
            votes, entry["sigma"], entry["order"], num_teachers=entry["num_teachers"]
        )[0]
        np.testing.assert_allclose(ls, expected, rtol=1e-6, atol=1e-15)
        for beta, smooth in zip(entry["betas"], entry["smooth_sensitivity"], strict=True):
            close(discounted_max(beta, ls), smooth, rtol=1e-6)
            fast = smooth_sensitivity_gnmax(
                votes, entry["sigma"], entry["order"], beta, num_teachers=entry["num_teachers"]
            )
            close(fast, smooth, rtol=1e-6)


def test_table2_pipeline(ref):
    t = ref["smooth_sensitivity"]["table2_pipeline_mnist_setting"]
    votes = np.array(t["histogram_counts"])
    assert votes.shape[0] == t["num_queries"]
    report = analyze(
        votes,
        mechanism="confident-gnmax",
        threshold=t["threshold"],
        sigma1=t["sigma1"],
        sigma2=t["sigma2"],
        delta=t["delta"],
        orders="paper",
        conversion="classic",
    )
    assert same_order(report.data_dependent[0].order, t["order_opt"])
    close(report.expected_answered, t["expected_answered"])
    order = np.array([t["order_opt"]])
    assert bool(
        is_data_independent_always_optimal_threshold(250, t["threshold"], t["sigma1"], order)[0]
    ) == bool(t["data_ind_step1"])
    assert bool(is_data_independent_always_optimal_gnmax(250, 10, t["sigma2"], order)[0]) == bool(
        t["data_ind_step2"]
    )
    release = optimise_smooth_sensitivity(
        votes,
        sigma2=t["sigma2"],
        order=t["order_opt"],
        delta=t["delta"],
        threshold=t["threshold"],
        sigma1=t["sigma1"],
        num_teachers=250,
        conversion="classic",
    )
    assert release.data_independent_step1 == t["data_ind_step1"]
    assert release.data_independent_step2 == t["data_ind_step2"]
    close(release.rdp_at_order, t["rdp_cum_at_order"], rtol=1e-6)
    close(release.epsilon_before, t["eps_before_ss"], rtol=1e-6)
    close(release.beta, t["beta_opt"], rtol=1e-6)
    close(release.sensitivity, t["ss_opt"], rtol=1e-6)
    close(release.noise_sigma, t["sigma_ss_opt"], rtol=1e-6)
    close(release.rdp_release, t["gnss_rdp_cost"], rtol=1e-6)
    close(rdp_gnss(t["beta_opt"], t["sigma_ss_opt"], t["order_opt"]), t["gnss_rdp_cost"])
    close(release.epsilon_with_release, t["eps_with_ss"], rtol=1e-6)
    close(release.noise_std, t["noise_std_ss_times_sigma"], rtol=1e-6)
    # The reference's printed summary, from our numbers.
    line = (
        f"{t['num_queries']}: E[answered queries] = {release.expected_answered:.1f}, RDP at "
        f"{release.order} goes from {release.epsilon_before:.3f} to "
        f"{release.epsilon_with_release:.3f} +/- {release.noise_std:.3f} "
        f"(ss = {release.sensitivity:.4}, beta = {release.beta:.4f}, "
        f"sigma_ss = {release.noise_sigma:.3f})"
    )
    assert line == t["reference_stdout"][1]
