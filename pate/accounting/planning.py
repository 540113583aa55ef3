"""``plan``: noise parameters from a privacy budget, by the data-independent worst case.

Before any vote is cast, the only safe guide is the data-independent bound: every GNMax answer costs
``order / sigma^2`` and every threshold check ``order / (2 sigma1^2)``. Both are linear in the order, so
the composed curve is ``K * order`` and the budget fixes the largest admissible K; the noise follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pate.accounting._numerics import check_delta, check_positive
from pate.accounting.conversion import check_conversion, epsilon_from_rdp
from pate.accounting.orders import resolve_orders
from pate.accounting.rdp import rdp_gnmax_data_independent, rdp_threshold_data_independent
from pate.aggregate import confident_gnmax_defaults
from pate.errors import PateError

PLAN_MECHANISMS = ("gnmax", "confident-gnmax", "all")


@dataclass(frozen=True)
class GnmaxPlan:
    """GNMax with ``sigma`` answers ``queries`` queries within the target."""

    sigma: float
    epsilon: float
    order: float

    def to_dict(self) -> dict:
        return {"sigma": self.sigma, "epsilon": self.epsilon, "order": self.order}


@dataclass(frozen=True)
class ConfidentPlan:
    """Confident-GNMax: threshold checks on every query, at most ``answered`` answers."""

    threshold: float
    sigma1: float
    sigma2: float
    answered: int
    threshold_share: float
    epsilon: float
    order: float

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "sigma1": self.sigma1,
            "sigma2": self.sigma2,
            "answered": self.answered,
            "threshold_share": self.threshold_share,
            "epsilon": self.epsilon,
            "order": self.order,
        }


@dataclass(frozen=True)
class PlanResult:
    """The suggestion of :func:`plan`; ``to_dict()`` gives the JSON of ``pate plan --json``."""

    target_epsilon: float
    delta: float
    queries: int
    teachers: int
    classes: int
    orders: np.ndarray
    orders_name: str | None
    conversion: str
    gnmax: GnmaxPlan | None
    confident_gnmax: ConfidentPlan | None
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        out: dict = {
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "queries": self.queries,
            "teachers": self.teachers,
            "classes": self.classes,
            "orders": self.orders_name if self.orders_name else self.orders.tolist(),
            "conversion": self.conversion,
            "basis": "data-independent worst case",
        }
        if self.gnmax is not None:
            out["gnmax"] = self.gnmax.to_dict()
        if self.confident_gnmax is not None:
            out["confident_gnmax"] = self.confident_gnmax.to_dict()
        out["warnings"] = list(self.warnings)
        return out


def _largest_slope(target: float, orders: np.ndarray, delta: float, conversion: str) -> float:
    """The largest K such that the RDP curve ``K * order`` gives epsilon <= target at delta."""

    def epsilon(slope: float) -> float:
        return epsilon_from_rdp(slope * orders, orders, delta, conversion=conversion)[0]

    floor = epsilon(0.0)
    if floor > target:
        raise PateError(
            f"Expected epsilon={target} >= {floor:.6g}: with delta={delta:g} the "
            f"{conversion} conversion over these orders cannot certify less"
        )
    high = 1.0
    while epsilon(high) <= target:
        high *= 2.0
    low = 0.0 if high == 1.0 else high / 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if epsilon(middle) <= target:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    if low <= 0:
        raise PateError(f"Expected epsilon={target} to allow at least one query, found no noise")
    return low


def _widen_until_within(
    compute, scale_values: tuple[float, ...], target: float
) -> tuple[tuple[float, ...], tuple[float, float]]:
    """Nudge the noise up by relative 1e-12 steps until rounding no longer puts epsilon over target."""
    values = scale_values
    for _ in range(1000):
        result = compute(*values)
        if result[0] <= target:
            return values, result
        values = tuple(v * (1 + 1e-12) for v in values)
    raise PateError(f"could not meet epsilon={target} by rounding, expected to")  # pragma: no cover


def plan(
    *,
    epsilon: float,
    delta: float = 1e-5,
    queries: int,
    teachers: int,
    classes: int,
    mechanism: str = "all",
    answered_fraction: float = 1.0,
    threshold: float | None = None,
    threshold_share: float = 0.1,
    orders: str | np.ndarray = "default",
    conversion: str = "improved",
) -> PlanResult:
    """Suggest noise for a budget of ``epsilon`` at ``delta`` over ``queries`` student queries.

    GNMax: the smallest ``sigma`` with ``queries * order / sigma^2`` within budget. Confident-GNMax:
    every query pays the threshold check, at most ``ceil(answered_fraction * queries)`` pay an answer;
    ``threshold_share`` of the budget's RDP goes to the checks, the rest to the answers, which gives
    ``sigma1`` and ``sigma2``. The threshold defaults as in ``label-and-distill``
    (:func:`pate.aggregate.confident_gnmax_defaults`: 80% of the teachers, as PATE 2018's 200 of 250
    for MNIST). With ``answered_fraction < 1`` the guarantee needs the pipeline to stop answering once
    that many answers are given, which it may do because the count of answers is public.

    The suggested noise meets the target (epsilon <= target) and is the smallest that does, to a
    relative 1e-12.
    """
    target = check_positive("epsilon", epsilon)
    delta = check_delta(delta)
    conversion = check_conversion(conversion)
    if mechanism not in PLAN_MECHANISMS:
        raise PateError(f"mechanism is {mechanism!r}, expected one of {', '.join(PLAN_MECHANISMS)}")
    for name, value in (("queries", queries), ("teachers", teachers), ("classes", classes)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise PateError(f"Expected {name}={value} to be a positive integer.")
    if classes < 2:
        raise PateError(f"Expected classes={classes} >= 2.")
    queries, teachers, classes = int(queries), int(teachers), int(classes)
    if not (0 < answered_fraction <= 1):
        raise PateError(f"Expected answered_fraction={answered_fraction} in (0, 1].")
    if not (0 < threshold_share < 1):
        raise PateError(f"Expected threshold_share={threshold_share} in (0, 1).")
    orders_name = orders if isinstance(orders, str) else None
    orders_array = resolve_orders(orders)
    slope = _largest_slope(target, orders_array, delta, conversion)
    warnings: list[str] = []

    def edge(label: str, order: float) -> None:
        if order <= orders_array.min() or order >= orders_array.max():
            warnings.append(
                f"{label}: the optimal order {order:g} is at the end of the order list; a better "
                "order may lie outside it"
            )

    gnmax_plan = None
    if mechanism in ("gnmax", "all"):

        def gnmax_epsilon(sigma: float) -> tuple[float, float]:
            rdp = queries * rdp_gnmax_data_independent(sigma, orders_array)
            return epsilon_from_rdp(rdp, orders_array, delta, conversion=conversion)

        (sigma,), (eps, order) = _widen_until_within(
            gnmax_epsilon, (math.sqrt(queries / slope),), target
        )
        gnmax_plan = GnmaxPlan(sigma=sigma, epsilon=eps, order=order)
        edge("gnmax", order)
        if sigma > teachers / 2:
            warnings.append(
                f"gnmax: sigma={sigma:.4g} exceeds half the {teachers} teachers; most answers will "
                "be noise. Use more teachers, fewer queries or a larger budget"
            )

    confident_plan = None
    if mechanism in ("confident-gnmax", "all"):
        answered = max(1, math.ceil(answered_fraction * queries - 1e-9))
        if threshold is not None and not math.isfinite(float(threshold)):
            raise PateError(f"Expected threshold={threshold} to be a finite number.")
        threshold, _ = confident_gnmax_defaults(teachers, threshold=threshold)

        def confident_epsilon(sigma1: float, sigma2: float) -> tuple[float, float]:
            rdp = queries * rdp_threshold_data_independent(sigma1, orders_array)
            rdp = rdp + answered * rdp_gnmax_data_independent(sigma2, orders_array)
            return epsilon_from_rdp(rdp, orders_array, delta, conversion=conversion)

        sigma1 = math.sqrt(queries / (2 * threshold_share * slope))
        sigma2 = math.sqrt(answered / ((1 - threshold_share) * slope))
        (sigma1, sigma2), (eps, order) = _widen_until_within(
            confident_epsilon, (sigma1, sigma2), target
        )
        confident_plan = ConfidentPlan(
            threshold=threshold,
            sigma1=sigma1,
            sigma2=sigma2,
            answered=answered,
            threshold_share=threshold_share,
            epsilon=eps,
            order=order,
        )
        edge("confident-gnmax", order)
        if threshold <= teachers / classes:
            warnings.append(
                f"confident-gnmax: threshold={threshold:g} is at most teachers/classes = "
                f"{teachers / classes:g}, which every plurality reaches; it filters nothing"
            )
        if threshold > teachers:
            warnings.append(
                f"confident-gnmax: threshold={threshold:g} exceeds the {teachers} teachers; only "
                "the threshold noise can let a query through"
            )
        if sigma2 > teachers / 2:
            warnings.append(
                f"confident-gnmax: sigma2={sigma2:.4g} exceeds half the {teachers} teachers; most "
                "answers will be noise"
            )
        if answered < queries:
            warnings.append(
                f"confident-gnmax: the budget holds only if at most {answered} of the {queries} "
                "queries are answered; stop answering after that many"
            )
    return PlanResult(
        target_epsilon=target,
        delta=delta,
        queries=queries,
        teachers=teachers,
        classes=classes,
        orders=orders_array,
        orders_name=orders_name,
        conversion=conversion,
        gnmax=gnmax_plan,
        confident_gnmax=confident_plan,
        warnings=tuple(warnings),
    )
