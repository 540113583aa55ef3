"""A publishable epsilon that keeps the teachers' consensus: propose, privately test, release.

PATE's data-dependent epsilon is much smaller than the data-independent one when teachers agree, but
it is a function of the private votes, so it is not a differential-privacy guarantee on its own: a
stopping rule that reads it leaks, and the papers' smooth-sensitivity release (PATE 2018, App. B)
publishes a noisy *value* of it, which is not an (epsilon, delta) guarantee for the labels. This
module implements the *tested* budget mode, an instance of Generalized Propose-Test-Release (Redberg,
Zhu and Wang, AISTATS 2023), whose stated epsilon is a true (epsilon, delta)-DP guarantee, fixed and
public before any vote is read:

1. **Propose.** The public inputs fix the mechanism (GNMax, or Confident-GNMax), the number of
   queries ``N``, one Renyi order ``alpha``, the test's parameters ``(beta, sigma_test, mu)`` and a
   budget ``B`` for the answers' RDP at ``alpha``. The published guarantee is
   ``epsilon = conv(B + rdp_gnss(beta, sigma_test, alpha), alpha, delta_rdp)`` at
   ``delta = delta_rdp + delta_test``.
2. **Test.** ``F(D)``, an upper bound on the answers' Renyi divergence at ``alpha`` between ``D`` and
   any neighbour, in both directions (below), and ``SS(D)``, a beta-smooth upper bound on its local
   sensitivity, are computed from the votes. The test releases (to the code only) the Gaussian
   smooth-sensitivity statistic ``r = g(D) + S(D) sigma_test Z`` with ``g = F + mu SS`` and
   ``S = (1 + mu (e^beta - 1)) SS``, and passes iff ``r <= B``.
3. **Release.** If the test passes, the ``N`` queries are answered with fresh noise. If it fails,
   nothing is answered.

**The claim.** The whole procedure (test outcome and answers) is (epsilon, delta)-DP for the unit of
privacy of the partition, for any data. Proof sketch (the docs give it in full, ``docs/accounting.md``):
call ``D`` *safe* if ``F(D) <= B``. (i) If ``D`` or its neighbour ``D'`` is safe, the answers on the
pair have Renyi divergence at most ``B`` at ``alpha`` in both directions (``F`` is symmetric by
construction), the test is ``rdp_gnss``-RDP (PATE 2018 Theorem 23: ``S`` is a beta-smooth upper bound
on the local sensitivity of ``g``), and adaptive composition gives ``B + rdp_gnss`` at ``alpha``,
hence ``(epsilon, delta_rdp)``. (ii) If neither is safe, the test passes on either with probability at
most ``Phi(-mu / ((1 + mu (e^beta - 1)) sigma_test)) <= delta_test``, and the failure outcome alone is
``(epsilon, delta_rdp)``-DP (post-processing of the test); so the pair is
``(epsilon, delta_rdp + delta_test)``-indistinguishable. No stopping rule reads a private quantity: the
number of queries is fixed in advance, and the only private decision is the paid test.

**The bound F.** For one query let ``v`` be the largest vote count and ``s`` the gap between the largest
and the second largest count. One changed teacher moves one vote, so ``v`` moves by at most 1 and
``s`` by at most 2. For every histogram with statistics ``(v, s)``:

* GNMax (``sigma2``): ``q <= q(s) = min((m - 1) Pr[Z' - Z >= s], 1 - 1/m)`` (exact discrete tails,
  :mod:`pate.accounting.discrete`; ``m`` classes, ties toward the smallest index), and PATE 2018
  Theorem 6 at ``q(s)`` (with the data-independent ``alpha / sigma2^2`` as a cap) bounds
  ``D_alpha(G(D) || G(D'))`` for every neighbour ``D'``.
* Confident-GNMax: the output is "no answer" with probability ``1 - p`` and a GNMax answer (fresh
  noise) with probability ``p = Pr[v + Z1 >= T]`` (exact, :func:`log_sf_discrete_gaussian_bounds`).
  The Renyi sum of the pair is ``(1 - p)^a (1 - p')^(1 - a) + p^a p'^(1 - a) e^((a - 1) D_a(G || G'))``
  with ``p'`` the neighbour's, whose largest count is ``v - 1``, ``v`` or ``v + 1``: ``J(v, s)`` is the
  largest of the three, each probability replaced by the bound on the safe side. A query that the
  threshold almost surely declines (or almost surely accepts with a clear winner) costs almost nothing.

``J`` bounds one direction. ``F(v, s) = max J`` over the box ``|v' - v| <= 1, |s' - s| <= 2`` also bounds
``D_alpha(M(D') || M(D))`` (``D'``'s statistics are in the box), so ``F`` is symmetric; the answers on
``N`` fixed queries compose: ``F(D) = sum_j F(v_j, s_j)``.

**Smooth sensitivity.** ``LS(v, s) = max |F(v', s') - F(v, s)|`` over the same box bounds the change of one
query's term when one teacher changes. ``U_k = sum_j max LS`` over the box of radius ``(k, 2k)``
around ``(v_j, s_j)`` bounds the local sensitivity of ``F`` at every dataset within ``k`` changed
teachers, and ``U_k(D') <= U_{k+1}(D)`` for neighbours (the boxes nest), so
``SS(D) = max_k e^(-beta k) U_k(D)`` is a beta-smooth upper bound (Nissim, Raskhodnikova and Smith
2007). Everything is computed exactly on the integer grid ``0 <= v, s <= n`` (``n`` teachers), so the
argument needs no monotonicity of the bounds; the tests check it against brute force on small
ensembles.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import special

from pate.accounting._cores import rdp_gaussian_core
from pate.accounting.conversion import check_conversion, epsilon_per_order
from pate.accounting.discrete import (
    log_sf_discrete_gaussian_bounds,
    log_tail_difference_discrete_gaussian,
)
from pate.accounting.smooth_sensitivity import discounted_max, rdp_gnss
from pate.errors import PateError

__all__ = [
    "PTR_MECHANISMS",
    "PtrMechanism",
    "PtrOutcome",
    "PtrParameters",
    "answers_statistic",
    "joint_rdp_grid",
    "largest_batch",
    "plan_test",
    "private_test",
    "query_statistics",
    "symmetric_grid",
]

PTR_MECHANISMS = ("gnmax", "confident-gnmax")

# The share of delta given to the test's false pass; the rest goes to the RDP conversion.
DEFAULT_TEST_DELTA_SHARE = 0.5


@dataclass(frozen=True)
class PtrMechanism:
    """The answering mechanism the test is about (public): noise, threshold, ensemble and label sizes."""

    num_teachers: int
    num_classes: int
    sigma2: float
    threshold: float | None = None
    sigma1: float | None = None

    def __post_init__(self) -> None:
        if self.num_teachers < 1:
            raise PateError(f"`num_teachers` is {self.num_teachers}, expected >= 1")
        if self.num_classes < 2:
            raise PateError(f"`num_classes` is {self.num_classes}, expected >= 2")
        if not (self.sigma2 > 0 and math.isfinite(self.sigma2)):
            raise PateError(f"`sigma2` is {self.sigma2}, expected > 0")
        if (self.threshold is None) != (self.sigma1 is None):
            raise PateError("`threshold` and `sigma1` go together: give both or neither")
        if self.sigma1 is not None and not (self.sigma1 > 0 and math.isfinite(self.sigma1)):
            raise PateError(f"`sigma1` is {self.sigma1}, expected > 0")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise PateError(f"`threshold` is {self.threshold}, expected a finite number")

    @property
    def confident(self) -> bool:
        return self.threshold is not None

    @classmethod
    def from_aggregator(cls, aggregator: dict, num_teachers: int, num_classes: int):
        """From an aggregator's ``to_dict()``; refuses mechanisms the test does not cover."""
        mechanism = aggregator.get("mechanism")
        if mechanism == "gnmax":
            return cls(num_teachers, num_classes, float(aggregator["sigma"]))
        if mechanism == "confident-gnmax":
            return cls(
                num_teachers,
                num_classes,
                float(aggregator["sigma2"]),
                float(aggregator["threshold"]),
                float(aggregator["sigma1"]),
            )
        raise PateError(
            f"`aggregator` is {mechanism!r}, expected one of {', '.join(PTR_MECHANISMS)} for the "
            "tested budget mode"
        )

    def data_independent_rdp(self, order: float) -> float:
        """One query's worst-case RDP at ``order`` (threshold check plus an answer)."""
        value = order / self.sigma2**2
        if self.confident:
            value += order / (2.0 * self.sigma1**2)
        return value


