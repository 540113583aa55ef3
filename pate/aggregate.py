"""The PATE aggregators: LNMax, GNMax, Confident-GNMax and Interactive-GNMax.

Each is a pure function of a (queries, classes) integer vote array and a
:class:`~pate.noise.NoiseSource`; it draws exact integer noise (discrete Laplace or discrete Gaussian,
see :mod:`pate.noise`) and returns labels. Nothing here prints, charges budget or writes files: the
caller charges the ledger *before* it releases what these functions return.

The invariant every bound below needs: adding or removing one individual changes one shard, hence one
teacher, hence moves at most one vote of each query from one class to another. So a vote histogram
``n`` has L1 sensitivity 2 and L2 sensitivity ``sqrt(2)``, and ``max_j n_j`` (or
``max_j (n_j - m p_j)`` for public ``p``) has sensitivity 1.

Ties. Every argmax here (the noisy vote argmax and the student's argmax) breaks ties toward the
**smallest class index** (NumPy's ``argmax``). Discrete noise makes ties happen with positive
probability, so the data-dependent bounds of :mod:`pate.accounting.discrete`
(``logq_gnmax_discrete``, ``logq_lnmax_discrete``) are computed for exactly this rule.

Threshold checks with integer noise. A query passes the check iff ``s + Z >= T`` where ``s`` is the
(real-valued) statistic, ``T`` the threshold and ``Z ~ N_Z(0, sigma1^2)`` an integer. Since ``Z`` is an
integer this is exactly ``Z >= c`` with the integer offset ``c = ceil(T - s)`` (:func:`threshold_offsets`,
computed exactly, with rational arithmetic where floating point could round across an integer). ``s``
has sensitivity 1 and ``ceil`` maps values at most 1 apart to integers at most 1 apart, so ``c`` is an
integer statistic of sensitivity 1 and the pass/fail bit is post-processing of the discrete Gaussian
mechanism on ``-c``: ``(alpha, alpha / (2 sigma1^2))``-RDP, the papers' data-independent threshold bound
(PATE 2018 §4.2). Its exact data-dependent probability is ``Pr[answered] = Pr[Z >= c]``
(:func:`pate.accounting.discrete.log_pr_answered_discrete`); the papers' continuous formula
``Phi_bar((T - round(s)) / sigma1)`` is not a bound for integer noise and must not be used for answers
noised here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from pate.errors import PateError
from pate.noise import NoiseSource

__all__ = [
    "AggregateResult",
    "AggregatorConfig",
    "ConfidentGNMaxConfig",
    "GNMaxConfig",
    "InteractiveGNMaxConfig",
    "LNMaxConfig",
    "aggregate",
    "aggregator_config",
    "confident_gnmax",
    "confident_gnmax_defaults",
    "gnmax",
    "interactive_gnmax",
    "lnmax",
    "threshold_offsets",
]

MECHANISMS = ("lnmax", "gnmax", "confident-gnmax", "interactive-gnmax")


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise PateError(f"Expected {name}={value!r} to be a number > 0.")
    if not math.isfinite(value) or value <= 0:
        raise PateError(f"Expected {name}={value} > 0.")


def _finite(name: str, value: float) -> None:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise PateError(f"Expected {name}={value!r} to be a finite number.")
    if not math.isfinite(value):
        raise PateError(f"Expected {name}={value} to be finite.")


class _Config:
    mechanism: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """``{"mechanism": ..., <parameters>}`` with plain floats, for ledgers and reports."""
        return {"mechanism": self.mechanism, **{k: float(v) for k, v in asdict(self).items()}}  # type: ignore[call-overload]


@dataclass(frozen=True)
class LNMaxConfig(_Config):
    """LNMax (PATE 2017 §3): discrete Laplace noise of scale ``scale`` on every count.

    Guarantee: ``2 / scale``-DP per answer (L1 sensitivity 2; ``P(x)/P(x+1) <= e^{1/scale}``).
    """

    scale: float
    mechanism: ClassVar[str] = "lnmax"

    def __post_init__(self) -> None:
        _positive("scale", self.scale)


@dataclass(frozen=True)
class GNMaxConfig(_Config):
    """GNMax (PATE 2018 §4.1): discrete Gaussian noise ``sigma`` on every count.

    Guarantee: ``(alpha, alpha / sigma^2)``-RDP per answer (PATE 2018 Proposition 8; holds for the
    discrete Gaussian, see :mod:`pate.noise`).
    """

    sigma: float
    mechanism: ClassVar[str] = "gnmax"

    def __post_init__(self) -> None:
        _positive("sigma", self.sigma)


@dataclass(frozen=True)
class ConfidentGNMaxConfig(_Config):
    """Confident-GNMax (PATE 2018 Algorithm 1): threshold ``T`` with noise ``sigma1``, then GNMax ``sigma2``."""

    threshold: float
    sigma1: float
    sigma2: float
    mechanism: ClassVar[str] = "confident-gnmax"

    def __post_init__(self) -> None:
        _finite("threshold", self.threshold)
        _positive("sigma1", self.sigma1)
        _positive("sigma2", self.sigma2)


@dataclass(frozen=True)
class InteractiveGNMaxConfig(_Config):
    """Interactive-GNMax (PATE 2018 Algorithm 2): the threshold applies to ``max_j(n_j - m p_j)``; a
    query the teachers do not answer is labelled by the student when ``max_j p_j > student_confidence``.
    """

    threshold: float
    sigma1: float
    sigma2: float
    student_confidence: float
    mechanism: ClassVar[str] = "interactive-gnmax"

    def __post_init__(self) -> None:
        _finite("threshold", self.threshold)
        _positive("sigma1", self.sigma1)
        _positive("sigma2", self.sigma2)
        _finite("student_confidence", self.student_confidence)
        if not 0.0 <= self.student_confidence <= 1.0:
            raise PateError(f"Expected student_confidence={self.student_confidence} in [0, 1].")


AggregatorConfig = LNMaxConfig | GNMaxConfig | ConfidentGNMaxConfig | InteractiveGNMaxConfig

# The default threshold and threshold noise of Confident-/Interactive-GNMax, as shares of the number
# of teachers and of the threshold: PATE 2018's MNIST setting (T = 200 of 250 teachers, sigma1 = 150).
DEFAULT_THRESHOLD_SHARE = 0.8
DEFAULT_SIGMA1_SHARE = 0.75


def confident_gnmax_defaults(
    num_teachers: int, *, threshold: float | None = None, sigma1: float | None = None
) -> tuple[float, float]:
    """``(threshold, sigma1)`` for Confident-/Interactive-GNMax, filling in what is not given.

    The threshold defaults to 80% of the teachers and sigma1 to 75% of the threshold: the ratios of
    PATE 2018's MNIST setting (250 teachers, T = 200, sigma1 = 150). Both are functions of public
    quantities (the number of teachers and the options), so they may depend on nothing else.
    ``pate label-and-distill`` and ``pate plan`` both use this one function.

    >>> confident_gnmax_defaults(250)
    (200.0, 150.0)
    >>> confident_gnmax_defaults(250, threshold=180.0)
    (180.0, 135.0)
    """
    if isinstance(num_teachers, bool) or int(num_teachers) != num_teachers or num_teachers < 1:
        raise PateError(f"Expected num_teachers={num_teachers} to be a positive integer.")
    if threshold is None:
        threshold = float(math.ceil(DEFAULT_THRESHOLD_SHARE * num_teachers))
    _finite("threshold", threshold)
    if sigma1 is None:
        sigma1 = DEFAULT_SIGMA1_SHARE * abs(float(threshold)) or 1.0
    _positive("sigma1", sigma1)
    return float(threshold), float(sigma1)


def aggregator_config(
    mechanism: str,
    num_teachers: int,
    *,
    sigma: float = 40.0,
    scale: float = 20.0,
    threshold: float | None = None,
    sigma1: float | None = None,
    sigma2: float | None = None,
    student_confidence: float = 0.9,
) -> AggregatorConfig:
    """The aggregator ``mechanism`` with its parameters; unset ones get the documented defaults.

    ``sigma`` is GNMax's noise and the default ``sigma2`` of Confident-/Interactive-GNMax; the
    threshold and ``sigma1`` default by :func:`confident_gnmax_defaults`.
    """
    if mechanism == "gnmax":
        return GNMaxConfig(sigma)
    if mechanism == "lnmax":
        return LNMaxConfig(scale)
    if mechanism not in ("confident-gnmax", "interactive-gnmax"):
        raise PateError(f"Expected aggregator={mechanism!r} in {', '.join(MECHANISMS)}.")
    threshold, sigma1 = confident_gnmax_defaults(num_teachers, threshold=threshold, sigma1=sigma1)
    sigma2 = sigma if sigma2 is None else sigma2
    if mechanism == "confident-gnmax":
        return ConfidentGNMaxConfig(threshold, sigma1, sigma2)
    return InteractiveGNMaxConfig(threshold, sigma1, sigma2, student_confidence)


@dataclass(frozen=True)
class AggregateResult:
    """What an aggregator released for a batch of Q queries.

    Attributes:
        labels: (Q,) int64, the released label, ``-1`` where the query was not answered.
        answered: (Q,) bool, a label was released (by the teachers or, in Interactive-GNMax, the student).
        teacher_answered: (Q,) bool, the label came from the noisy teacher votes: these queries pay the
            GNMax (or LNMax) step.
        threshold_checked: (Q,) bool, the query paid a noisy threshold check (every query of
            Confident-/Interactive-GNMax, none of plain GNMax/LNMax).
    """

    labels: np.ndarray
    answered: np.ndarray
    teacher_answered: np.ndarray
    threshold_checked: np.ndarray

    def __post_init__(self) -> None:
        shape = self.labels.shape
        for name in ("answered", "teacher_answered", "threshold_checked"):
            if getattr(self, name).shape != shape:
                raise PateError(
                    f"AggregateResult.{name} has shape {getattr(self, name).shape}, expected {shape}"
                )


# ----------------------------------------------------------------------------------------------------
# Input checks


def _check_votes(votes: np.ndarray) -> np.ndarray:
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] < 2:
        raise PateError(f"votes has shape {votes.shape}, expected (queries, classes >= 2)")
    if votes.dtype.kind not in "iu":
        raise PateError(f"votes have dtype {votes.dtype}, expected integer counts")
    if votes.size and votes.min() < 0:
        raise PateError(f"votes hold {votes.min()}, expected non-negative counts")
    return votes.astype(np.int64, copy=False)


def _check_student_probs(student_probs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    probs = np.asarray(student_probs)
    if probs.shape != shape:
        raise PateError(f"student_probs has shape {probs.shape}, expected {shape} like the votes")
    if probs.dtype.kind not in "f":
        raise PateError(f"student_probs have dtype {probs.dtype}, expected floats")
    probs = probs.astype(np.float64)
    if probs.size and (not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1):
        raise PateError("student_probs hold values outside [0, 1], expected probabilities")
    return probs


def _num_teachers(votes: np.ndarray, num_teachers: int | None) -> int:
    totals = votes.sum(axis=1)
    if num_teachers is not None:
        if (
            isinstance(num_teachers, bool)
            or not isinstance(num_teachers, (int, np.integer))
            or num_teachers < 1
        ):
            raise PateError(f"Expected num_teachers={num_teachers!r} >= 1.")
        return int(num_teachers)
    if totals.size == 0:
        return 0
    if totals.min() != totals.max():
        raise PateError(
            f"votes rows sum to {totals.min()}..{totals.max()} teachers, expected the same number "
            "in every row (pass num_teachers)"
        )
    return int(totals[0])


# ----------------------------------------------------------------------------------------------------
# The threshold statistic, exactly


def threshold_offsets(
    votes: np.ndarray,
    threshold: float,
    *,
    student_probs: np.ndarray | None = None,
    num_teachers: int | None = None,
) -> np.ndarray:
    """Integer offsets ``c`` with: a query passes the noisy threshold check iff ``Z >= c``.

    ``c = ceil(T - s)`` with ``s = max_j n_j`` (Confident-GNMax) or ``s = max_j (n_j - m p_j)``
    (Interactive-GNMax, ``m`` = number of teachers, ``p`` the student's probabilities). Exact: the
    statistic is evaluated in float64 and re-evaluated in rational arithmetic (``Fraction``) for the
    queries whose ``T - s`` lies within ``1e-12 (m + |T| + 1)`` of an integer, a margin far above the
    float64 rounding error (about ``4e-16 (m + |T|)``), so ``c`` is ``ceil`` of the exact real value.
    ``c`` has sensitivity 1 (module docstring); the data-dependent probability of answering is
    ``Pr[Z >= c]`` (:func:`pate.accounting.discrete.log_pr_answered_discrete`).
    """
    _finite("threshold", threshold)
    votes = _check_votes(votes)
    if student_probs is None:
        return (math.ceil(threshold) - votes.max(axis=1)).astype(np.int64)
    probs = _check_student_probs(student_probs, votes.shape)
    m = _num_teachers(votes, num_teachers)
    statistic = (votes - m * probs).max(axis=1)
    distance = threshold - statistic
    offsets = np.ceil(distance)
    tolerance = 1e-12 * (m + abs(threshold) + 1.0)
    borderline = np.flatnonzero(np.abs(distance - np.round(distance)) <= tolerance)
    exact_threshold = Fraction(threshold)
    for row in borderline:
        exact = max(
            Fraction(int(n)) - m * Fraction(float(p))
            for n, p in zip(votes[row], probs[row], strict=True)
        )
        offsets[row] = math.ceil(exact_threshold - exact)
    return offsets.astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# Aggregators


def _noisy_argmax(votes: np.ndarray, noise_values: np.ndarray) -> np.ndarray:
    # np.argmax returns the first maximum: ties go to the smallest class index.
    return np.argmax(votes + noise_values, axis=1).astype(np.int64)


def gnmax(votes: np.ndarray, *, sigma: float, noise: NoiseSource) -> np.ndarray:
    """GNMax (PATE 2018 §4.1): ``argmax_j (n_j + Z_j)``, ``Z_j ~ N_Z(0, sigma^2)`` iid, ties to the
    smallest index.

    Guarantee: ``(alpha, alpha / sigma^2)``-RDP per query (Proposition 8), the accountant's
    data-independent bound. Data-dependent: Theorem 6 with ``q~`` from
    :func:`pate.accounting.discrete.logq_gnmax_discrete` (not the continuous Proposition 7, see
    :mod:`pate.accounting.discrete`).

    Returns:
        (Q,) int64 labels; every query is answered.
    """
    GNMaxConfig(sigma)
    votes = _check_votes(votes)
    return _noisy_argmax(votes, noise.discrete_gaussian(sigma, votes.shape))


def lnmax(votes: np.ndarray, *, scale: float, noise: NoiseSource) -> np.ndarray:
    """LNMax (PATE 2017 §3): ``argmax_j (n_j + Z_j)``, ``Z_j`` iid discrete Laplace with
    ``P(z) ∝ exp(-|z| / scale)``, ties to the smallest index.

    Guarantee: ``epsilon = 2 / scale`` pure DP per query (L1 sensitivity 2), the accountant's
    data-independent bound (PATE 2017's Laplace noise ``Lap(1/gamma)`` with ``gamma = 1/scale``).
    Data-dependent: the pure-DP bound of PATE 2017 Theorem 3 with ``q~`` from
    :func:`pate.accounting.discrete.logq_lnmax_discrete`.

    Returns:
        (Q,) int64 labels; every query is answered.
    """
    LNMaxConfig(scale)
    votes = _check_votes(votes)
    return _noisy_argmax(votes, noise.discrete_laplace(scale, votes.shape))


def _thresholded(
    votes: np.ndarray,
    offsets: np.ndarray,
    *,
    sigma1: float,
    sigma2: float,
    noise: NoiseSource,
) -> tuple[np.ndarray, np.ndarray]:
    passed = noise.discrete_gaussian(sigma1, votes.shape[0]) >= offsets
    labels = np.full(votes.shape[0], -1, dtype=np.int64)
    rows = np.flatnonzero(passed)
    if rows.size:
        labels[rows] = _noisy_argmax(
            votes[rows], noise.discrete_gaussian(sigma2, (rows.size, votes.shape[1]))
        )
    return labels, passed


def confident_gnmax(
    votes: np.ndarray,
    *,
    threshold: float,
    sigma1: float,
    sigma2: float,
    noise: NoiseSource,
) -> AggregateResult:
    """Confident-GNMax (PATE 2018 Algorithm 1).

    For each query: if ``max_j n_j + Z1 >= T`` with ``Z1 ~ N_Z(0, sigma1^2)`` (i.e. ``Z1 >= c``, see
    :func:`threshold_offsets`), answer GNMax with ``sigma2``; otherwise answer nothing.

    Guarantee (charged by the accountant, realised not expected): every query pays the threshold check,
    ``(alpha, alpha / (2 sigma1^2))``-RDP (``max_j n_j`` has sensitivity 1); each answered query also
    pays GNMax, ``(alpha, alpha / sigma2^2)``. Data-dependent: Theorem 6 for the check with
    :func:`pate.accounting.discrete.log_pr_answered_discrete`, and for the answer with
    :func:`pate.accounting.discrete.logq_gnmax_discrete`.

    Returns:
        labels (-1 where unanswered), answered == teacher_answered, threshold_checked all True.
    """
    ConfidentGNMaxConfig(threshold, sigma1, sigma2)
    votes = _check_votes(votes)
    labels, passed = _thresholded(
        votes, threshold_offsets(votes, threshold), sigma1=sigma1, sigma2=sigma2, noise=noise
    )
    return AggregateResult(
        labels=labels,
        answered=passed.copy(),
        teacher_answered=passed,
        threshold_checked=np.ones(votes.shape[0], dtype=bool),
    )


def interactive_gnmax(
    votes: np.ndarray,
    student_probs: np.ndarray,
    *,
    threshold: float,
    sigma1: float,
    sigma2: float,
    student_confidence: float,
    noise: NoiseSource,
    num_teachers: int | None = None,
) -> AggregateResult:
    """Interactive-GNMax (PATE 2018 Algorithm 2).

    For each query, with ``m`` teachers (``num_teachers``, default: the common row sum of ``votes``) and
    the student's probabilities ``p``: if ``max_j (n_j - m p_j) + Z1 >= T`` (exactly ``Z1 >= c``, see
    :func:`threshold_offsets`), the teachers answer ``argmax_j (n_j + Z2_j)`` with
    ``Z2 ~ N_Z(0, sigma2^2)``; else if ``max_j p_j > student_confidence`` the student's own
    ``argmax_j p_j`` is the label; else no answer. Ties go to the smallest index.

    Guarantee: ``p`` depends only on public data and earlier released answers, so
    ``max_j (n_j - m p_j)`` has sensitivity 1 and every query pays the threshold check,
    ``(alpha, alpha / (2 sigma1^2))``-RDP; teacher-answered queries also pay GNMax,
    ``(alpha, alpha / sigma2^2)``. A student-answered query costs nothing beyond its check (its label is a
    function of the check's outcome and public ``p``).

    Returns:
        labels, answered (teachers or student), teacher_answered (pays GNMax), threshold_checked (all).
    """
    InteractiveGNMaxConfig(threshold, sigma1, sigma2, student_confidence)
    votes = _check_votes(votes)
    probs = _check_student_probs(student_probs, votes.shape)
    offsets = threshold_offsets(votes, threshold, student_probs=probs, num_teachers=num_teachers)
    labels, passed = _thresholded(votes, offsets, sigma1=sigma1, sigma2=sigma2, noise=noise)
    student = ~passed & (probs.max(axis=1) > student_confidence)
    labels[student] = np.argmax(probs[student], axis=1)
    return AggregateResult(
        labels=labels,
        answered=passed | student,
        teacher_answered=passed,
        threshold_checked=np.ones(votes.shape[0], dtype=bool),
    )


def aggregate(
    votes: np.ndarray,
    config: AggregatorConfig,
    noise: NoiseSource,
    student_probs: np.ndarray | None = None,
    *,
    num_teachers: int | None = None,
) -> AggregateResult:
    """Run the aggregator ``config`` names on ``votes``.

    GNMax and LNMax answer every query (``threshold_checked`` all False). ``student_probs`` (and
    optionally ``num_teachers``) is required by Interactive-GNMax and refused by the others.
    """
    if not isinstance(
        config, (LNMaxConfig, GNMaxConfig, ConfidentGNMaxConfig, InteractiveGNMaxConfig)
    ):
        raise PateError(
            f"aggregator config is {type(config).__name__}, expected one of {', '.join(MECHANISMS)}"
        )
    if isinstance(config, InteractiveGNMaxConfig):
        if student_probs is None:
            raise PateError(
                "interactive-gnmax needs the student's probabilities, expected student_probs"
            )
        return interactive_gnmax(
            votes,
            student_probs,
            threshold=config.threshold,
            sigma1=config.sigma1,
            sigma2=config.sigma2,
            student_confidence=config.student_confidence,
            noise=noise,
            num_teachers=num_teachers,
        )
    if student_probs is not None:
        raise PateError(
            f"student_probs given for {config.mechanism}, expected none (interactive-gnmax only)"
        )
    if isinstance(config, ConfidentGNMaxConfig):
        return confident_gnmax(
            votes,
            threshold=config.threshold,
            sigma1=config.sigma1,
            sigma2=config.sigma2,
            noise=noise,
        )
    if isinstance(config, GNMaxConfig):
        labels = gnmax(votes, sigma=config.sigma, noise=noise)
    else:
        labels = lnmax(votes, scale=config.scale, noise=noise)
    every = np.ones(labels.shape[0], dtype=bool)
    return AggregateResult(
        labels=labels,
        answered=every,
        teacher_answered=every.copy(),
        threshold_checked=np.zeros(labels.shape[0], dtype=bool),
    )
