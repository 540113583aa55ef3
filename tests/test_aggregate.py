"""Tests of pate.aggregate on crafted vote arrays: majority, ties, thresholds, dispatch, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pate.accounting.discrete import log_pr_answered_discrete, log_tail_difference_discrete_gaussian
from pate.aggregate import (
    AggregateResult,
    ConfidentGNMaxConfig,
    GNMaxConfig,
    InteractiveGNMaxConfig,
    LNMaxConfig,
    aggregate,
    confident_gnmax,
    gnmax,
    interactive_gnmax,
    lnmax,
    threshold_offsets,
)
from pate.errors import PateError
from pate.noise import SeededNoise

TINY = 0.05  # P(N_Z(0, TINY^2) != 0) = ~2 exp(-200): noiseless for every practical purpose


def majority_votes(queries: int = 300, classes: int = 10, winner: int = 3) -> np.ndarray:
    votes = np.zeros((queries, classes), dtype=np.int64)
    votes[:, winner] = 1000
    votes[:, (winner + 1) % classes] = 50
    return votes


def test_gnmax_and_lnmax_return_a_clear_majority() -> None:
    votes = majority_votes()
    labels = gnmax(votes, sigma=40.0, noise=SeededNoise(1))
    assert labels.dtype == np.int64 and labels.shape == (300,)
    assert (labels == 3).all()
    assert (lnmax(votes, scale=20.0, noise=SeededNoise(2)) == 3).all()


def test_ties_go_to_the_smallest_class_index() -> None:
    votes = np.array([[5, 5, 0], [0, 5, 5], [2, 7, 7], [9, 0, 9]], dtype=np.int64)
    expected = [0, 1, 1, 0]
    assert gnmax(votes, sigma=TINY, noise=SeededNoise(3)).tolist() == expected
    assert lnmax(votes, scale=0.01, noise=SeededNoise(4)).tolist() == expected


def test_tie_frequency_matches_the_discrete_tail() -> None:
    """On a tie, class 0 wins iff Z1 - Z0 <= 0, i.e. with probability Pr[Z' - Z >= 0] > 1/2."""
    queries = 40_000
    votes = np.tile(np.array([[6, 6]], dtype=np.int64), (queries, 1))
    labels = gnmax(votes, sigma=2.0, noise=SeededNoise(5))
    p0 = math.exp(log_tail_difference_discrete_gaussian(np.array([0]), 2.0)[0])
    assert p0 > 0.5
    assert abs(np.mean(labels == 0) - p0) < 5 * math.sqrt(p0 * (1 - p0) / queries)


def test_gnmax_is_random_near_a_tie() -> None:
    votes = np.tile(np.array([[10, 9, 0]], dtype=np.int64), (2000, 1))
    labels = gnmax(votes, sigma=5.0, noise=SeededNoise(6))
    assert set(np.unique(labels)) == {0, 1, 2}


def test_confident_gnmax_with_a_huge_threshold_answers_nothing() -> None:
    votes = majority_votes(queries=50)
    result = confident_gnmax(votes, threshold=1e6, sigma1=150.0, sigma2=40.0, noise=SeededNoise(7))
    assert isinstance(result, AggregateResult)
    assert (result.labels == -1).all()
    assert not result.answered.any() and not result.teacher_answered.any()
    assert result.threshold_checked.all()


def test_confident_gnmax_below_and_above_threshold() -> None:
    votes = np.array([[200, 50, 0], [120, 100, 30], [0, 0, 250], [10, 10, 10]], dtype=np.int64)
    result = confident_gnmax(votes, threshold=150, sigma1=TINY, sigma2=TINY, noise=SeededNoise(8))
    assert result.answered.tolist() == [True, False, True, False]
    assert result.labels.tolist() == [0, -1, 2, -1]
    assert np.array_equal(result.answered, result.teacher_answered)
    assert result.threshold_checked.all()


def test_confident_threshold_is_inclusive_and_exact() -> None:
    votes = np.array([[200, 0]], dtype=np.int64)
    at = confident_gnmax(votes, threshold=200.0, sigma1=TINY, sigma2=TINY, noise=SeededNoise(9))
    assert at.answered.tolist() == [True]  # 200 + 0 >= 200
    above = confident_gnmax(votes, threshold=200.5, sigma1=TINY, sigma2=TINY, noise=SeededNoise(9))
    assert above.answered.tolist() == [False]  # 200 + 0 < 200.5 and the next integer noise is 1
    assert threshold_offsets(votes, 200.5).tolist() == [1]
    assert threshold_offsets(votes, 199.0).tolist() == [-1]


def test_confident_answer_rate_matches_the_exact_probability() -> None:
    queries = 20_000
    votes = np.tile(np.array([[100, 20, 5]], dtype=np.int64), (queries, 1))
    result = confident_gnmax(votes, threshold=104.5, sigma1=5.0, sigma2=1.0, noise=SeededNoise(10))
    log_answered, log_rejected = log_pr_answered_discrete(threshold_offsets(votes[:1], 104.5), 5.0)
    p = math.exp(log_answered[0])
    assert abs(result.answered.mean() - p) < 5 * math.sqrt(p * (1 - p) / queries)
    assert math.exp(log_answered[0]) + math.exp(log_rejected[0]) == pytest.approx(1.0, abs=1e-8)
    assert (result.labels[result.answered] == 0).all()


def interactive_case() -> tuple[np.ndarray, np.ndarray]:
    votes = np.array([[10, 0], [0, 10], [5, 5], [0, 10], [4, 6]], dtype=np.int64)
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5], [0.02, 0.98], [0.95, 0.05]])
    return votes, probs


