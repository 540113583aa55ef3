"""analyze(): results, report shape, and refusal of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pate.accounting import (
    DEFAULT_ORDERS,
    PAPER_ORDERS,
    analyze,
    analyze_file,
    epsilon_from_rdp,
    logpr_answered,
    logq_gnmax,
    plan,
    rdp_gnmax,
    rdp_threshold,
)
from pate.errors import PateError

VOTES = np.array(
    [
        [240, 2, 1, 1, 1, 1, 1, 1, 1, 1],
        [100, 90, 20, 10, 10, 5, 5, 5, 3, 2],
        [125, 125, 0, 0, 0, 0, 0, 0, 0, 0],
        [250, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [180, 30, 10, 5, 5, 5, 5, 4, 3, 3],
    ]
)


def test_gnmax_report():
    report = analyze(VOTES, mechanism="gnmax", sigma=40, delta=1e-5, orders="paper")
    data = report.to_dict()
    assert list(data) == [
        "mechanism",
        "queries",
        "delta",
        "orders",
        "conversion",
        "parameters",
        "data_independent",
        "data_dependent",
        "warnings",
    ]
    assert data["mechanism"] == "gnmax" and data["queries"] == 5 and data["delta"] == 1e-5
    assert data["orders"] == "paper" and data["conversion"] == "improved"
    assert set(data["data_dependent"]) == {"epsilon", "order"}
    expected = sum(rdp_gnmax(logq_gnmax(v[None], 40), 40, PAPER_ORDERS)[0] for v in VOTES)
    eps, order = epsilon_from_rdp(expected, PAPER_ORDERS, 1e-5)
    assert data["data_dependent"] == {"epsilon": pytest.approx(eps, rel=1e-12), "order": order}
    eps, order = epsilon_from_rdp(5 * PAPER_ORDERS / 1600, PAPER_ORDERS, 1e-5)
    assert data["data_independent"] == {"epsilon": pytest.approx(eps, rel=1e-12), "order": order}
    json.dumps(data)  # plain JSON types only


def test_several_deltas_give_lists_in_order():
    deltas = [1e-5, 1e-8, 1e-6]
    report = analyze(VOTES, mechanism="gnmax", sigma=40, delta=deltas, smooth_sensitivity=True)
    data = report.to_dict()
    assert data["delta"] == deltas
    for key in ("data_independent", "data_dependent", "smooth_sensitivity"):
        assert isinstance(data[key], list) and len(data[key]) == 3
    single = [analyze(VOTES, mechanism="gnmax", sigma=40, delta=d).to_dict() for d in deltas]
    assert data["data_dependent"] == [s["data_dependent"] for s in single]
    epsilons = [d["epsilon"] for d in data["data_dependent"]]
    assert epsilons[1] > epsilons[2] > epsilons[0]


def test_confident_gnmax_expected_and_realised():
    threshold, sigma1, sigma2 = 200, 150, 40
    answered = np.array([True, False, False, True, False])
    report = analyze(
        VOTES,
        mechanism="confident-gnmax",
        threshold=threshold,
        sigma1=sigma1,
        sigma2=sigma2,
        orders=DEFAULT_ORDERS,
        answered=answered,
    )
    data = report.to_dict()
    logpr = logpr_answered(VOTES, threshold, sigma1)
    assert data["expected_answered"] == pytest.approx(np.exp(logpr).sum(), rel=1e-12)
    assert "expected" in data["basis"]
    step1 = rdp_threshold(logpr, sigma1, DEFAULT_ORDERS)
    step2 = rdp_gnmax(logq_gnmax(VOTES, sigma2), sigma2, DEFAULT_ORDERS)
    np.testing.assert_allclose(
        report.rdp_data_dependent,
        (step1 + np.exp(logpr)[:, None] * step2).sum(axis=0),
        rtol=1e-12,
    )
    realised = (step1 + answered[:, None] * step2).sum(axis=0)
    np.testing.assert_allclose(report.realised.rdp_data_dependent, realised, rtol=1e-12)
    assert data["realised"]["answered"] == 2
    independent = 5 * DEFAULT_ORDERS / (2 * sigma1**2) + 2 * DEFAULT_ORDERS / sigma2**2
    np.testing.assert_allclose(report.realised.rdp_data_independent, independent, rtol=1e-12)
    assert data["orders"] == DEFAULT_ORDERS.tolist()  # explicit orders are listed


def test_interactive_baseline_moves_only_the_threshold_step():
    baseline = np.full(VOTES.shape, 0.3) * VOTES
    plain = analyze(VOTES, mechanism="confident-gnmax", threshold=150, sigma1=100, sigma2=40)
    discounted = analyze(
        VOTES,
        mechanism="confident-gnmax",
        threshold=150,
        sigma1=100,
        sigma2=40,
        baseline=baseline,
    )
    expected = np.exp(logpr_answered(VOTES - baseline, 150, 100)).sum()
    assert discounted.expected_answered == pytest.approx(expected, rel=1e-12)
    assert discounted.expected_answered < plain.expected_answered


def test_lnmax_report_has_the_2017_accountant():
    report = analyze(VOTES, mechanism="lnmax", scale=20, smooth_sensitivity=True)
    data = report.to_dict()
    assert data["moments_2017"]["gamma"] == 0.05
    assert data["smooth_sensitivity"]["method"] == "pate2017"
    assert data["data_dependent"]["epsilon"] <= data["data_independent"]["epsilon"]


def test_smooth_sensitivity_fields():
    report = analyze(VOTES, mechanism="gnmax", sigma=40, smooth_sensitivity=True, teachers=250)
    release = report.to_dict()["smooth_sensitivity"]
    for key in ("order", "beta", "sensitivity", "noise_sigma", "epsilon_before"):
        assert key in release
    assert release["order"] == report.data_dependent[0].order
    assert release["epsilon_before"] == pytest.approx(report.data_dependent[0].epsilon, rel=1e-12)
    assert release["epsilon_with_release"] > release["epsilon_before"]
    assert 0.3 / release["order"] <= release["beta"] < 0.495 / release["order"]


@pytest.mark.parametrize(
    ("votes", "message"),
    [
        (np.array([[1.5, 2.5]]), "expected integer vote counts"),
        (np.array([[3, -1]]), "expected counts >= 0"),
        (np.array([[np.nan, 2.0]]), "NaN"),
        (np.zeros((0, 3)), "no rows"),
        (np.array([[5]]), "at least 2"),
        (np.array([["a", "b"]]), "expected integer vote counts"),
        (np.zeros((2, 2, 2)), "expected (queries, classes)"),
    ],
)
def test_bad_votes_are_refused(votes, message):
    with pytest.raises(PateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        analyze(votes, mechanism="gnmax", sigma=10)


def test_rows_must_sum_to_teachers():
    with pytest.raises(PateError, match="row 1 sums to 9, expected --teachers=10"):
        analyze(np.array([[5, 5], [4, 5]]), mechanism="gnmax", sigma=10, teachers=10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sigma": 0}, "Expected sigma=0"),
        ({"sigma": -1}, "Expected sigma=-1"),
        ({"sigma": float("nan")}, "Expected sigma=nan"),
        ({"sigma": 10, "delta": 0}, "Expected delta=0"),
        ({"sigma": 10, "delta": 1}, "Expected delta=1"),
        ({"sigma": 10, "delta": [1e-5, 2.0]}, "Expected delta=2.0"),
        ({"sigma": 10, "delta": []}, "empty list"),
        ({"sigma": 10, "orders": [1.0, 2.0]}, "expected orders > 1"),
        ({"sigma": 10, "orders": [0.5, 3]}, "expected orders > 1"),
        ({"sigma": 10, "orders": "short"}, "expected 'paper' or 'default'"),
        ({"sigma": 10, "conversion": "exact"}, "conversion is 'exact'"),
        ({}, "gnmax needs --sigma"),
        ({"sigma": 10, "threshold": 5}, "threshold does not apply"),
        ({"sigma": 10, "teachers": 0}, "teachers=0"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(PateError, match=message):
        analyze(np.array([[5, 5], [9, 1]]), mechanism="gnmax", **options)


def test_bad_mechanism_options_are_refused():
    votes = np.array([[5, 5], [9, 1]])
    with pytest.raises(PateError, match="mechanism is 'maxnoise'"):
        analyze(votes, mechanism="maxnoise", sigma=1)
    with pytest.raises(PateError, match="needs --threshold, --sigma1 and --sigma2"):
        analyze(votes, mechanism="confident-gnmax", sigma2=10, threshold=5)
    with pytest.raises(PateError, match="Expected sigma1=0"):
        analyze(votes, mechanism="confident-gnmax", sigma2=10, threshold=5, sigma1=0)
    with pytest.raises(PateError, match="lnmax needs --scale"):
        analyze(votes, mechanism="lnmax")
    with pytest.raises(PateError, match=r"answered: has shape \(3,\), expected \(2,\)"):
        analyze(
            votes,
            mechanism="confident-gnmax",
            sigma2=10,
            threshold=5,
            sigma1=3,
            answered=np.array([1, 0, 1]),
        )
    with pytest.raises(PateError, match="answered: holds values other than 0/1"):
        analyze(
            votes,
            mechanism="confident-gnmax",
            sigma2=10,
            threshold=5,
            sigma1=3,
            answered=np.array([2, 0]),
        )
    with pytest.raises(PateError, match="baseline: has shape"):
        analyze(
            votes,
            mechanism="confident-gnmax",
            sigma2=10,
            threshold=5,
            sigma1=3,
            baseline=np.zeros((3, 2)),
        )


def test_plan_refuses_bad_input():
    base = {"epsilon": 1.0, "delta": 1e-5, "queries": 100, "teachers": 250, "classes": 10}
    for change, message in [
        ({"epsilon": 0}, "Expected epsilon=0"),
        ({"delta": 1.5}, "Expected delta=1.5"),
        ({"queries": 0}, "queries=0"),
        ({"classes": 1}, "classes=1"),
        ({"answered_fraction": 0}, "answered_fraction=0"),
        ({"threshold_share": 1}, "threshold_share=1"),
        ({"epsilon": 1e-9, "conversion": "classic"}, "cannot certify"),
        ({"mechanism": "lnmax"}, "mechanism is 'lnmax'"),
    ]:
        with pytest.raises(PateError, match=message):
            plan(**{**base, **change})


def test_plan_report_and_warnings():
    result = plan(
        epsilon=1.0, delta=1e-5, queries=1000, teachers=50, classes=10, answered_fraction=0.3
    )
    data = result.to_dict()
    assert set(data["gnmax"]) == {"sigma", "epsilon", "order"}
    assert set(data["confident_gnmax"]) == {
        "threshold",
        "sigma1",
        "sigma2",
        "answered",
        "threshold_share",
        "epsilon",
        "order",
    }
    assert data["confident_gnmax"]["threshold"] == 40
    assert data["confident_gnmax"]["answered"] == 300
    assert data["gnmax"]["epsilon"] <= 1.0 and data["confident_gnmax"]["epsilon"] <= 1.0
    assert any("exceeds half the 50 teachers" in w for w in data["warnings"])
    assert any("at most 300 of the 1000" in w for w in data["warnings"])
    only = plan(epsilon=1.0, delta=1e-5, queries=10, teachers=250, classes=10, mechanism="gnmax")
    assert only.confident_gnmax is None and "confident_gnmax" not in only.to_dict()


def test_fractional_votes_round_half_to_even():
    """Interactive-GNMax's discounted votes: max(votes) is rounded as Python's round does."""
    from scipy.stats import norm

    for top, rounded in [(124.5, 124), (125.5, 126), (199.5, 200), (200.5, 200), (3.4, 3)]:
        votes = np.array([[top, 1.25, -0.5]])
        expected = norm.logsf(210 - rounded, scale=30)
        assert logpr_answered(votes, 210, 30)[0] == pytest.approx(expected, rel=1e-14)
        assert round(top) == rounded


def test_analyze_file_reads_votes_answered_and_baseline(tmp_path):
    np.save(tmp_path / "votes.npy", VOTES)
    answered = np.arange(len(VOTES)) % 2
    np.save(tmp_path / "answered.npy", answered)
    np.save(tmp_path / "baseline.npy", np.zeros_like(VOTES))
    options = {"threshold": 200, "sigma1": 150, "sigma2": 40, "delta": [1e-5, 1e-8]}
    from_file = analyze_file(
        tmp_path / "votes.npy",
        mechanism="confident-gnmax",
        answered=tmp_path / "answered.npy",
        baseline=tmp_path / "baseline.npy",
        **options,
    )
    direct = analyze(
        VOTES,
        mechanism="confident-gnmax",
        answered=answered,
        baseline=np.zeros_like(VOTES),
        **options,
    )
    assert json.dumps(from_file.to_dict()) == json.dumps(direct.to_dict())
    assert analyze_file(tmp_path / "votes.npy", sigma=40).mechanism == "gnmax"
    with pytest.raises(PateError, match=f"{tmp_path / 'votes.npy'}: row 0 sums to"):
        analyze_file(tmp_path / "votes.npy", sigma=40, teachers=3)


def test_bounds_and_notes():
    report = analyze(VOTES, mechanism="confident-gnmax", threshold=200, sigma1=150, sigma2=40,
                     delta=[1e-5, 1e-8], answered=np.array([1, 0, 1, 0, 1]))  # fmt: skip
    labels = [label for label, _, _ in report.bounds()]
    assert labels == [
        label
        for label in (
            "data-independent",
            "data-independent, all answered",
            "data-dependent",
            "realised data-independent",
            "realised data-dependent",
        )
        for _ in range(2)
    ]
    assert [delta for _, delta, _ in report.bounds()][:2] == [1e-5, 1e-8]
    assert report.bounds()[4][2] == report.data_dependent[0]
    notes = report.notes()
    assert notes[0].startswith("Expected answered: ") and notes[1].startswith("Realised: ")
    assert "through `smooth_sensitivity`" in notes[-1]
    released = analyze(VOTES, mechanism="gnmax", sigma=40, smooth_sensitivity=True).notes()
    assert len(released) == 1 and "Smooth-sensitivity release at delta=1e-05" in released[0]
    lnmax = analyze(VOTES, mechanism="lnmax", scale=20).notes()
    assert lnmax[0].startswith("PATE 2017 moments accountant (gamma=0.05)")


def test_sizing_buys_what_plan_certifies_and_warns_where_data_is_thin():
    from pate.accounting import plan, size_teachers

    result = size_teachers(
        epsilon=2.0, individuals=2500, records=100_000, classes=6, public_size=3000, agreement=0.8
    )
    rows = {row.teachers: row for row in result.rows}
    assert rows[250].individuals_per_teacher == 10 and rows[250].records_per_teacher == 400
    # More teachers, a larger margin, more noise tolerated, more answers.
    counts = [row.queries for row in result.rows]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    # The answers bought are what plan() certifies: at that many queries it needs no more noise.
    row = rows[100]
    suggested = plan(epsilon=2.0, queries=row.queries, teachers=100, classes=6, mechanism="gnmax")
    assert suggested.gnmax.sigma <= row.sigma * (1 + 1e-9)
    over = plan(epsilon=2.0, queries=row.queries + 1, teachers=100, classes=6, mechanism="gnmax")
    assert over.gnmax.sigma > row.sigma
    assert any("too few for a useful student" in w for w in rows[25].warnings)
    assert any("the public pool has 3000" in w for w in rows[500].warnings)
    assert rows[500].queries == 3000
    assert "assumed teacher agreement of 80%" in result.assumption
    tiny = size_teachers(epsilon=2.0, individuals=30, classes=2, teacher_counts=(50,))
    assert "fewer individuals than teachers" in tiny.rows[0].warnings[0]
