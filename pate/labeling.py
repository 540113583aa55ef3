"""The answering loop: charge the ledger, then release; stop on public quantities only.

This is where PATE's guarantee is kept at answer time (design rules 3-6):

* **Charge before release.** Each batch of answers is written to the write-ahead ledger
  (:mod:`pate.ledger`, fsync-ed) *before* it can be released. A crash at any moment leaves a ledger that
  never under-counts; the release is rebuilt from the ledger, so nothing charged is lost.
* **Resume without paying twice.** A second run on the same workspace re-reads the ledger, keeps its
  answers (they are not re-noised) and continues with the first query the ledger has not seen.
  With a query chooser (:data:`QueryChooser`, the student choosing its queries) the next queries
  are the chooser's, never one the ledger holds; the charges and the stop are the same.
* **Stop without leaking.** Before each batch the loop asks how many more queries fit if every one of
  them cost the *data-independent worst case* of the mechanism (for Confident-/Interactive-GNMax: the
  threshold check plus a GNMax answer). That decision depends only on public quantities: the mechanism's
  parameters, the budget, and the answers already released (whether earlier queries were answered),
  never on the votes themselves. So stopping leaks nothing beyond what was released.
* **Realised, not expected, cost.** Confident-GNMax pays the threshold check on every query and the
  GNMax step only on the queries the teachers answered.

The publishable epsilon is the data-independent one. The data-dependent epsilon is computed from the
per-query bounds stored in the ledger; it depends on the private votes and is reported as
private-internal (publishing it needs the smooth-sensitivity release of PATE 2018, Appendix B).

The ledger's header is a :class:`pate.records.RunHeader` and each of its entries a
:class:`pate.records.QueryCharge` (one per query), written and read through those types only.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pate import accounting
from pate.accounting.discrete import (
    log_pr_answered_discrete,
    logq_gnmax_discrete,
    logq_lnmax_discrete,
)
from pate.aggregate import (
    AggregatorConfig,
    ConfidentGNMaxConfig,
    GNMaxConfig,
    InteractiveGNMaxConfig,
    LNMaxConfig,
    aggregate,
    threshold_offsets,
)
from pate.errors import BudgetExhausted, PateError
from pate.io import LEDGER_FILE as LEDGER_FILE  # re-exported: defined once, in pate.io
from pate.ledger import Ledger
from pate.noise import NoiseSource, SeededNoise
from pate.records import QueryCharge, RunHeader

#: Chooses the next queries: ``(asked, labels, count) -> ids``. ``asked`` holds the public indices of the
#: queries already seen, in ledger order, ``labels`` their released labels (``-1``: not answered), and
#: the result at most ``count`` (at least one) public indices never asked. It receives the released
#: answers only, never the votes or the ledger's private bounds, so its choice is post-processing of
#: what was released and costs nothing (:mod:`pate.distill.selection`).
QueryChooser = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class BudgetConfig:
    """The privacy budget and how epsilon is computed."""

    delta: float = 1e-5
    max_epsilon: float = 3.0
    max_queries: int | None = None
    orders: str = "default"
    conversion: str = "improved"

    def __post_init__(self) -> None:
        if not (0.0 < self.delta < 1.0):
            raise PateError(f"Expected delta={self.delta} in (0, 1).")
        if not (self.max_epsilon > 0.0) or not math.isfinite(self.max_epsilon):
            raise PateError(f"Expected max_epsilon={self.max_epsilon} > 0.")
        if self.max_queries is not None and self.max_queries < 1:
            raise PateError(f"Expected max_queries={self.max_queries} >= 1.")
        accounting.resolve_orders(self.orders)
        if self.conversion not in ("classic", "improved"):
            raise PateError(f"Expected conversion={self.conversion!r} in classic, improved.")

    @property
    def order_values(self) -> np.ndarray:
        return accounting.resolve_orders(self.orders)


def aggregator_from_dict(raw: dict) -> AggregatorConfig:
    """Rebuild an aggregator config from its ``to_dict()`` form (as stored in a ledger header)."""
    mechanism = raw.get("mechanism")
    params = {k: v for k, v in raw.items() if k != "mechanism"}
    classes = {
        "gnmax": GNMaxConfig,
        "lnmax": LNMaxConfig,
        "confident-gnmax": ConfidentGNMaxConfig,
        "interactive-gnmax": InteractiveGNMaxConfig,
    }
    if mechanism not in classes:
        raise PateError(
            f"ledger: mechanism {mechanism!r} is unknown, expected one of {list(classes)}"
        )
    return classes[mechanism](**params)


# ----------------------------------------------------------------------------------------------------
# Costs


def worst_case_rdp(config: AggregatorConfig, orders: np.ndarray) -> np.ndarray:
    """Data-independent RDP of one query in the worst case (answered by the teachers)."""
    if isinstance(config, GNMaxConfig):
        return accounting.rdp_gnmax_data_independent(config.sigma, orders)
    if isinstance(config, LNMaxConfig):
        return accounting.rdp_lnmax_data_independent(config.scale, orders)
    return accounting.rdp_threshold_data_independent(
        config.sigma1, orders
    ) + accounting.rdp_gnmax_data_independent(config.sigma2, orders)


def _teacher_sigma(config: AggregatorConfig) -> float:
    return config.sigma if isinstance(config, GNMaxConfig) else config.sigma2


@dataclass(frozen=True)
class Spent:
    """The budget spent by a list of ledger entries, as RDP curves and (epsilon, order) at delta."""

    rdp_data_independent: np.ndarray
    rdp_data_dependent: np.ndarray
    epsilon_data_independent: float
    order_data_independent: float
    epsilon_data_dependent: float
    order_data_dependent: float
    queries_seen: int
    queries_answered: int
    teacher_answered: int
    threshold_checked: int


def spent(entries: Sequence[QueryCharge], config: AggregatorConfig, budget: BudgetConfig) -> Spent:
    """Recompute the budget spent by ``entries`` from their per-query charges (vectorised)."""
    orders = budget.order_values
    teacher = np.array([e.teacher for e in entries], dtype=bool)
    checked = np.array([e.checked for e in entries], dtype=bool)
    answered = np.array([e.answered for e in entries], dtype=bool)
    n_teacher, n_checked = int(teacher.sum()), int(checked.sum())
    rdp_di = np.zeros_like(orders)
    rdp_dd = np.zeros_like(orders)
    if isinstance(config, LNMaxConfig):
        if n_teacher:
            rdp_di = n_teacher * accounting.rdp_lnmax_data_independent(config.scale, orders)
            logq = np.array([e.logq for e in entries if e.teacher], dtype=np.float64)
            rdp_dd = accounting.rdp_lnmax(logq, config.scale, orders).sum(axis=0)
    else:
        sigma = _teacher_sigma(config)
        if n_teacher:
            rdp_di = n_teacher * accounting.rdp_gnmax_data_independent(sigma, orders)
            logq = np.array([e.logq for e in entries if e.teacher], dtype=np.float64)
            rdp_dd = accounting.rdp_gnmax(logq, sigma, orders).sum(axis=0)
        if n_checked:
            sigma1 = config.sigma1
            rdp_di = rdp_di + n_checked * accounting.rdp_threshold_data_independent(sigma1, orders)
            logq_check = np.array([e.logq_check for e in entries if e.checked], dtype=np.float64)
            # The check is a sensitivity-1 Gaussian-like mechanism: GNMax's bound at sqrt(2) sigma1.
            rdp_dd = rdp_dd + accounting.rdp_gnmax(logq_check, math.sqrt(2.0) * sigma1, orders).sum(
                axis=0
            )
    eps_di, order_di = accounting.epsilon_from_rdp(
        rdp_di, orders, budget.delta, conversion=budget.conversion
    )
    eps_dd, order_dd = accounting.epsilon_from_rdp(
        rdp_dd, orders, budget.delta, conversion=budget.conversion
    )
    if not entries:
        eps_di = eps_dd = 0.0
    return Spent(
        rdp_data_independent=rdp_di,
        rdp_data_dependent=rdp_dd,
        epsilon_data_independent=eps_di,
        order_data_independent=order_di,
        epsilon_data_dependent=eps_dd,
        order_data_dependent=order_dd,
        queries_seen=len(entries),
        queries_answered=int(answered.sum()),
        teacher_answered=n_teacher,
        threshold_checked=n_checked,
    )


def queries_that_fit(
    rdp_spent: np.ndarray, worst: np.ndarray, budget: BudgetConfig, limit: int
) -> int:
    """Largest ``k <= limit`` with epsilon(rdp_spent + k * worst) <= max_epsilon (public quantities only)."""
    orders = budget.order_values

    def fits(k: int) -> bool:
        eps, _ = accounting.epsilon_from_rdp(
            rdp_spent + k * worst, orders, budget.delta, conversion=budget.conversion
        )
        return eps <= budget.max_epsilon

    low, high = 0, limit
    if fits(high):
        return high
    while high - low > 1:  # invariant: fits(low), not fits(high)
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low if fits(low) else 0


def entries_for(
    votes: np.ndarray,
    query_ids: np.ndarray,
    result,
    config: AggregatorConfig,
    *,
    student_probs: np.ndarray | None,
    stage: int,
) -> list[QueryCharge]:
    """The charges of one aggregated batch: the answers and each query's data-dependent bounds."""
    logq = np.full(len(query_ids), np.nan)
    logq_check = np.full(len(query_ids), np.nan)
    if result.teacher_answered.any():
        rows = result.teacher_answered
        if isinstance(config, LNMaxConfig):
            logq[rows] = logq_lnmax_discrete(votes[rows], config.scale)
        else:
            logq[rows] = logq_gnmax_discrete(votes[rows], _teacher_sigma(config))
    if result.threshold_checked.any():
        offsets = threshold_offsets(
            votes,
            config.threshold,
            student_probs=student_probs if stage == 1 else None,
            num_teachers=int(votes.sum(axis=1).max()) if stage == 1 else None,
        )
        log_answered, log_rejected = log_pr_answered_discrete(offsets, config.sigma1)
        logq_check = np.minimum(log_answered, log_rejected)
    return [
        QueryCharge(
            q=int(q),
            label=int(result.labels[i]),
            answered=bool(result.answered[i]),
            teacher=bool(result.teacher_answered[i]),
            checked=bool(result.threshold_checked[i]),
            logq=None if math.isnan(logq[i]) else float(logq[i]),
            logq_check=None if math.isnan(logq_check[i]) else float(logq_check[i]),
            stage=stage,
        )
        for i, q in enumerate(query_ids)
    ]


