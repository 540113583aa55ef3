"""Empirical lower bounds on epsilon, held against the accountant's upper bound (``pate audit``).

The accountant *claims* an upper bound: one query of the aggregator is ``(eps_up, delta)``-DP (the
data-independent RDP curve of :func:`pate.labeling.worst_case_rdp`, converted at ``delta``), and ``k``
queries are ``(eps_up(k), delta)``-DP. This module *measures* a lower bound by running the real
aggregator (:func:`pate.aggregate.aggregate`, exact integer noise) many times on two neighbouring vote
histograms, in the manner of statistical DP testers and of Chadha et al. (ICML 2024, "Auditing private
prediction"). A lower bound above the claimed upper bound is a bug, in the aggregator or in the
accountant, at confidence ``confidence``.

Neighbours. One individual changes one teacher, which moves at most one vote of each query from one
class to another. The audit uses the pairs ``D = (x, N - x, 0, ..., 0)`` and
``D' = (x + 1, N - x - 1, 0, ..., 0)`` (``N`` teachers, all other classes empty): the most sensitive
place for the noisy argmax is a two-class race, and for the threshold check of Confident- and
Interactive-GNMax the maximum ``x`` (or ``x + 1``) sits near the threshold. A grid of ``x`` is searched
(gaps of 0 to 4 noise scales between the two classes, and maxima from one ``sigma1`` above to two below
the threshold). The output of one query is one of four categories (no answer, label 0, label 1, another
label); every non-empty proper subset ``E`` of them is a candidate event.

Statistic, one query. (eps, delta)-DP implies ``Pr[M(D) in E] <= e^eps Pr[M(D') in E] + delta`` for every
``E`` and both orders of the pair, so with ``p = Pr[M(D) in E]`` and ``p' = Pr[M(D') in E]``::

    eps >= ln((p - delta) / p')

The audit replaces ``p`` by its one-sided Clopper-Pearson lower bound and ``p'`` by its upper bound
(exact binomial intervals, quantiles of the beta distribution), each at level ``alpha / M`` with
``alpha = 1 - confidence`` and ``M`` the number of intervals (below); ``eps_low = max(0, ...)``.

Statistic, k queries ("composed"). The same individual may sit behind every one of ``k`` identical
queries, so the ``k``-fold run on ``(D, D')`` is a pair of neighbours for ``k`` queries. The count of
queries whose output is in ``E`` is ``Binomial(k, p)`` (the aggregator draws fresh noise for every
query: the one assumption here, the same the accountant makes when it composes), and the event
``count >= t`` gives ``eps(k) >= ln((P[Bin(k, p) >= t] - delta) / P[Bin(k, p') >= t])``. The binomial
tail increases with its probability, so plugging in the same Clopper-Pearson bounds (``p`` low, ``p'``
high) keeps it a lower bound; the best ``t`` is searched exactly (no data is used to choose it).

Honesty of the search. The pair, the event and its order are chosen *before* any trial is run, by a
plan: the exact output distribution of the claimed aggregator on every candidate pair (the discrete
Gaussian or Laplace pmf, summed on a grid; :func:`planned_probabilities`) gives the bound that
``trials`` runs would reach, and the best pair and event are kept, one for one query and one for
``queries``. Only then is the real aggregator run, ``trials`` times per histogram of the chosen
pairs, and only those runs enter the reported bounds. The choice depends on no trial, so the search
itself needs no correction. (A pilot run was tried first: at realistic noise its 20,000 runs per pair
could not tell the candidates apart, and it chose an event without signal for half of the seeds.)
A plan made for the claim alone can miss a bug that leaks *elsewhere*: Confident-GNMax with both
noises four times too small almost never answers at the tie that is best for the claim, and leaks at
the threshold instead. So one test per claim is planned for each ``plan_noise_factors`` (default: the
claimed noise, and the noise times 0.25), the aggregator is run on every planned pair, and each
claim reports its largest bound. That is ``M = 2 claims x len(plan_noise_factors) tests x 2 sides``
one-sided intervals (8 by default), each at ``alpha / M`` (Bonferroni): all of them, hence both
reported lower bounds, hold together with probability at least ``confidence``, and a correct
aggregator with a correct accountant is reported FAIL with probability at most ``alpha``.

The exact check. The same statistic evaluated at the claimed aggregator's exact probabilities, best
over every pair ``(x, x + 1)`` (:func:`ceiling`), is a lower bound on the claimed aggregator's epsilon
with no sampling at all. It shows how much of the gap to the upper bound is the audit's own limit and
how much the cost of finite trials; and a ceiling above the upper bound is an accountant bug whatever
the aggregator's code (the verdict is FAIL too). It rests on :func:`planned_probabilities`, which the
tests check against the real aggregator's frequencies.

What is not claimed: the lower bound is for these pairs and these events, so it is far below the upper
bound when the argmax hides most of the noisy histogram (a realistic ``sigma`` against 250 teachers
leaves little room); the composed bound assumes independent noise across queries (a bug that reuses
noise across queries is not looked for).

Everything here is host-side NumPy/SciPy and never prints; the audit's own noise is
:class:`~pate.noise.SeededNoise` (``seed``) or, with ``seed=None``, the OS CSPRNG.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special, stats

from pate.accounting import epsilon_from_rdp, resolve_orders
from pate.aggregate import (
    AggregateResult,
    AggregatorConfig,
    ConfidentGNMaxConfig,
    GNMaxConfig,
    InteractiveGNMaxConfig,
    LNMaxConfig,
    aggregate,
    threshold_offsets,
)
from pate.errors import PateError
from pate.labeling import worst_case_rdp
from pate.noise import NoiseSource, make_noise

__all__ = [
    "AUDIT_FAILED_EXIT",
    "AuditConfig",
    "AuditResult",
    "MAX_CLASSES",
    "NOISE_SCALE_RANGE",
    "Bound",
    "Mechanism",
    "audit",
    "ceiling",
    "claimed_config",
    "clopper_pearson",
    "epsilon_lower_bound",
    "epsilon_lower_bound_composed",
    "log_binomial_sf",
    "neighbour_pairs",
    "plan",
    "planned_probabilities",
]

#: The CLI's exit status when the audit finds a lower bound above the claimed upper bound.
AUDIT_FAILED_EXIT = 5

#: A mechanism under audit: ``(votes (n, C), noise) -> AggregateResult``. The default runs
#: :func:`pate.aggregate.aggregate` with the audited configuration.
Mechanism = Callable[[np.ndarray, NoiseSource], AggregateResult]

CATEGORIES = ("no answer", "label 0", "label 1", "another label")
#: Every non-empty proper subset of the categories, as boolean masks (14 events).
EVENTS = tuple(
    np.array([i in subset for i in range(4)])
    for size in (1, 2, 3)
    for subset in itertools.combinations(range(4), size)
)
_EXACT_TOLERANCE = 1e-9  # relative: floating-point sums of the exact statistic
_CHUNK = 1 << 16  # trials per call of the mechanism: bounded memory, vectorised noise
_CHUNK_CELLS = 1 << 20  # ... and at most this many vote counts (trials x classes) per call
_GAP_SCALES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # two-class gaps, in noise scales
_THRESHOLD_SCALES = (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0)  # threshold minus maximum, in sigma1
_TAIL = (
    40.0  # the planning pmfs reach 40 scales (Laplace) or sqrt(80) sigmas (Gaussian): mass < e^-40
)


#: The noise scales (in votes) the audit accepts, and its largest number of classes (why: in
#: :class:`AuditConfig`'s errors).
NOISE_SCALE_RANGE = (0.1, 1e4)
MAX_CLASSES = 1000


def _named_noise_scales(config: AggregatorConfig) -> list[tuple[str, float]]:
    if isinstance(config, GNMaxConfig):
        return [("sigma", config.sigma)]
    if isinstance(config, LNMaxConfig):
        return [("scale", config.scale)]
    if isinstance(config, (ConfidentGNMaxConfig, InteractiveGNMaxConfig)):
        return [("sigma1", config.sigma1), ("sigma2", config.sigma2)]
    return []


def _integer(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise PateError(f"Expected {name}={value!r} to be an integer >= {low}.")


@dataclass(frozen=True)
class AuditConfig:
    """What is audited and how hard.

    Attributes:
        aggregator: the aggregator and the parameters its accountant claims.
        num_teachers: teachers behind every vote histogram (the pairs are built from it).
        num_classes: classes of the histograms (2 is the most sensitive; the claim holds for any).
        trials: runs of the aggregator per histogram of each chosen pair.
        queries: ``k`` of the composed comparison.
        delta: the delta at which both epsilons are stated.
        confidence: probability that both lower bounds hold together.
        seed: the audit's own noise (``None``: the OS CSPRNG).
        orders, conversion: how the accountant turns RDP into (epsilon, delta).
        plan_noise_factors: one test per claim is planned for the claimed aggregator with its noise
            multiplied by each factor (1: as claimed; 0.25: the same bug-shaped alternative as the
            test suite's, noise four times too small, which leaks most on other pairs).
    """

    aggregator: AggregatorConfig
    num_teachers: int
    num_classes: int = 2
    trials: int = 500_000
    queries: int = 1000
    delta: float = 1e-5
    confidence: float = 0.95
    seed: int | None = 0
    orders: str = "default"
    conversion: str = "improved"
    plan_noise_factors: tuple[float, ...] = (1.0, 0.25)

    def __post_init__(self) -> None:
        if not isinstance(
            self.aggregator,
            (LNMaxConfig, GNMaxConfig, ConfidentGNMaxConfig, InteractiveGNMaxConfig),
        ):
            raise PateError(
                f"Expected aggregator to be an aggregator config, got {type(self.aggregator).__name__}."
            )
        for name, scale in _named_noise_scales(self.aggregator):
            if not NOISE_SCALE_RANGE[0] <= scale <= NOISE_SCALE_RANGE[1]:
                raise PateError(
                    f"`{name}` {scale:g}: the audit takes noise scales from "
                    f"{NOISE_SCALE_RANGE[0]:g} to {NOISE_SCALE_RANGE[1]:g} votes (below, the noise "
                    "is almost never anything but 0 and its arithmetic underflows; above, the "
                    "plan's exact distributions outgrow memory: 18 (Gaussian) to 80 (Laplace) "
                    "points per vote of noise)"
                )
        _integer("num_teachers", self.num_teachers, 2)
        _integer("num_classes", self.num_classes, 2)
        if self.num_classes > MAX_CLASSES:
            raise PateError(
                f"`num_classes` {self.num_classes}: the audit takes at most {MAX_CLASSES} classes "
                "(every run of the aggregator draws noise for every class, so time grows with "
                "trials x classes, while the pairs are two-class races and 2 classes are already "
                "the most sensitive)"
            )
        _integer("trials", self.trials, 100)
        _integer("queries", self.queries, 1)
        if self.seed is not None:
            _integer("seed", self.seed, 0)
        for name in ("delta", "confidence"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
                raise PateError(f"Expected {name}={value!r} in (0, 1).")
        resolve_orders(self.orders)
        if self.conversion not in ("classic", "improved"):
            raise PateError(f"Expected conversion={self.conversion!r} in classic, improved.")
        factors = self.plan_noise_factors
        if (
            not isinstance(factors, tuple)
            or not factors
            or not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in factors)
        ):
            raise PateError(
                f"Expected plan_noise_factors={factors!r} to be a non-empty tuple of numbers in (0, 1]."
            )

    @property
    def alpha(self) -> float:
        """Level of each one-sided interval: two per planned test, one test per claim (one query,
        ``queries``) and noise factor (Bonferroni)."""
        return (1.0 - self.confidence) / (4.0 * len(self.plan_noise_factors))


@dataclass(frozen=True)
class Bound:
    """One comparison: the measured lower bound and the accountant's upper bound, for ``queries``.

    ``histogram`` is the neighbour in the numerator (its event probability is bounded from below by
    ``probability_low``), ``neighbour`` the one in the denominator (``probability_high``). ``planned``
    is the lower bound the plan expected from ``trials`` runs of the aggregator it was planned for
    (the claimed one with its noise times ``plan_noise_factor``); ``ceiling`` is :func:`ceiling`.
    """

    queries: int
    epsilon_lower: float
    epsilon_upper: float
    histogram: tuple[int, ...]
    neighbour: tuple[int, ...]
    event: str
    hits: int
    neighbour_hits: int
    trials: int
    probability_low: float
    probability_high: float
    planned: float
    plan_noise_factor: float
    ceiling: float

    @property
    def ratio(self) -> float:
        return self.epsilon_lower / self.epsilon_upper if self.epsilon_upper > 0 else math.inf

    @property
    def measured_passed(self) -> bool:
        """The measured lower bound is within the claim (holds with the audit's confidence)."""
        return self.epsilon_lower <= self.epsilon_upper

    @property
    def exact_passed(self) -> bool:
        """The exact value for the claimed aggregator is within the claim (no sampling: a failure
        here is a bug of the accountant, whatever the code of the aggregator)."""
        return self.ceiling <= self.epsilon_upper * (1.0 + _EXACT_TOLERANCE)

    @property
    def passed(self) -> bool:
        return self.measured_passed and self.exact_passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "epsilon_lower": self.epsilon_lower,
            "epsilon_upper": self.epsilon_upper,
            "ratio": self.ratio,
            "passed": self.passed,
            "measured_passed": self.measured_passed,
            "exact_passed": self.exact_passed,
            "histogram": list(self.histogram),
            "neighbour": list(self.neighbour),
            "event": self.event,
            "hits": self.hits,
            "neighbour_hits": self.neighbour_hits,
            "trials": self.trials,
            "probability_low": self.probability_low,
            "probability_high": self.probability_high,
            "planned": self.planned,
            "plan_noise_factor": self.plan_noise_factor,
            "ceiling": self.ceiling,
        }


@dataclass(frozen=True)
class AuditResult:
    """The audit's two comparisons (one query, ``queries`` composed) and how they were obtained."""

    config: AuditConfig
    per_query: Bound
    composed: Bound
    candidate_pairs: int
    mechanism_runs: int
    noise: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.per_query.passed and self.composed.passed

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def failure_message(self) -> str:
        """One line naming what exceeded its claim (empty when the audit passed)."""
        failed = []
        claims = (("1 query", self.per_query), (f"{self.composed.queries} queries", self.composed))
        for name, b in claims:
            if not b.measured_passed:
                failed.append(
                    f"{name}: lower bound {b.epsilon_lower:.4g} > claimed {b.epsilon_upper:.4g}"
                )
            if not b.exact_passed:
                failed.append(
                    f"{name}: exact value for the claimed aggregator {b.ceiling:.4g} > claimed "
                    f"{b.epsilon_upper:.4g}, the accountant undercharges"
                )
        if not failed:
            return ""
        return (
            f"audit FAILED for {self.config.aggregator.mechanism} at delta={self.config.delta:g} "
            f"({'; '.join(failed)}; confidence {self.config.confidence:g}): the aggregator leaks more "
            "than the accountant charges"
        )

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {
            "verdict": self.verdict,
            "mechanism": c.aggregator.mechanism,
            "parameters": {k: v for k, v in c.aggregator.to_dict().items() if k != "mechanism"},
            "num_teachers": c.num_teachers,
            "num_classes": c.num_classes,
            "delta": c.delta,
            "confidence": c.confidence,
            "trials": c.trials,
            "orders": c.orders,
            "conversion": c.conversion,
            "plan_noise_factors": list(c.plan_noise_factors),
            "per_query": self.per_query.to_dict(),
            "composed": self.composed.to_dict(),
            "candidate_pairs": self.candidate_pairs,
            "mechanism_runs": self.mechanism_runs,
            "noise": self.noise,
            **self.extra,
        }


def claimed_config(
    path: str | os.PathLike,
    kind: str,
    *,
    num_classes: int | None = None,
    queries: int | None = None,
    delta: float | None = None,
    **settings: Any,
) -> tuple[AuditConfig, dict[str, Any]]:
    """The audit of what a workspace or release (``kind``) claims: its aggregator, teachers, delta,
    orders and conversion; ``queries`` defaults to its queries answered by the teachers, and
    ``num_classes`` to the workspace's (a release does not record it: 2, the most sensitive).

    Returns the config and ``{"source": path, "claimed_epsilon": ...}`` for the result's ``extra``.
    Only public fields of the report are read (a release's privacy.json has nothing else).
    """
    from pate.inspection import inspect_path
    from pate.labeling import aggregator_from_dict

    inspection = inspect_path(path)
    if inspection.kind != kind:
        raise PateError(f"{path}: is a {inspection.kind}, expected a {kind}")
    report = inspection.report
    answered = report.get("queries_answered_by_teachers", report["queries_answered"])
    config = AuditConfig(
        aggregator_from_dict({"mechanism": report["mechanism"], **report["parameters"]}),
        int(report["num_teachers"]),
        num_classes=num_classes or (inspection.header.num_classes if inspection.header else 2),
        queries=queries or max(1, int(answered)),
        delta=delta or float(report["delta"]),
        orders=report.get("orders", "default"),
        conversion=report.get("conversion", "improved"),
        **settings,
    )
    return config, {"source": str(path), "claimed_epsilon": report["epsilon"]}


# ----------------------------------------------------------------------------------------------------
# Statistics


def clopper_pearson(hits: int, trials: int, alpha: float) -> tuple[float, float]:
    """One-sided exact binomial bounds ``(low, high)``, each holding with probability ``>= 1 - alpha``.

    >>> low, high = clopper_pearson(50, 100, 0.025)
    >>> round(low, 4), round(high, 4)
    (0.3983, 0.6017)
    """
    # scipy.special.betaincinv is scipy.stats.beta.ppf without its per-call overhead.
    low = 0.0 if hits == 0 else float(special.betaincinv(hits, trials - hits + 1, alpha))
    high = 1.0 if hits == trials else float(special.betaincinv(hits + 1, trials - hits, 1 - alpha))
    return low, high


def epsilon_lower_bound(p_low: float, q_high: float, delta: float) -> float:
    """``max(0, ln((p_low - delta) / q_high))``: the epsilon that ``Pr[M(D) in E] >= p_low`` and
    ``Pr[M(D') in E] <= q_high`` force on an (epsilon, delta)-DP mechanism."""
    if p_low <= delta or q_high <= 0.0:
        return 0.0 if p_low <= delta else math.inf
    return max(0.0, math.log((p_low - delta) / q_high))


def epsilon_lower_bound_composed(p_low: float, q_high: float, delta: float, queries: int) -> float:
    """The same for ``queries`` independent runs: the best event ``count >= t`` over every ``t``.

    ``max_t ln((P[Bin(k, p_low) >= t] - delta) / P[Bin(k, q_high) >= t])``, floored at 0; equal to
    :func:`epsilon_lower_bound` for one query.
    """
    if p_low <= q_high or p_low <= delta:
        return 0.0
    if q_high <= 0.0:
        return math.inf
    k = int(queries)
    spread = 12.0 * math.sqrt(k * 0.25) + 2.0
    first = max(1, math.floor(k * q_high - spread))
    last = min(k, math.ceil(k * p_low + spread))
    t = np.unique(np.linspace(first, last, min(last - first + 1, 4001)).round().astype(np.int64))
    upper = stats.binom.sf(t - 1, k, p_low) - delta
    log_lower = log_binomial_sf(t, k, q_high)
    keep = upper > 0
    if not keep.any():
        return 0.0
    return max(0.0, float(np.max(np.log(upper[keep]) - log_lower[keep])))


def log_binomial_sf(t: np.ndarray, k: int, p: float) -> np.ndarray:
    """``ln P[Bin(k, p) >= t]`` for integers ``t`` in ``1..k``, finite wherever the tail is positive.

    SciPy's ``binom.logsf`` is the logarithm of ``binom.sf``, which underflows to 0 (``-inf``) once
    the tail is below about ``1e-308``: a composed bound then read ``ln(x / 0) = inf`` for a correct
    aggregator (``gnmax``, ``sigma`` 10, 10 teachers, 100,000 queries). Such tails lie above the mean
    (``t > k p``), where the pmf falls geometrically; they are summed here in log space from
    ``binom.logpmf`` up to where the rest is below ``e^-50`` of the first term.

    >>> bool(np.isfinite(log_binomial_sf(np.array([90_000]), 100_000, 0.4))[0])
    True
    """
    t = np.asarray(t, dtype=np.int64)
    with np.errstate(divide="ignore"):
        out = np.asarray(stats.binom.logsf(t - 1, k, p), dtype=np.float64)
    far = ~(out > -600.0) & (t > k * p) & (0.0 < p < 1.0)
    if not far.any():
        return out
    low, high = int(t[far].min()), int(t[far].max())
    ratio = (k - high) / (high + 1) * p / (1.0 - p)  # pmf(j + 1) / pmf(j) <= ratio for j >= high
    extra = k - high if ratio <= 0.0 else math.ceil(50.0 / -math.log(ratio)) if ratio < 1.0 else k
    j = np.arange(low, min(k, high + extra) + 1)
    log_pmf = stats.binom.logpmf(j, k, p)
    tails = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
    out = out.copy()
    out[far] = tails[t[far] - low]
    return out


def accountant_epsilon(config: AuditConfig, queries: int) -> float:
    """The accountant's data-independent epsilon of ``queries`` worst-case queries (each answered)."""
    orders = resolve_orders(config.orders)
    rdp = queries * worst_case_rdp(config.aggregator, orders)
    return epsilon_from_rdp(rdp, orders, config.delta, conversion=config.conversion)[0]


# ----------------------------------------------------------------------------------------------------
# Pairs and trials


def _noise_scales(config: AggregatorConfig) -> tuple[float, float | None]:
    """(scale of the two-class race, sigma1 of the threshold check or None)."""
    if isinstance(config, GNMaxConfig):
        return config.sigma * math.sqrt(2.0), None
    if isinstance(config, LNMaxConfig):
        return config.scale * math.sqrt(2.0), None
    return config.sigma2 * math.sqrt(2.0), config.sigma1


def neighbour_pairs(config: AuditConfig) -> list[int]:
    """The candidate ``x``: the pairs ``(x, N-x, 0...)`` and ``(x+1, N-x-1, 0...)``, tie first."""
    n = config.num_teachers
    low, high = n // 2, n - 1
    race, sigma1 = _noise_scales(config.aggregator)
    xs = [low + round(u * race / 2.0) for u in _GAP_SCALES] + [high]
    if sigma1 is not None:
        threshold = config.aggregator.threshold
        if isinstance(config.aggregator, InteractiveGNMaxConfig):
            threshold += n / config.num_classes  # max_j (n_j - m p_j) with uniform student p
        xs += [math.ceil(threshold) - round(v * sigma1) for v in _THRESHOLD_SCALES]
    return sorted({min(max(x, low), high) for x in xs}, key=lambda x: (x != low, x))


def _histogram(config: AuditConfig, x: int) -> np.ndarray:
    votes = np.zeros(config.num_classes, dtype=np.int64)
    votes[0], votes[1] = x, config.num_teachers - x
    return votes


def _uniform_probs(votes: np.ndarray) -> np.ndarray:
    # Interactive-GNMax: the student's probabilities are public; uniform ones are the audit's choice.
    return np.full(votes.shape, 1.0 / votes.shape[-1])


def _default_mechanism(config: AuditConfig) -> Mechanism:
    aggregator = config.aggregator
    if isinstance(aggregator, InteractiveGNMaxConfig):

        def interactive(votes: np.ndarray, noise: NoiseSource) -> AggregateResult:
            probs = _uniform_probs(votes)
            return aggregate(votes, aggregator, noise, probs, num_teachers=config.num_teachers)

        return interactive
    return lambda votes, noise: aggregate(votes, aggregator, noise)


def _category_counts(
    mechanism: Mechanism, votes: np.ndarray, trials: int, noise: NoiseSource
) -> np.ndarray:
    """Run ``mechanism`` ``trials`` times on ``votes``; counts of the four output categories."""
    counts = np.zeros(4, dtype=np.int64)
    done = 0
    chunk = max(1, min(_CHUNK, _CHUNK_CELLS // votes.size))
    while done < trials:
        size = min(chunk, trials - done)
        result = mechanism(np.tile(votes, (size, 1)), noise)
        labels = np.asarray(getattr(result, "labels", None))
        if labels.shape != (size,) or labels.dtype.kind not in "iu":
            raise PateError(
                f"mechanism returned labels of shape {labels.shape}, expected ({size},) integers"
            )
        if labels.size and (labels.min() < -1 or labels.max() >= votes.size):
            raise PateError(
                f"mechanism returned labels in {labels.min()}..{labels.max()}, expected -1.."
                f"{votes.size - 1}"
            )
        counts += np.bincount(np.minimum(labels, 2) + 1, minlength=4)
        done += size
    return counts


# ----------------------------------------------------------------------------------------------------
# The plan: the claimed aggregator's exact output distribution


def _pmf(kind: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Integers ``z`` and the discrete Gaussian (``kind="gaussian"``) or Laplace pmf on them."""
    if kind == "gaussian":
        reach = math.ceil(scale * math.sqrt(2.0 * _TAIL)) + 2
        z = np.arange(-reach, reach + 1)
        log_weight = -(z.astype(np.float64) ** 2) / (2.0 * scale**2)
    else:
        reach = math.ceil(scale * _TAIL) + 2
        z = np.arange(-reach, reach + 1)
        log_weight = -np.abs(z).astype(np.float64) / scale
    weight = np.exp(log_weight - log_weight.max())
    return z, weight / weight.sum()


def _argmax_probabilities(votes: np.ndarray, kind: str, scale: float) -> np.ndarray:
    """``Pr[label = 0], Pr[label = 1], Pr[another label]`` of the noisy argmax (ties to the smallest
    index): label 0 iff ``n_0 + Z_0 >= n_j + Z_j`` for every j; label 1 iff ``n_1 + Z_1 > n_0 + Z_0``
    and ``>= n_j + Z_j`` for ``j >= 2``."""
    z, pmf = _pmf(kind, scale)
    cdf = np.cumsum(pmf)

    def at_most(v: np.ndarray) -> np.ndarray:  # Pr[Z <= v] for integer arrays v
        index = np.clip(v - z[0], -1, z.size - 1)
        return np.where(index < 0, 0.0, cdf[np.maximum(index, 0)])

    # The other classes, one factor per distinct count (the pairs leave them all at 0): memory and
    # time of the grid, whatever the number of classes.
    rest, times = np.unique(votes[2:], return_counts=True)

    def others(top: int) -> np.ndarray:
        return np.prod(
            [at_most(top + z - n) ** c for n, c in zip(rest, times, strict=True)], axis=0
        )

    p0 = np.sum(pmf * at_most(votes[0] + z - votes[1]) * others(votes[0]))
    p1 = np.sum(pmf * at_most(votes[1] + z - votes[0] - 1) * others(votes[1]))
    return np.array([p0, p1, max(0.0, 1.0 - p0 - p1)])


def _scaled(config: AuditConfig, factor: float) -> AuditConfig:
    """The audit of the claimed aggregator with every noise scale multiplied by ``factor``."""
    a = config.aggregator
    if isinstance(a, GNMaxConfig):
        scaled: AggregatorConfig = GNMaxConfig(a.sigma * factor)
    elif isinstance(a, LNMaxConfig):
        scaled = LNMaxConfig(a.scale * factor)
    elif isinstance(a, ConfidentGNMaxConfig):
        scaled = ConfidentGNMaxConfig(a.threshold, a.sigma1 * factor, a.sigma2 * factor)
    else:
        scaled = InteractiveGNMaxConfig(
            a.threshold, a.sigma1 * factor, a.sigma2 * factor, a.student_confidence
        )
    # Not `replace`: the scaled noise is a plan's alternative, not an audited claim, and may lie
    # below NOISE_SCALE_RANGE.
    result = copy.copy(config)
    object.__setattr__(result, "aggregator", scaled)
    return result


def planned_probabilities(config: AuditConfig, votes: np.ndarray) -> np.ndarray:
    """The four category probabilities (no answer, label 0, label 1, another label) of the *claimed*
    aggregator on ``votes``, exact up to ``e^-40`` (the plan; the audit never uses it as data)."""
    aggregator = config.aggregator
    if isinstance(aggregator, LNMaxConfig):
        return np.concatenate(([0.0], _argmax_probabilities(votes, "laplace", aggregator.scale)))
    if isinstance(aggregator, GNMaxConfig):
        return np.concatenate(([0.0], _argmax_probabilities(votes, "gaussian", aggregator.sigma)))
    rows = votes[None, :]
    if isinstance(aggregator, InteractiveGNMaxConfig):
        offset = threshold_offsets(
            rows, aggregator.threshold, student_probs=_uniform_probs(rows), num_teachers=config.num_teachers
        )[0]  # fmt: skip
        student = 1.0 / votes.size > aggregator.student_confidence  # labels class 0 when unanswered
    else:
        offset, student = threshold_offsets(rows, aggregator.threshold)[0], False
    z, pmf = _pmf("gaussian", aggregator.sigma1)
    answered = float(pmf[z >= offset].sum())
    labels = answered * _argmax_probabilities(votes, "gaussian", aggregator.sigma2)
    if student:
        return np.array([0.0, labels[0] + 1.0 - answered, labels[1], labels[2]])
    return np.concatenate(([1.0 - answered], labels))


def _event_name(mask: np.ndarray) -> str:
    names = [CATEGORIES[i] for i in np.flatnonzero(mask)]
    return names[0] if len(names) == 1 else "{" + ", ".join(names) + "}"


def _score(hits: int, neighbour_hits: int, trials: int, config: AuditConfig, queries: int) -> float:
    p_low = clopper_pearson(hits, trials, config.alpha)[0]
    q_high = clopper_pearson(neighbour_hits, trials, config.alpha)[1]
    if queries == 1:
        return epsilon_lower_bound(p_low, q_high, config.delta)
    return epsilon_lower_bound_composed(p_low, q_high, config.delta, queries)


def ceiling(config: AuditConfig, queries: int) -> float:
    """The statistic at the claimed aggregator's *exact* probabilities, best over every pair
    ``(x, x + 1)`` (at most 400 of them, evenly spread) and event: the most that infinitely many
    trials of a correct aggregator could show with this audit's pairs and events. The gap between it
    and the accountant's bound is the audit's own limit (the argmax hides most of the noisy
    histogram, and the pairs are those of 2-class races); the gap between the lower bound and it is
    the cost of finite trials."""
    low, high = config.num_teachers // 2, config.num_teachers - 1
    xs = np.unique(np.linspace(low, high, min(high - low + 1, 400)).round().astype(int)).tolist()
    model = {
        x: planned_probabilities(config, _histogram(config, x)) for x in {*xs, *(x + 1 for x in xs)}
    }
    best = 0.0
    for x in xs:
        for num, den in ((x, x + 1), (x + 1, x)):
            for mask in EVENTS:
                p, q = model[num][mask].sum(), model[den][mask].sum()
                if p > q:
                    value = (
                        epsilon_lower_bound(p, q, config.delta)
                        if queries == 1
                        else epsilon_lower_bound_composed(p, q, config.delta, queries)
                    )
                    best = max(best, value)
    return best


def plan(config: AuditConfig, queries: int) -> tuple[int, int, np.ndarray, float]:
    """``(x of the numerator, x of the denominator, event mask, expected bound)``: the pair, its order
    and the event whose bound from ``trials`` runs of the claimed aggregator is largest (the tie pair
    and the first event win ties)."""
    xs = neighbour_pairs(config)
    model = {
        x: planned_probabilities(config, _histogram(config, x)) for x in {*xs, *(x + 1 for x in xs)}
    }
    best: tuple[int, int, np.ndarray, float] | None = None
    n = config.trials
    for x in xs:
        for num, den in ((x, x + 1), (x + 1, x)):
            for mask in EVENTS:
                p, q = model[num][mask].sum(), model[den][mask].sum()
                if p <= q:
                    continue
                expected = _score(round(p * n), round(q * n), n, config, queries)
                if best is None or expected > best[3]:
                    best = (num, den, mask, expected)
    if best is None:  # nothing distinguishes the pairs (cannot happen with noise of finite scale)
        return xs[0] + 1, xs[0], EVENTS[1], 0.0
    return best


def audit(config: AuditConfig, mechanism: Mechanism | None = None) -> AuditResult:
    """Measure lower bounds on epsilon for one query and for ``config.queries``; compare with the
    accountant's upper bounds.

    ``mechanism`` replaces the real aggregator (e.g. a deliberately broken one in a test); the plan and
    the claimed upper bounds always come from ``config.aggregator``.
    """
    mechanism = mechanism or _default_mechanism(config)
    noise = make_noise(config.seed)
    counts: dict[int, np.ndarray] = {}
    bounds = []
    for queries in (1, config.queries):
        exact = ceiling(config, queries)
        tests = []
        for factor in config.plan_noise_factors:
            num, den, mask, planned = plan(_scaled(config, factor), queries)
            for x in (num, den):
                if x not in counts:
                    votes = _histogram(config, x)
                    counts[x] = _category_counts(mechanism, votes, config.trials, noise)
            hits, neighbour_hits = int(counts[num][mask].sum()), int(counts[den][mask].sum())
            tests.append(
                Bound(
                    queries=queries,
                    epsilon_lower=_score(hits, neighbour_hits, config.trials, config, queries),
                    epsilon_upper=accountant_epsilon(config, queries),
                    histogram=tuple(int(v) for v in _histogram(config, num)),
                    neighbour=tuple(int(v) for v in _histogram(config, den)),
                    event=_event_name(mask),
                    hits=hits,
                    neighbour_hits=neighbour_hits,
                    trials=config.trials,
                    probability_low=clopper_pearson(hits, config.trials, config.alpha)[0],
                    probability_high=clopper_pearson(neighbour_hits, config.trials, config.alpha)[
                        1
                    ],
                    planned=planned,
                    plan_noise_factor=factor,
                    ceiling=exact,
                )
            )
        # Every interval holds together (Bonferroni over all tests), so the largest bound is one.
        bounds.append(max(tests, key=lambda b: b.epsilon_lower))
    return AuditResult(
        config=config,
        per_query=bounds[0],
        composed=bounds[1],
        candidate_pairs=len(
            {x for f in config.plan_noise_factors for x in neighbour_pairs(_scaled(config, f))}
        ),
        mechanism_runs=len(counts) * config.trials,
        noise=noise.description,
    )
