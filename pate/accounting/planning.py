"""``plan``: noise parameters from a privacy budget, by the data-independent worst case.

Before any vote is cast, the only safe guide is the data-independent bound: every GNMax answer costs
``order / sigma^2`` and every threshold check ``order / (2 sigma1^2)``. Both are linear in the order, so
the composed curve is ``K * order`` and the budget fixes the largest admissible K; the noise follows.
"""

from __future__ import annotations

import math
import os
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


# ----------------------------------------------------------------------------------------------------
# Sizing: how many teachers the data supports, before any privacy is spent


@dataclass(frozen=True)
class SizingRow:
    """What ``teachers`` teachers would give (GNMax, data-independent accounting)."""

    teachers: int
    individuals_per_teacher: float
    records_per_teacher: float
    margin: float
    sigma: float
    queries: int
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {**self.__dict__, "warnings": list(self.warnings)}


@dataclass(frozen=True)
class SizingResult:
    """Teacher counts against what each buys; ``assumption`` says what the estimate rests on."""

    epsilon: float
    delta: float
    classes: int
    individuals: int
    records: int
    public_size: int | None
    agreement: float
    rows: tuple[SizingRow, ...]
    assumption: str
    #: The teacher count suggested (one of ``rows``), or None when no row gives a useful student.
    recommended: int | None = None
    #: Why that row, or what would give a useful student when none does.
    advice: str = ""

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "rows"}
        out["rows"] = [row.to_dict() for row in self.rows]
        return out


# The noisy plurality is right with probability >= this per competitor at the planned sigma.
_SIZING_CONFIDENCE_Z = 1.2816  # Phi(z) = 0.9


