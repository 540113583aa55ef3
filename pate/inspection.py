"""What ``pate inspect`` reads and draws: the budget spent by a workspace or a release.

A *workspace* (private) has the ledger: the report is recomputed from it, including the
data-dependent epsilon (private-internal) and the vote margins. A *release* (public) has only
``privacy.json``; it never holds raw votes, so its view has no margins and no data-dependent epsilon
unless one was released with smooth sensitivity.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pate.errors import PateError
from pate.labeling import LEDGER_FILE, BudgetConfig, aggregator_from_dict, budget_history, spent
from pate.ledger import Ledger
from pate.report import privacy_report


@dataclass
class Inspection:
    kind: str  # "workspace" | "release"
    report: dict
    entries: list[dict] | None = None
    votes: np.ndarray | None = None


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
        header = ledger.header
        entries = ledger.entries()
        config = aggregator_from_dict(header["aggregator"])
        budget = BudgetConfig(
            delta=header["delta"],
            max_epsilon=header["max_epsilon"],
            orders=header["orders"],
            conversion=header["conversion"],
        )
        state = spent(entries, config, budget)
        report = privacy_report(
            header=header,
            spent=state,
            stop_reason="see ledger",
            include_private=True,
            max_epsilon_history=budget_history(ledger),
        )
        report.pop("stop_reason")
        report["ledger_damage"] = ledger.damage
        votes = None
        votes_path = path / "votes.h5"
        if votes_path.exists():
            import h5py

            with h5py.File(votes_path, "r") as handle:
                votes = handle["votes"][()]
        return Inspection("workspace", report, entries, votes)
    report_path = path / "privacy.json"
    if report_path.exists():
        try:
            report = json.loads(report_path.read_text())
        except ValueError as exc:
            raise PateError(f"{report_path}: not valid JSON ({exc})") from None
        if report.get("format") != "pate-privacy-report":
            raise PateError(
                f"{report_path}: attribute 'format' is {report.get('format')!r}, expected "
                "'pate-privacy-report'"
            )
        return Inspection("release", report)
    raise PateError(
        f"{path}: neither a workspace (no {LEDGER_FILE}) nor a release (no privacy.json)"
    )


def epsilon_curve(entries: list[dict], header: dict, points: int = 120):
    """Epsilon (data-independent and data-dependent) after k queries, at up to ``points`` values of k."""
    config = aggregator_from_dict(header["aggregator"])
    budget = BudgetConfig(
        delta=header["delta"],
        max_epsilon=header["max_epsilon"],
        orders=header["orders"],
        conversion=header["conversion"],
    )
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = inspection.report
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    if inspection.entries:
        header = {
            "aggregator": {"mechanism": report["mechanism"], **report["parameters"]},
            "delta": report["delta"],
            "max_epsilon": report["max_epsilon"],
            "orders": report["orders"],
            "conversion": report["conversion"],
        }
        answered, eps_di, eps_dd = epsilon_curve(inspection.entries, header)
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
    if inspection.entries and inspection.votes is not None:
        seen = np.array([e["q"] for e in inspection.entries])
        answered_mask = np.array([e["answered"] for e in inspection.entries])
        top2 = np.sort(inspection.votes[seen], axis=1)[:, -2:]
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
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