# ----------------------------------------------------------------------------------------------------
# Per-query bounds on the (v, s) grid


def _gnmax_rdp_by_gap(mechanism: PtrMechanism, order: float) -> np.ndarray:
    """``D_alpha(G(D) || G(D'))`` bound for every top gap ``s = 0..n`` (Theorem 6 at ``q(s)``)."""
    gaps = np.arange(mechanism.num_teachers + 1, dtype=np.int64)
    log_tail = log_tail_difference_discrete_gaussian(gaps, mechanism.sigma2)
    m = mechanism.num_classes
    logq = np.minimum(math.log(m - 1) + log_tail, math.log1p(-1.0 / m))
    return rdp_gaussian_core(logq, mechanism.sigma2**2, np.array([float(order)]))[:, 0]


def joint_rdp_grid(mechanism: PtrMechanism, order: float) -> np.ndarray:
    """``J[v, s]``: one query's RDP at ``order`` from a histogram with largest count ``v``, top gap ``s``.

    Shape ``(n + 1, n + 1)`` for Confident-GNMax, ``(1, n + 1)`` for GNMax (``v`` plays no part).
    Every entry bounds ``D_alpha(M(D) || M(D'))`` for every neighbour ``D'`` of every histogram ``D``
    with those statistics (module docstring), and is at most the data-independent bound.
    """
    order = float(order)
    if not order > 1:
        raise PateError(f"`order` is {order}, expected > 1")
    answer = _gnmax_rdp_by_gap(mechanism, order)
    if not mechanism.confident:
        return answer[None, :].copy()
    n = mechanism.num_teachers
    v = np.arange(-1, n + 2, dtype=np.int64)  # one beyond each end, for the neighbours
    offsets = math.ceil(mechanism.threshold) - v  # answered iff Z1 >= offset
    ans_low, ans_high = log_sf_discrete_gaussian_bounds(offsets, mechanism.sigma1)
    rej_low, rej_high = log_sf_discrete_gaussian_bounds(1 - offsets, mechanism.sigma1)
    t = order - 1.0
    here = slice(1, n + 2)  # v = 0..n
    worst = np.full((n + 1, n + 1), -np.inf)
    for shift in (-1, 0, 1):
        there = slice(1 + shift, n + 2 + shift)
        with np.errstate(invalid="ignore"):
            rejected = order * rej_high[here] - t * rej_low[there]
            answered = order * ans_high[here] - t * ans_low[there]
        rejected = np.where(np.isneginf(rej_high[here]), -np.inf, rejected)
        answered = np.where(np.isneginf(ans_high[here]), -np.inf, answered)
        total = np.logaddexp(rejected[:, None], answered[:, None] + t * answer[None, :]) / t
        worst = np.maximum(worst, total)
    worst = np.minimum(worst, mechanism.data_independent_rdp(order))
    return np.maximum(worst, 0.0)