# ----------------------------------------------------------------------------------------------------
# The loop


@dataclass
class LabelingOutcome:
    """What a (possibly resumed) labelling run produced."""

    entries: list[QueryCharge]
    spent: Spent
    stop_reason: str
    new_queries: int
    resumed_queries: int
    header: RunHeader
    max_epsilon_history: tuple[float, ...] = ()

    @property
    def run_id(self) -> str:
        """The run's random identifier (public: drawn from the OS CSPRNG, see :func:`new_run_id`)."""
        return self.header.run_id

    @property
    def max_epsilon(self) -> float:
        """The budget in force at the end of the run."""
        return self.max_epsilon_history[-1]

    @property
    def answered_ids(self) -> np.ndarray:
        return np.array([e.q for e in self.entries if e.answered], dtype=np.int64)

    @property
    def answered_labels(self) -> np.ndarray:
        return np.array([e.label for e in self.entries if e.answered], dtype=np.int64)


def batch_noise(noise: NoiseSource, noise_seed: int | None, first_query: int) -> NoiseSource:
    """The noise of the batch starting at ``first_query``.

    With OS noise: the CSPRNG itself. With an experiment seed: a seeded source keyed by
    ``(seed, first_query)``, so a resumed run draws exactly the noise an uninterrupted run would have.
    """
    if noise_seed is None:
        return noise
    key = np.random.SeedSequence([noise_seed, first_query]).generate_state(2, dtype=np.uint64)
    return SeededNoise(int(key[0]) ^ (int(key[1]) << 64))