def test_interactive_gnmax_follows_algorithm_2() -> None:
    votes, probs = interactive_case()
    # statistic max_j(n_j - 10 p_j): [0, 10, 0, 0.2, 5.5]; threshold 5
    result = interactive_gnmax(
        votes,
        probs,
        threshold=5.0,
        sigma1=TINY,
        sigma2=TINY,
        student_confidence=0.9,
        noise=SeededNoise(11),
    )
    assert result.teacher_answered.tolist() == [False, True, False, False, True]
    assert result.answered.tolist() == [True, True, False, True, True]
    assert result.labels.tolist() == [0, 1, -1, 1, 1]
    assert result.threshold_checked.all()
    assert threshold_offsets(votes, 5.0, student_probs=probs).tolist() == [5, -5, 5, 5, 0]


def test_interactive_student_never_answers_at_confidence_one() -> None:
    votes, probs = interactive_case()
    result = interactive_gnmax(
        votes,
        probs,
        threshold=1e6,
        sigma1=1.0,
        sigma2=1.0,
        student_confidence=1.0,
        noise=SeededNoise(12),
    )
    assert not result.answered.any() and result.threshold_checked.all()


def test_threshold_offsets_are_exact_where_float_rounding_would_cross_an_integer() -> None:
    # 10 * 0.1 rounds to 1.0 in float64, but the double 0.1 is slightly above 1/10: the exact statistic is
    # 3 - 10 * 0.1000000000000000055... = 1.99999999999999994..., so T - s = 5.5e-17 > 0 and c = 1.
    votes = np.array([[3, 7]], dtype=np.int64)
    probs = np.array([[0.1, 0.9]])
    assert float(2.0 - (votes - 10 * probs).max()) == 0.0  # what float64 alone would conclude
    assert threshold_offsets(votes, 2.0, student_probs=probs).tolist() == [1]
    assert threshold_offsets(votes, 2.0, student_probs=probs, num_teachers=10).tolist() == [1]