def _box(values: np.ndarray, radius_v: int, radius_s: int, reduce) -> np.ndarray:
    """``reduce`` (np.maximum or np.minimum) over the box ``|dv| <= radius_v, |ds| <= radius_s``."""
    out = values.copy()
    for d in range(1, min(radius_v, values.shape[0] - 1) + 1):
        out[d:] = reduce(out[d:], values[:-d])
        out[:-d] = reduce(out[:-d], values[d:])
    first = out.copy()
    for d in range(1, min(radius_s, values.shape[1] - 1) + 1):
        out[:, d:] = reduce(out[:, d:], first[:, :-d])
        out[:, :-d] = reduce(out[:, :-d], first[:, d:])
    return out


def _radius_v(grid: np.ndarray) -> int:
    return 1 if grid.shape[0] > 1 else 0


def symmetric_grid(joint: np.ndarray, floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(F, LS)``: the symmetric per-query bound, raised to ``floor``, and its local sensitivity.

    The floor keeps ``F`` a valid bound and makes it flat (zero local sensitivity) wherever the
    teachers agree enough for ``J`` to stay below it: that is what keeps the smooth sensitivity small.
    """
    rv = _radius_v(joint)
    symmetric = np.maximum(_box(joint, rv, 2, np.maximum), floor)
    upper = _box(symmetric, rv, 2, np.maximum) - symmetric
    lower = symmetric - _box(symmetric, rv, 2, np.minimum)
    return symmetric, np.maximum(upper, lower)


def query_statistics(votes: np.ndarray, confident: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(v, s)`` per query: the largest count (0 for GNMax) and the gap to the second largest."""
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] < 2 or votes.dtype.kind not in "iu":
        raise PateError(f"votes have shape {votes.shape}, expected integer (queries, classes >= 2)")
    top2 = -np.partition(-votes.astype(np.int64), 1, axis=1)[:, :2]
    largest = top2[:, 0] if confident else np.zeros(len(votes), dtype=np.int64)
    return largest, top2[:, 0] - top2[:, 1]