def new_run_id() -> str:
    """A fresh run identifier: 128 bits from the OS CSPRNG (``secrets``), hex.

    It ties a release to its workspace without revealing anything: it is independent of every input,
    private or public, so it may be published (design rule 7). Never derive it from a hash of data.
    """
    return secrets.token_hex(16)


def read_header(ledger: Ledger) -> RunHeader:
    """The ledger's header as a validated :class:`RunHeader`."""
    return RunHeader.from_dict(ledger.header, where=f"{ledger.path}: header")


def read_charges(ledger: Ledger) -> list[QueryCharge]:
    """The ledger's entries as validated :class:`QueryCharge` records, in order."""
    return [
        QueryCharge.from_dict(entry, where=f"{ledger.path}: entry {index}")
        for index, entry in enumerate(ledger.entries())
    ]


def budget_history(ledger: Ledger) -> tuple[float, ...]:
    """Every ``max_epsilon`` that was in force, in order: the header's, then each recorded change."""
    return (read_header(ledger).max_epsilon,) + tuple(
        float(change["max_epsilon"]) for change in ledger.budgets()
    )


def open_ledger(path: Path, header: RunHeader, *, raise_budget: bool = False) -> Ledger:
    """Create the ledger with ``header``, or open an existing one and refuse it unless it matches.

    A requested ``max_epsilon`` other than the one in force is refused, unless ``raise_budget`` is set
    and the new budget is larger; the change is then recorded in the ledger before any query is
    answered under it, so the history of budgets is never lost and the release states the last one.
    """
    if not path.exists():
        return Ledger.create(path, header.to_dict())
    ledger = Ledger.open(path)
    try:
        found = read_header(ledger)
        name = found.mismatch(header)
        if name is not None:
            raise PateError(
                f"{path}: ledger belongs to another run ({name} is {getattr(found, name)!r}, this "
                f"run has {getattr(header, name)!r}); use a new `workspace`"
            )
        in_force = budget_history(ledger)[-1]
        requested = header.max_epsilon
        if requested != in_force:
            if not raise_budget:
                raise PateError(
                    f"{path}: `max_epsilon` is {requested:g} but the budget in force for this "
                    f"workspace is {in_force:g}; rerun with `max_epsilon` {in_force:g}, or set "
                    "`raise_budget` to raise it (recorded in the ledger)"
                )
            if requested < in_force:
                raise PateError(
                    f"{path}: `raise_budget` with `max_epsilon` {requested:g}, expected more than the "
                    f"budget in force ({in_force:g}); a spent budget cannot be lowered"
                )
            ledger.append([], budget={"max_epsilon": requested})
    except BaseException:
        ledger.close()
        raise
    return ledger