def test_aggregate_dispatches_on_the_config() -> None:
    votes = majority_votes(queries=20, classes=4, winner=2)
    for config in (GNMaxConfig(20.0), LNMaxConfig(10.0)):
        result = aggregate(votes, config, SeededNoise(13))
        assert (
            (result.labels == 2).all() and result.answered.all() and result.teacher_answered.all()
        )
        assert not result.threshold_checked.any()
    confident = aggregate(votes, ConfidentGNMaxConfig(500.0, 50.0, 20.0), SeededNoise(14))
    assert confident.threshold_checked.all() and (confident.labels[confident.answered] == 2).all()
    probs = np.full(votes.shape, 0.25)
    interactive = aggregate(
        votes, InteractiveGNMaxConfig(300.0, 50.0, 20.0, 0.9), SeededNoise(15), probs
    )
    assert interactive.teacher_answered.all()  # statistic 1000 - 262.5 far above 300
    with pytest.raises(PateError, match="student_probs"):
        aggregate(votes, InteractiveGNMaxConfig(300.0, 50.0, 20.0, 0.9), SeededNoise(15))
    with pytest.raises(PateError, match="expected none"):
        aggregate(votes, GNMaxConfig(20.0), SeededNoise(15), probs)
    with pytest.raises(PateError, match="aggregator config"):
        aggregate(votes, {"sigma": 1.0}, SeededNoise(15))  # type: ignore[arg-type]


def test_configs_validate_and_describe_themselves() -> None:
    assert GNMaxConfig(40.0).mechanism == "gnmax"
    assert LNMaxConfig(20.0).mechanism == "lnmax"
    assert ConfidentGNMaxConfig(200.0, 150.0, 40.0).mechanism == "confident-gnmax"
    assert InteractiveGNMaxConfig(200.0, 150.0, 40.0, 0.9).mechanism == "interactive-gnmax"
    assert ConfidentGNMaxConfig(200, 150, 40).to_dict() == {
        "mechanism": "confident-gnmax",
        "threshold": 200.0,
        "sigma1": 150.0,
        "sigma2": 40.0,
    }
    with pytest.raises(PateError, match=r"^Expected sigma=-1 > 0\.$"):
        GNMaxConfig(-1)
    with pytest.raises(PateError, match=r"Expected scale=0 > 0\."):
        LNMaxConfig(0)
    with pytest.raises(PateError, match=r"Expected threshold=nan to be finite\."):
        ConfidentGNMaxConfig(float("nan"), 1.0, 1.0)
    with pytest.raises(PateError, match=r"Expected sigma2=inf > 0\."):
        ConfidentGNMaxConfig(1.0, 1.0, float("inf"))
    with pytest.raises(PateError, match=r"student_confidence=1.5 in \[0, 1\]"):
        InteractiveGNMaxConfig(1.0, 1.0, 1.0, 1.5)
    with pytest.raises(AttributeError):
        GNMaxConfig(1.0).sigma = 2.0  # type: ignore[misc]


def test_bad_votes_and_probabilities_are_refused() -> None:
    noise = SeededNoise(16)
    with pytest.raises(PateError, match=r"votes has shape \(3,\)"):
        gnmax(np.array([1, 2, 3]), sigma=1.0, noise=noise)
    with pytest.raises(PateError, match="dtype float64, expected integer"):
        gnmax(np.array([[1.0, 2.0]]), sigma=1.0, noise=noise)
    with pytest.raises(PateError, match="votes hold -1"):
        lnmax(np.array([[1, -1]]), scale=1.0, noise=noise)
    votes = np.array([[3, 7], [4, 5]], dtype=np.int64)
    probs = np.array([[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(PateError, match="rows sum to 9..10 teachers"):
        threshold_offsets(votes, 1.0, student_probs=probs)
    with pytest.raises(PateError, match="student_probs has shape"):
        threshold_offsets(votes, 1.0, student_probs=probs[:1])
    with pytest.raises(PateError, match="outside"):
        threshold_offsets(votes, 1.0, student_probs=probs + 0.6, num_teachers=10)
    with pytest.raises(PateError, match="num_teachers"):
        threshold_offsets(votes, 1.0, student_probs=probs, num_teachers=0)


def test_empty_batches() -> None:
    votes = np.zeros((0, 3), dtype=np.int64)
    assert gnmax(votes, sigma=1.0, noise=SeededNoise(17)).shape == (0,)
    result = confident_gnmax(votes, threshold=1.0, sigma1=1.0, sigma2=1.0, noise=SeededNoise(17))
    assert result.labels.shape == (0,) and result.threshold_checked.shape == (0,)