def _local_sensitivities(
    votes: np.ndarray, mechanism: PtrMechanism, order: float, floor: float = 0.0
) -> tuple[float, np.ndarray]:
    """``(F(D), U)`` with ``U[k]`` the local-sensitivity bound at distance ``k = 0..n + 1``."""
    symmetric, local = symmetric_grid(joint_rdp_grid(mechanism, order), floor)
    v, s = query_statistics(votes, mechanism.confident)
    weights = np.zeros(symmetric.shape)
    np.add.at(weights, (v, s), 1.0)
    rv = _radius_v(local)
    distances = mechanism.num_teachers + 2  # beyond this the box covers the whole grid
    sums = np.empty(distances)
    current = local
    for k in range(distances):
        sums[k] = float(np.sum(weights * current))
        current = _box(current, rv, 2, np.maximum)
    return float(np.sum(weights * symmetric)), sums


def answers_statistic(
    votes: np.ndarray, mechanism: PtrMechanism, order: float, beta: float, floor: float = 0.0
) -> tuple[float, float]:
    """``(F(D), SS(D))``: the answers' bound and its beta-smooth sensitivity (private values)."""
    bound, sums = _local_sensitivities(votes, mechanism, order, floor)
    return bound, float(discounted_max(beta, sums))


# ----------------------------------------------------------------------------------------------------
# Parameters (public) and the test


@dataclass(frozen=True)
class PtrParameters:
    """Everything public about one tested release; ``epsilon`` at ``delta`` is its guarantee."""

    order: float
    beta: float
    sigma_test: float
    mu: float
    answers_budget: float  # B: the answers' RDP at ``order`` that the test admits
    floor: float  # each query's term of F is at least this (public)
    rdp_test: float
    delta_rdp: float
    delta_test: float
    epsilon: float
    delta: float
    queries: int
    conversion: str

    def to_dict(self) -> dict:
        return asdict(self)


def _mu(sigma_test: float, beta: float, delta_test: float) -> float:
    """The smallest offset ``mu`` with ``Phi(-mu / ((1 + mu (e^beta - 1)) sigma_test)) <= delta_test``."""
    z = -float(special.ndtri(delta_test))
    slope = z * sigma_test * math.expm1(beta)
    if slope >= 1.0:
        return math.inf
    return z * sigma_test / (1.0 - slope)