def run_labeling(
    votes: np.ndarray,
    config: AggregatorConfig,
    budget: BudgetConfig,
    ledger_path: str | os.PathLike,
    *,
    noise: NoiseSource,
    noise_seed: int | None,
    header: RunHeader,
    batch_queries: int = 32,
    student_probs_fn: Callable[[list[QueryCharge]], np.ndarray] | None = None,
    warmup_queries: int = 0,
    on_batch: Callable[[int, Spent], None] | None = None,
    released: tuple[str, int] | None = None,
    raise_budget: bool = False,
    choose_queries: QueryChooser | None = None,
) -> LabelingOutcome:
    """Answer queries in order until the budget, ``max_queries`` or the public set runs out.

    With ``choose_queries`` (a :data:`QueryChooser`), the queries are the ones it picks instead of
    the public order; each is charged exactly as in order, and the stop is the same worst-case rule.

    For Interactive-GNMax, the first ``warmup_queries`` are answered by Confident-GNMax with the same
    parameters (stage 0); then ``student_probs_fn(entries)`` gives the probabilities of a student trained
    on the stage-0 answers for every public record, and the rest are answered interactively (stage 1).

    ``released`` is ``(run_id, queries_seen)`` of an existing release: if it came from this ledger
    and the ledger now holds fewer queries, records were removed and the run is refused. The budget in
    force is ``budget.max_epsilon`` once :func:`open_ledger` has accepted it.
    """
    if batch_queries < 1:
        raise PateError(f"Expected batch_queries={batch_queries} >= 1.")
    votes = np.asarray(votes)
    num_queries = len(votes)
    limit = num_queries if budget.max_queries is None else min(num_queries, budget.max_queries)
    header = dataclasses.replace(header, max_epsilon=budget.max_epsilon)  # one source: the budget
    ledger = open_ledger(Path(ledger_path), header, raise_budget=raise_budget)
    with ledger:
        return _answer(
            ledger,
            votes,
            config,
            budget,
            limit=limit,
            noise=noise,
            noise_seed=noise_seed,
            batch_queries=batch_queries,
            student_probs_fn=student_probs_fn,
            warmup_queries=warmup_queries,
            on_batch=on_batch,
            released=released,
            choose_queries=choose_queries,
        )