def size_teachers(
    *,
    epsilon: float,
    individuals: int,
    records: int | None = None,
    classes: int,
    public_size: int | None = None,
    agreement: float = 0.8,
    teacher_counts: tuple[int, ...] = (25, 50, 100, 250, 500),
    delta: float = 1e-5,
    orders: str = "default",
    conversion: str = "improved",
    min_records_per_class: int = 20,
) -> SizingResult:
    """For each teacher count: a shard's size, the GNMax noise the assumed agreement tolerates, and
    how many answers ``epsilon`` buys at that noise; with warnings where the data cannot support a
    useful student.

    The estimate rests on ``agreement``, the share of teachers that vote for the plurality class
    (assumed, not measured: it depends on the private data). With ``T`` teachers the plurality leads
    the runner-up by about ``m = T * (agreement - (1 - agreement) / (C - 1))`` votes; sigma is chosen so
    that the noisy plurality beats one competitor with probability 0.9 (``m / (sqrt(2) sigma) =
    1.28``), and the number of answers is the most that keep the data-independent epsilon within
    budget at that sigma. Every input is a count the user gives (or that is read locally from their
    own file); nothing is released.
    """
    target = check_positive("epsilon", epsilon)
    delta = check_delta(delta)
    conversion = check_conversion(conversion)
    if not 1.0 / classes < agreement <= 1.0:
        raise PateError(f"Expected agreement={agreement} in (1/classes, 1].")
    for name, value in (("individuals", individuals), ("classes", classes)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise PateError(f"Expected {name}={value} to be a positive integer.")
    records = int(records if records is not None else individuals)
    orders_array = resolve_orders(orders)
    slope = _largest_slope(target, orders_array, delta, conversion)
    rows = []
    for teachers in sorted(set(int(t) for t in teacher_counts)):
        warnings: list[str] = []
        per_individuals = individuals / teachers
        per_records = records / teachers
        margin = teachers * (agreement - (1.0 - agreement) / (classes - 1))
        sigma = margin / (math.sqrt(2.0) * _SIZING_CONFIDENCE_Z)
        queries = int(math.floor(slope * sigma * sigma)) if sigma > 0 else 0
        if public_size is not None and queries > public_size:
            warnings.append(f"epsilon buys {queries} answers, the public pool has {public_size}")
            queries = public_size
        if per_individuals < 1:
            warnings.append("fewer individuals than teachers: impossible")
        elif per_records < min_records_per_class * classes:
            warnings.append(
                f"{per_records:.0f} records per teacher, fewer than the "
                f"{min_records_per_class * classes} ({min_records_per_class} per class x {classes} "
                "classes) a teacher needs to reach the assumed agreement"
            )
        if queries < 10 * classes:
            warnings.append(
                f"only {queries} answers (< 10 per class): too few for a useful student"
            )
        rows.append(
            SizingRow(
                teachers=teachers,
                individuals_per_teacher=per_individuals,
                records_per_teacher=per_records,
                margin=margin,
                sigma=sigma,
                queries=queries,
                warnings=tuple(warnings),
            )
        )
    assumption = (
        f"an assumed teacher agreement of {agreement:.0%} (the share voting for the plurality; "
        "not measured), GNMax, data-independent epsilon"
    )
    recommended, advice = _recommend(
        rows,
        classes=int(classes),
        individuals=int(individuals),
        records=records,
        public_size=public_size,
        needed_records=min_records_per_class * classes,
        epsilon=target,
        delta=delta,
        orders=orders_array,
        conversion=conversion,
    )
    return SizingResult(
        epsilon=target,
        delta=delta,
        classes=int(classes),
        individuals=int(individuals),
        records=records,
        public_size=public_size,
        agreement=agreement,
        rows=tuple(rows),
        assumption=assumption,
        recommended=recommended,
        advice=advice,
    )


def _recommend(
    rows: list[SizingRow],
    *,
    classes: int,
    individuals: int,
    records: int,
    public_size: int | None,
    needed_records: int,
    epsilon: float,
    delta: float,
    orders: np.ndarray,
    conversion: str,
) -> tuple[int | None, str]:
    """The row to suggest and why, or None and what would give a useful student.

    A row is useful when each teacher holds at least ``needed_records`` records and the budget buys
    at least 10 answers per class. Among useful rows: the most answers, then the fewest teachers
    (larger shards agree more). With none: for the rows whose shards are large enough, the epsilon
    that would buy 10 answers per class; for the rows that buy enough answers, the data they need.
    """
    wanted = 10 * classes
    big_enough = [
        r
        for r in rows
        if r.individuals_per_teacher >= 1 and r.records_per_teacher >= needed_records
    ]
    useful = [r for r in big_enough if r.queries >= wanted]
    if useful:
        best = max(useful, key=lambda r: (r.queries, -r.teachers))
        reason = (
            f"{best.teachers} teachers: each holds {best.records_per_teacher:.0f} records (at least "
            f"{needed_records}: {needed_records // classes} per class), and GNMax with sigma "
            f"{best.sigma:.2f} buys {best.queries} answers"
        )
        more = [r for r in rows if r.teachers > best.teachers]
        if public_size is not None and best.queries == public_size:
            reason += ", every record of the public pool; more teachers buy no more"
        elif more:
            reason += (
                f", the most of any setting whose teachers hold at least {needed_records} records"
            )
        if public_size is None:
            reason += "; `public_size` not given, so the answers are not capped by a public pool"
        return best.teachers, reason + "."
    advice = ["No setting gives a useful student"]
    if big_enough:  # large enough shards, too few answers: epsilon (or the public pool) limits
        row = max(big_enough, key=lambda r: r.queries)
        if public_size is not None and public_size < wanted:
            advice.append(
                f"a public pool of at least {wanted} records (10 per class; it has {public_size})"
            )
        if row.sigma > 0:
            slope = wanted * (1 + 1e-9) / (row.sigma * row.sigma)
            needed = epsilon_from_rdp(slope * orders, orders, delta, conversion=conversion)[0]
            digits = 2 - math.floor(math.log10(needed))  # three significant digits, rounded up
            needed = math.ceil(needed * 10**digits) / 10**digits
            advice.append(
                f"a larger epsilon: {needed:g} buys {wanted} answers (10 per class) with "
                f"{row.teachers} teachers"
            )
    enough_answers = [r for r in rows if r.queries >= wanted]
    if enough_answers:  # enough answers, too small shards: the data limits
        row = min(enough_answers, key=lambda r: r.teachers)
        need_records = row.teachers * needed_records
        per_individual = records / individuals
        advice.append(
            f"more data: {row.teachers} teachers need {need_records} records (about "
            f"{math.ceil(need_records / per_individual)} individuals; the data has {records} "
            f"records of {individuals} individuals)"
        )
    if len(advice) == 1:
        advice.append("more individuals (larger teachers) and a larger epsilon (more answers)")
    if classes > 2:
        advice.append(
            "or fewer classes (each teacher then needs fewer records, the student fewer answers)"
        )
    return None, advice[0] + "; what would: " + "; ".join(advice[1:]) + "."


def size_teachers_from_files(
    *,
    epsilon: float,
    private: str | os.PathLike,
    public: str | os.PathLike | None = None,
    classes: int | None = None,
    public_size: int | None = None,
    **options,
) -> SizingResult:
    """:func:`size_teachers` with what the files record: the individuals and records of the private
    dataset file ``private``, its classes (attribute ``num_classes``) and the number of records of
    the ``public`` dataset file. Read locally; nothing is written. ``classes`` or ``public_size``,
    when given, must agree with the files."""
    from pate.io import count_individuals, open_h5, read_dataset_attrs

    individuals, records = count_individuals(private)
    with open_h5(private, "dataset file") as handle:
        recorded = read_dataset_attrs(handle, private)["num_classes"]
    if classes is not None and classes != recorded:
        raise PateError(
            f"{private}: attribute 'num_classes' is {recorded}, expected {classes} as `classes`"
        )
    if public is not None:
        with open_h5(public, "dataset file") as handle:
            attrs = read_dataset_attrs(handle, public)
            size = int(handle["features"].shape[0])
        if attrs["num_classes"] != recorded:
            raise PateError(
                f"{public}: attribute 'num_classes' is {attrs['num_classes']}, expected {recorded} "
                f"as {private}"
            )
        if public_size is not None and public_size != size:
            raise PateError(
                f"{public}: holds {size} records, expected {public_size} as `public_size`"
            )
        public_size = size
    return size_teachers(
        epsilon=epsilon,
        individuals=individuals,
        records=records,
        classes=recorded,
        public_size=public_size,
        **options,
    )