def parameters(
    *,
    epsilon: float,
    delta: float,
    order: float,
    beta: float,
    sigma_test: float,
    queries: int,
    floor: float = 0.0,
    conversion: str = "improved",
    test_delta_share: float = DEFAULT_TEST_DELTA_SHARE,
) -> PtrParameters:
    """The public parameters for a target ``epsilon`` at ``delta``: solves for the answers' budget B."""
    conversion = check_conversion(conversion)
    if not (0 < delta < 1):
        raise PateError(f"`delta` is {delta}, expected in (0, 1)")
    if not (0 < test_delta_share < 1):
        raise PateError(f"test_delta_share is {test_delta_share}, expected in (0, 1)")
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise PateError(f"`max_epsilon` is {epsilon}, expected > 0")
    if queries < 1:
        raise PateError(f"`max_queries` is {queries}, expected >= 1 (the tested mode fixes it)")
    delta_test = delta * test_delta_share
    delta_rdp = delta - delta_test
    rdp_test = rdp_gnss(beta, sigma_test, order)
    offset = float(epsilon_per_order(np.array([0.0]), np.array([order]), delta_rdp, conversion)[0])
    if conversion == "improved":  # epsilon_per_order clips at 0; the offset is the affine part
        offset = math.log1p(-1.0 / order) - (math.log(delta_rdp) + math.log(order)) / (order - 1)
    budget = epsilon - offset - rdp_test
    mu = _mu(sigma_test, beta, delta_test)
    return PtrParameters(
        order=float(order),
        beta=float(beta),
        sigma_test=float(sigma_test),
        mu=mu,
        answers_budget=budget,
        floor=float(floor),
        rdp_test=rdp_test,
        delta_rdp=delta_rdp,
        delta_test=delta_test,
        epsilon=float(epsilon),
        delta=float(delta),
        queries=int(queries),
        conversion=conversion,
    )


def guarantee(params: PtrParameters) -> float:
    """The epsilon the parameters certify at ``params.delta`` (recomputed, for checks)."""
    rdp = np.array([params.answers_budget + params.rdp_test])
    return float(
        epsilon_per_order(rdp, np.array([params.order]), params.delta_rdp, params.conversion)[0]
    )


@dataclass(frozen=True)
class PtrOutcome:
    """The outcome of one test. ``passed`` is released; every other field is private."""

    passed: bool
    answers_bound: float
    smooth_sensitivity: float
    statistic: float


def private_test(
    votes: np.ndarray,
    mechanism: PtrMechanism,
    params: PtrParameters,
    standard_normal: float,
) -> PtrOutcome:
    """The private test: pass iff ``F + mu SS + (1 + mu (e^beta - 1)) SS sigma_test Z <= B``.

    ``standard_normal`` is one fresh N(0, 1) draw (from the OS CSPRNG in private runs). Only
    ``passed`` may leave the workspace.
    """
    if len(votes) != params.queries:
        raise PateError(
            f"votes hold {len(votes)} queries, expected {params.queries} (fixed in advance)"
        )
    if not math.isfinite(params.mu) or params.answers_budget <= 0:
        return PtrOutcome(False, math.nan, math.nan, math.inf)
    bound, smooth = answers_statistic(votes, mechanism, params.order, params.beta, params.floor)
    scale = 1.0 + params.mu * math.expm1(params.beta)
    statistic = bound + params.mu * smooth + scale * smooth * params.sigma_test * standard_normal
    return PtrOutcome(statistic <= params.answers_budget, bound, smooth, statistic)


# ----------------------------------------------------------------------------------------------------
# Planning from public assumptions


def _assumed_votes(mechanism: PtrMechanism, queries: int, agreement: float) -> np.ndarray:
    """Votes of a public model: ``agreement`` of the teachers on the top class, the rest split evenly
    between two others (a pessimistic runner-up)."""
    n, m = mechanism.num_teachers, mechanism.num_classes
    top = int(round(agreement * n))
    rest = n - top
    row = np.zeros(m, dtype=np.int64)
    row[0] = top
    row[1] = rest - rest // 2
    if m > 2:
        row[2] = rest // 2
    else:
        row[1] = rest
    return np.tile(row, (queries, 1))


ORDER_GRID = (8.0, 12.0, 16.0, 20.0, 28.0, 40.0)
SIGMA_TEST_GRID = (3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0)


