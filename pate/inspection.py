"""What ``pate inspect`` reads and draws: the budget spent by a workspace or a release.

A *workspace* (private) has the ledger: the report is recomputed from it, including the
data-dependent epsilon (private-internal) and the vote margins. A *release* (public) has
``privacy.json`` and ``labels.h5``; it never holds raw votes, so its view has no margins and no
data-dependent epsilon unless one was released with smooth sensitivity. Its plot draws the
data-independent epsilon exactly (a function of the configuration and of which queries were answered)
and the released answers per class.

:func:`inspect` is ``pate inspect`` as one call: the report, and on request its plot. Errors name the
argument they are about in backquotes, as `plot`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pate.distill.workspace import VOTES_FILE
from pate.errors import PateError
from pate.io import array_fingerprint, atomic_file, check_fits_in_memory, open_h5
from pate.labeling import (
    LEDGER_FILE,
    BudgetConfig,
    aggregator_from_dict,
    budget_history,
    read_charges,
    read_header,
    spent,
)
from pate.ledger import Ledger
from pate.outputs import check_output
from pate.records import QueryCharge, RunHeader
from pate.report import privacy_report


@dataclass
class Inspection:
    kind: str  # "workspace" | "release"
    report: dict
    entries: list[QueryCharge] | None = None
    header: RunHeader | None = None  # the ledger's header (a workspace)
    votes_path: Path | None = None  # the workspace's votes file; read only by :func:`load_votes`
    path: Path | None = None  # the folder inspected

    def summary(self) -> dict:
        """The report in plain values, with ``kind`` (the command's ``--json`` report)."""
        summary = {key: value for key, value in self.report.items() if key != "statement"}
        summary["kind"] = self.kind
        summary["statement"] = self.report["statement"]
        return summary


# What ``pate inspect`` shows of a release's privacy.json: key -> expected JSON type(s).
RELEASE_KEYS = {
    "mechanism": str,
    "parameters": dict,
    "num_teachers": int,
    "queries_seen": int,
    "queries_answered": int,
    "queries_rejected": int,
    "epsilon": (int, float),
    "delta": (int, float),
    "max_epsilon": (int, float),
    "order": (int, float),
    "accountant": str,
    "noise": str,
    "private": bool,
    "statement": str,
}
_TYPE_NAMES = {str: "a string", dict: "a JSON object", int: "an integer", bool: "true or false"}


def inspect(path: str | os.PathLike, *, plot: str | os.PathLike | None = None) -> Inspection:
    """The budget spent by the workspace or release at ``path`` (:func:`inspect_path`) and, with
    ``plot``, its plot written there as a PNG (:func:`plot_inspection`, atomically). A workspace's plot
    shows vote margins, which depend on the private data: it is written with mode 0600. Refuses, before
    anything is read, a ``plot`` that the output policy refuses (:func:`pate.outputs.check_output`):
    one that is, holds or lies inside ``path`` or inside any run folder, or that exists and is not a
    PNG (an existing PNG is replaced)."""
    check_output(plot, kinds=("png",), folder=False, inputs={"path": path}, force=True, name="plot")
    inspection = inspect_path(path)
    if plot:
        with atomic_file(Path(plot), private=inspection.kind == "workspace") as tmp:
            plot_inspection(inspection, tmp)
    return inspection


def inspect_path(path: str | os.PathLike) -> Inspection:
    """Load the report of a workspace (recomputed from its ledger) or a release (its privacy.json)."""
    path = Path(path)
    if not path.exists():
        raise PateError(f"{path}: no such workspace or release folder")
    if path.is_file():
        path = path.parent
    ledger_path = path / LEDGER_FILE
    if ledger_path.exists():
        ledger = Ledger.open(ledger_path, read_only=True, tolerate_damage=True)
        header = read_header(ledger)
        entries = read_charges(ledger)
        history = budget_history(ledger)
        state = spent(entries, aggregator_from_dict(header.aggregator), budget_of(header))
        report = privacy_report(
            header=header,
            spent=state,
            stop_reason="see ledger",
            include_private=True,
            max_epsilon_history=history,
        )
        report.pop("stop_reason")
        report["ledger_damage"] = ledger.damage
        # The votes are read only when a plot needs them (load_votes): the ledger alone gives the report.
        votes_path = path / VOTES_FILE
        return Inspection(
            "workspace",
            report,
            entries,
            header=header,
            votes_path=votes_path if votes_path.exists() else None,
            path=path,
        )
    report_path = path / "privacy.json"
    if report_path.exists():
        try:
            report = json.loads(report_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise PateError(f"{report_path}: not valid JSON ({exc})") from None
        check_release_report(report, report_path)
        return Inspection("release", report, path=path)
    raise PateError(
        f"{path}: neither a workspace (no {LEDGER_FILE}) nor a release (no privacy.json)"
    )


def check_release_report(report, path: str | os.PathLike) -> None:
    """Refuse a release's privacy.json that is not a report ``pate inspect`` can show."""
    if not isinstance(report, dict):
        kind = "a list" if isinstance(report, list) else f"a JSON {type(report).__name__}"
        raise PateError(f"{path}: is {kind}, expected a JSON object (a pate-privacy-report)")
    if report.get("format") != "pate-privacy-report":
        raise PateError(
            f"{path}: key 'format' is {report.get('format')!r}, expected 'pate-privacy-report'"
        )
    for key, expected in RELEASE_KEYS.items():
        if key not in report:
            raise PateError(f"{path}: missing key {key!r}, expected a complete pate-privacy-report")
        value = report[key]
        numeric = expected == (int, float)
        ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
        if not ok:
            wanted = "a number" if numeric else _TYPE_NAMES[expected]
            raise PateError(f"{path}: key {key!r} is {value!r}, expected {wanted}")
    for name, value in report["parameters"].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise PateError(f"{path}: key 'parameters' has {name}={value!r}, expected a number")
    dd = report.get("epsilon_data_dependent")
    if dd is not None and (not isinstance(dd, (int, float)) or isinstance(dd, bool)):
        raise PateError(
            f"{path}: key 'epsilon_data_dependent' is {dd!r}, expected a number or null"
        )


def load_votes(inspection: Inspection) -> np.ndarray | None:
    """The workspace's vote histograms (Q x C), checked against its ledger; ``None`` without them.

    Refuses, naming the votes file, one that is not HDF5, has no ``votes`` dataset, or holds votes of
    another shape or another run than the ledger's (its ``votes_sha256``).
    """
    path = inspection.votes_path
    if inspection.kind != "workspace" or path is None:
        return None
    import h5py

    header = inspection.header
    entries = inspection.entries or []
    rows = header.num_queries if header else max((e.q for e in entries), default=-1) + 1
    classes = header.num_classes if header else None
    with open_h5(path, "votes file") as handle:
        dataset = handle.get("votes")
        if not isinstance(dataset, h5py.Dataset):
            raise PateError(
                f"{path}: missing dataset 'votes', expected the ({rows}, classes) vote counts of "
                "the ledger's queries (needed for `plot`)"
            )
        shape = dataset.shape
        if len(shape) != 2 or shape[0] != rows or shape[1] < 2 or shape[1] != (classes or shape[1]):
            raise PateError(
                f"{path}: dataset 'votes' has shape {shape}, expected ({rows}, {classes or 'classes'}) "
                "as the ledger's queries (needed for `plot`)"
            )
        if dataset.dtype.kind not in ("i", "u"):
            raise PateError(f"{path}: dataset 'votes' has dtype {dataset.dtype}, expected integers")
        check_fits_in_memory(handle, path, ["votes"])
        votes = dataset[()]
    if header is not None and array_fingerprint(votes) != header.votes_sha256:
        raise PateError(
            f"{path}: dataset 'votes' does not match the ledger's votes_sha256, expected the votes "
            "of this workspace's run (needed for `plot`)"
        )
    return votes


def budget_of(header: RunHeader) -> BudgetConfig:
    """How the run's epsilon is computed (delta, orders, conversion), as its header records it."""
    return BudgetConfig(
        delta=header.delta,
        max_epsilon=header.max_epsilon,
        orders=header.orders,
        conversion=header.conversion,
    )


def epsilon_curve(entries: list[QueryCharge], header: RunHeader, points: int = 120):
    """Epsilon (data-independent and data-dependent) after k queries, at up to ``points`` values of k."""
    config = aggregator_from_dict(header.aggregator)
    budget = budget_of(header)
    ks = np.unique(np.linspace(1, len(entries), min(points, len(entries))).astype(int))
    answered, eps_di, eps_dd = [], [], []
    for k in ks:
        state = spent(entries[:k], config, budget)
        answered.append(state.queries_answered)
        eps_di.append(state.epsilon_data_independent)
        eps_dd.append(state.epsilon_data_dependent)
    return np.array(answered), np.array(eps_di), np.array(eps_dd)


def data_independent_epsilon(
    aggregator: dict, budget: BudgetConfig, teacher: np.ndarray, checked: np.ndarray
) -> np.ndarray:
    """The data-independent epsilon after ``teacher[i]`` teacher answers and ``checked[i]`` threshold
    checks, for each i: the same bound as the ledger's (:func:`pate.labeling.spent`), a function of the
    configuration and the counts only."""
    from pate import accounting
    from pate.aggregate import GNMaxConfig, LNMaxConfig

    config = aggregator_from_dict(aggregator)
    orders = budget.order_values
    if isinstance(config, LNMaxConfig):
        per_answer = accounting.rdp_lnmax_data_independent(config.scale, orders)
        per_check = np.zeros_like(orders)
    else:
        sigma = config.sigma if isinstance(config, GNMaxConfig) else config.sigma2
        per_answer = accounting.rdp_gnmax_data_independent(sigma, orders)
        per_check = (
            np.zeros_like(orders)
            if isinstance(config, GNMaxConfig)
            else accounting.rdp_threshold_data_independent(config.sigma1, orders)
        )
    out = np.zeros(len(teacher))
    for i, (t, c) in enumerate(zip(teacher, checked, strict=True)):
        if t or c:
            rdp = t * per_answer + c * per_check
            out[i] = accounting.epsilon_from_rdp(
                rdp, orders, budget.delta, conversion=budget.conversion
            )[0]
    return out


def release_epsilon_curve(inspection: Inspection, points: int = 200):
    """A release's data-independent epsilon after each answered query, exactly, from public values
    only: the configuration in ``privacy.json`` and the answered query indices in ``labels.h5``.

    Returns ``(answered, epsilon)`` at up to ``points`` values, the last the release's; or None where
    the release does not say in which order the charges came (Confident-GNMax whose queries the
    student chose, Interactive-GNMax whose student answers cost nothing).

    GNMax and LNMax charge one teacher answer per query asked. Confident-GNMax asked the public
    records in order (0, 1, ...) and charged a threshold check on each and a teacher answer on each
    answered one, so the k-th answer, at query index q, follows q + 1 checks."""
    report = inspection.report
    mechanism = report["mechanism"]
    budget = BudgetConfig(
        delta=report["delta"],
        max_epsilon=report["max_epsilon"],
        orders=report.get("orders", "default"),
        conversion=report.get("conversion", "improved"),
    )
    aggregator = {"mechanism": mechanism, **report["parameters"]}
    answered = int(report["queries_answered"])
    if answered == 0:
        return None
    ks = np.unique(np.linspace(1, answered, min(points, answered)).astype(np.int64))
    if mechanism in ("gnmax", "lnmax"):
        epsilon = data_independent_epsilon(aggregator, budget, ks, np.zeros_like(ks))
        return ks, epsilon
    selection = (report.get("configuration") or {}).get("query_selection", "order")
    if mechanism != "confident-gnmax" or selection != "order" or inspection.path is None:
        return None
    from pate.distill.release import LABELS_FILE, read_labels

    labels_path = inspection.path / LABELS_FILE
    if not labels_path.exists():
        return None
    query_index, _ = read_labels(labels_path)
    query_index = np.sort(query_index)
    if len(query_index) != answered:
        return None
    checks = query_index[ks - 1] + 1
    epsilon = data_independent_epsilon(aggregator, budget, ks, checks)
    if answered and int(report["queries_seen"]) > int(query_index[-1]) + 1:
        # Rejected queries after the last answer: their checks are charged too.
        ks = np.append(ks, answered)
        epsilon = np.append(
            epsilon,
            data_independent_epsilon(
                aggregator, budget, np.array([answered]), np.array([report["queries_seen"]])
            ),
        )
    return ks, epsilon


def release_epsilon_band(inspection: Inspection, points: int = 200):
    """Confident-GNMax whose queries the student chose: the release records which queries were
    answered but not where the rejected ones fell, so the data-independent epsilon after the k-th
    answer lies between two exact bounds: k checks (every rejection came after) and
    ``seen - answered + k`` checks (every rejection came before). Returns ``(answered, low, high)``,
    or None for other releases. Public values only."""
    report = inspection.report
    if report["mechanism"] != "confident-gnmax":
        return None
    answered, seen = int(report["queries_answered"]), int(report["queries_seen"])
    if answered == 0:
        return None
    budget = BudgetConfig(
        delta=report["delta"],
        max_epsilon=report["max_epsilon"],
        orders=report.get("orders", "default"),
        conversion=report.get("conversion", "improved"),
    )
    aggregator = {"mechanism": "confident-gnmax", **report["parameters"]}
    ks = np.unique(np.linspace(1, answered, min(points, answered)).astype(np.int64))
    low = data_independent_epsilon(aggregator, budget, ks, ks)
    high = data_independent_epsilon(aggregator, budget, ks, ks + (seen - answered))
    return ks, low, high


def release_answers_per_class(inspection: Inspection) -> tuple[list[str], np.ndarray] | None:
    """The released (noisy) labels counted per class, with the class names: public values."""
    if inspection.kind != "release" or inspection.path is None:
        return None
    from pate.distill.release import LABELS_FILE, read_labels

    labels_path = inspection.path / LABELS_FILE
    if not labels_path.exists():
        return None
    _, labels = read_labels(labels_path)
    with open_h5(labels_path, "released labels file") as handle:
        names = [str(n) for n in handle.attrs.get("class_names", [])]
    classes = max(len(names), int(labels.max()) + 1 if len(labels) else 0)
    names = names or [str(c) for c in range(classes)]
    return names, np.bincount(labels, minlength=classes)


def plot_inspection(inspection: Inspection, out_path: str | os.PathLike) -> None:
    """Draw epsilon against queries answered and, for a workspace, the vote-margin distribution;
    for a release, the exact data-independent curve (:func:`release_epsilon_curve`) and the
    released answers per class (public values only)."""
    votes = load_votes(inspection)  # refuses damaged votes before anything is drawn or written
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = inspection.report
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    if inspection.entries and inspection.header is not None:
        answered, eps_di, eps_dd = epsilon_curve(inspection.entries, inspection.header)
        ax.plot(answered, eps_di, label="data-independent (publishable)")
        ax.plot(answered, eps_dd, label="data-dependent (private-internal)")
    else:
        curve = release_epsilon_curve(inspection)
        band = None if curve is not None else release_epsilon_band(inspection)
        if curve is not None:
            ax.plot(*curve, label="data-independent (publishable)")
            ax.set_xlim(left=0)
        elif band is not None:
            ks, low, high = band
            ax.fill_between(
                ks,
                low,
                high,
                alpha=0.4,
                label="data-independent (publishable): between these bounds\n"
                "(where the rejected queries fell is not released)",
            )
            ax.plot([ks[-1]], [report["epsilon"]], "o", color="C0")
            ax.set_xlim(left=0)
        else:
            ax.plot(
                [report["queries_answered"]],
                [report["epsilon"]],
                "o",
                label="data-independent (publishable), final",
            )
            ax.text(
                0.02,
                0.6,
                "the release does not record the order of its charges:\nthe final value only",
                transform=ax.transAxes,
                fontsize=8,
            )
    ax.axhline(report["max_epsilon"], color="black", linestyle="--", label="budget")
    ax.set_xlabel("queries answered")
    ax.set_ylabel(f"epsilon at delta = {report['delta']:g}")
    ax.set_title(f"{report['mechanism']}: privacy spent")
    ax.legend(loc="best", fontsize=8)
    ax = axes[1]
    if inspection.entries and votes is not None:
        seen = np.array([e.q for e in inspection.entries])
        answered_mask = np.array([e.answered for e in inspection.entries], dtype=bool)
        top2 = np.sort(votes[seen], axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        bins = np.linspace(0, max(int(margin.max()), 1), 30)
        ax.hist(margin[answered_mask], bins=bins, alpha=0.7, label="answered")
        ax.hist(margin[~answered_mask], bins=bins, alpha=0.7, label="rejected")
        ax.set_xlabel("vote margin (top - runner-up)")
        ax.set_ylabel("queries")
        ax.set_title("vote margins (private workspace)")
        ax.legend(fontsize=8)
    elif (per_class := release_answers_per_class(inspection)) is not None:
        names, counts = per_class
        ax.bar(range(len(counts)), counts)
        ax.set_xticks(
            range(len(counts)),
            names,
            rotation=45 if len(names) > 6 else 0,
            ha="right" if len(names) > 6 else "center",
        )
        for x, count in enumerate(counts):
            ax.annotate(str(int(count)), (x, count), ha="center", va="bottom", fontsize=8)
        ax.set_xlabel("released label")
        ax.set_ylabel("answers")
        ax.set_title(f"answers per class ({int(counts.sum())} noisy labels, public)")
    else:
        ax.text(
            0.5,
            0.5,
            "no labels.h5 beside privacy.json:\nanswers per class unknown",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out_path, dpi=110, format="png")
    plt.close(fig)
