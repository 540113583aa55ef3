"""What ``pate inspect`` reads and draws: the budget spent by a workspace or a release.

A *workspace* (private) has the ledger: the report is recomputed from it, including the
data-dependent epsilon (private-internal) and the vote margins. A *release* (public) has only
``privacy.json``; it never holds raw votes, so its view has no margins and no data-dependent epsilon
unless one was released with smooth sensitivity.

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
        )
    report_path = path / "privacy.json"
    if report_path.exists():
        try:
            report = json.loads(report_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise PateError(f"{report_path}: not valid JSON ({exc})") from None
        check_release_report(report, report_path)
        return Inspection("release", report)
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


def plot_inspection(inspection: Inspection, out_path: str | os.PathLike) -> None:
    """Draw epsilon against queries answered and, for a workspace, the vote-margin distribution."""
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
        ax.plot(
            [0, report["queries_answered"]],
            [0, report["epsilon"]],
            "o-",
            label="data-independent (publishable)",
        )
    ax.axhline(report["max_epsilon"], color="black", linestyle="--", label="budget")
    ax.set_xlabel("queries answered")
    ax.set_ylabel(f"epsilon at delta = {report['delta']:g}")
    ax.set_title(f"{report['mechanism']}: privacy spent")
    ax.legend(loc="upper left", fontsize=8)
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
    else:
        ax.text(
            0.5,
            0.5,
            "a release holds no votes:\nmargins are shown for a workspace only",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out_path, dpi=110, format="png")
    plt.close(fig)