def _candidates(
    mechanism: PtrMechanism,
    *,
    epsilon: float,
    delta: float,
    agreement: float,
    conversion: str,
    order: float | None,
    beta: float | None,
    sigma_test: float | None,
):
    """Yield ``(parameters for one query, need per query)`` over the search grid (public only).

    ``need`` is what each query of the assumed votes adds to the test statistic, with two standard
    deviations of the test's noise: ``F + mu SS + 2 S sigma_test`` per query (all three scale with the
    number of identical queries).
    """
    if not (0 < agreement <= 1):
        raise PateError(f"`agreement` is {agreement}, expected in (0, 1]")
    one = _assumed_votes(mechanism, 1, agreement)
    for alpha in ORDER_GRID if order is None else (float(order),):
        joint = joint_rdp_grid(mechanism, alpha)
        v, s = query_statistics(one, mechanism.confident)
        typical, worst = float(joint[v[0], s[0]]), mechanism.data_independent_rdp(alpha)
        floors = (0.0, *(typical * f for f in (4.0, 16.0, 64.0)), *(worst * f for f in (0.1, 0.3)))
        betas = (
            tuple(f / alpha for f in (0.05, 0.1, 0.2, 0.3, 0.45))
            if beta is None
            else (float(beta),)
        )
        for floor in floors:
            bound, sums = _local_sensitivities(one, mechanism, alpha, floor)
            for b in betas:
                if not 1 < alpha < 1 / (2 * b):
                    continue
                smooth = float(discounted_max(b, sums))
                for sigma in SIGMA_TEST_GRID if sigma_test is None else (float(sigma_test),):
                    params = parameters(
                        epsilon=epsilon,
                        delta=delta,
                        order=alpha,
                        beta=b,
                        sigma_test=sigma,
                        queries=1,
                        floor=floor,
                        conversion=conversion,
                    )
                    if math.isfinite(params.mu):
                        scale = 1.0 + params.mu * math.expm1(b)
                        yield params, bound + params.mu * smooth + 2 * scale * smooth * sigma


def plan_test(
    mechanism: PtrMechanism,
    *,
    epsilon: float,
    delta: float,
    queries: int,
    agreement: float = 0.9,
    conversion: str = "improved",
    order: float | None = None,
    beta: float | None = None,
    sigma_test: float | None = None,
) -> tuple[PtrParameters, float]:
    """Public parameters that maximise the test's pass margin on votes of an assumed ``agreement``.

    Uses no private data: the assumed votes are :func:`_assumed_votes`. Returns the parameters and the
    margin ``B - N (F + mu SS + 2 S sigma_test)`` on ``N = queries`` assumed queries (> 0: the test
    passes with probability about 0.98 or more on votes at least as concentrated).
    """
    best: tuple[float, PtrParameters] | None = None
    for params, need in _candidates(
        mechanism,
        epsilon=epsilon,
        delta=delta,
        agreement=agreement,
        conversion=conversion,
        order=order,
        beta=beta,
        sigma_test=sigma_test,
    ):
        margin = params.answers_budget - queries * need
        if best is None or margin > best[0]:
            best = (margin, replace(params, queries=int(queries)))
    if best is None:
        raise PateError(
            "no test parameters satisfy order < 1 / (2 beta); give other `order`/`beta`"
        )
    return best[1], best[0]


def largest_batch(
    mechanism: PtrMechanism,
    *,
    epsilon: float,
    delta: float,
    agreement: float = 0.9,
    conversion: str = "improved",
) -> tuple[int, PtrParameters | None]:
    """The most queries of an assumed ``agreement`` that a test would pass (margin >= 0), and its
    parameters; ``(0, None)`` when none fits."""
    best: tuple[int, PtrParameters | None] = (0, None)
    for params, need in _candidates(
        mechanism,
        epsilon=epsilon,
        delta=delta,
        agreement=agreement,
        conversion=conversion,
        order=None,
        beta=None,
        sigma_test=None,
    ):
        count = int(params.answers_budget // need) if params.answers_budget > 0 else 0
        if count > best[0]:
            best = (count, replace(params, queries=count))
    return best