def _answer(
    ledger: Ledger,
    votes: np.ndarray,
    config: AggregatorConfig,
    budget: BudgetConfig,
    *,
    limit: int,
    noise: NoiseSource,
    noise_seed: int | None,
    batch_queries: int,
    student_probs_fn: Callable[[list[QueryCharge]], np.ndarray] | None,
    warmup_queries: int,
    on_batch: Callable[[int, Spent], None] | None,
    released: tuple[str, int] | None,
    choose_queries: QueryChooser | None = None,
) -> LabelingOutcome:
    """The loop of :func:`run_labeling` on an open, accepted ledger."""
    ledger_path = ledger.path
    num_queries = len(votes)
    entries = read_charges(ledger)
    header = read_header(ledger)
    if released is not None and released[0] == header.run_id:
        if len(entries) < released[1]:
            raise PateError(
                f"{ledger_path}: the ledger holds {len(entries)} queries but the release of this "
                f"run was made from {released[1]}; records were removed, refusing to under-count"
            )
    resumed = len(entries)
    if choose_queries is None:
        if [e.q for e in entries] != list(range(resumed)):
            raise PateError(f"{ledger_path}: ledger queries are not the prefix 0..{resumed - 1}")
    else:
        _check_no_repeats([e.q for e in entries], num_queries, where=str(ledger_path))
    orders = budget.order_values
    worst = worst_case_rdp(config, orders)
    interactive = isinstance(config, InteractiveGNMaxConfig)
    stage0 = (
        ConfidentGNMaxConfig(config.threshold, config.sigma1, config.sigma2)
        if interactive
        else None
    )
    state = spent(entries, config, budget)
    student_probs = None
    stop_reason = "public set exhausted" if limit == num_queries else "max queries"
    next_query = resumed
    while next_query < limit:
        in_stage0 = interactive and next_query < warmup_queries
        stage_limit = min(limit, warmup_queries) if in_stage0 else limit
        room = queries_that_fit(
            state.rdp_data_independent, worst, budget, min(batch_queries, stage_limit - next_query)
        )
        if room == 0:
            stop_reason = "budget"
            break
        if choose_queries is None:
            query_ids = np.arange(next_query, next_query + room)
        else:
            query_ids = _chosen(choose_queries, entries, room, num_queries)
            room = len(query_ids)
        batch_votes = votes[query_ids]
        source = batch_noise(noise, noise_seed, next_query)
        probs = None
        if in_stage0:
            result = aggregate(batch_votes, stage0, source)
        elif interactive:
            if student_probs is None:
                if student_probs_fn is None:
                    raise PateError("interactive-gnmax needs a student (student_probs_fn)")
                student_probs = student_probs_fn(entries)
            probs = student_probs[query_ids]
            result = aggregate(batch_votes, config, source, probs)
        else:
            result = aggregate(batch_votes, config, source)
        batch_entries = entries_for(
            batch_votes,
            query_ids,
            result,
            config,
            student_probs=probs,
            stage=0 if (in_stage0 or not interactive) else 1,
        )
        ledger.append([e.to_dict() for e in batch_entries])  # durable before any is released
        entries.extend(batch_entries)
        state = spent(entries, config, budget)
        next_query += room
        if on_batch:
            on_batch(next_query, state)
    if next_query >= limit and stop_reason == "budget":
        stop_reason = "public set exhausted"
    return LabelingOutcome(
        entries=entries,
        spent=state,
        stop_reason=stop_reason,
        new_queries=len(entries) - resumed,
        resumed_queries=resumed,
        header=header,
        max_epsilon_history=budget_history(ledger),
    )


def _check_no_repeats(ids: Sequence[int], num_queries: int, *, where: str) -> None:
    """Refuse a query index asked twice or outside the public set."""
    if len(set(ids)) != len(ids):
        raise PateError(f"{where}: a query was asked twice; refusing to pay for it again")
    if any(not 0 <= q < num_queries for q in ids):
        raise PateError(f"{where}: a query index is outside the public set 0..{num_queries - 1}")


def _chosen(
    choose_queries: QueryChooser, entries: list[QueryCharge], room: int, num_queries: int
) -> np.ndarray:
    """The chooser's next ids, given only the released part of ``entries``, checked: 1..room new ids."""
    asked = np.array([e.q for e in entries], dtype=np.int64)
    labels = np.array([e.label if e.answered else -1 for e in entries], dtype=np.int64)
    ids = np.asarray(choose_queries(asked, labels, room), dtype=np.int64).reshape(-1)
    if not 1 <= len(ids) <= room:
        raise PateError(f"query chooser returned {len(ids)} queries, expected 1..{room}")
    _check_no_repeats([*asked.tolist(), *ids.tolist()], num_queries, where="query chooser")
    return ids


def check_budget_covers_one(config: AggregatorConfig, budget: BudgetConfig) -> None:
    """Refuse a budget that cannot pay for even one worst-case query."""
    orders = budget.order_values
    eps, _ = accounting.epsilon_from_rdp(
        worst_case_rdp(config, orders), orders, budget.delta, conversion=budget.conversion
    )
    if eps > budget.max_epsilon:
        raise BudgetExhausted(
            f"`max_epsilon` {budget.max_epsilon:g} does not cover one query: one {config.mechanism} "
            f"answer costs epsilon {eps:.4g} at delta {budget.delta:g}; raise `max_epsilon` or the noise"
        )
