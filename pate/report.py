"""The privacy report (``privacy.json``) and its plain-language statement.

The report is what ``pate inspect`` shows and what the student bundle carries. Its publishable figure,
``epsilon``, is the data-independent epsilon: it depends only on the mechanism, its parameters and how
many queries were checked or answered. The data-dependent epsilon depends on the private votes; it is
kept in the private workspace's view and is ``null`` in a release.

Release rule (docs/release.md lists every field and why it is public): every value of a released
report is a function of the public inputs, the configuration, randomness drawn for that purpose (the
run id) or the noisy answers. No hash, count or statistic of private data -- the ledger's fingerprints
of the teachers and the votes stay in the private workspace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pate.io import atomic_file
from pate.records import RunHeader

REPORT_FORMAT = "pate-privacy-report"
REPORT_VERSION = 1


def privacy_report(
    *,
    header: RunHeader,
    spent,
    stop_reason: str,
    include_private: bool,
    max_epsilon_history: tuple[float, ...] | None = None,
) -> dict:
    """Build the report from a ledger header and the spent budget (a :class:`pate.labeling.Spent`).

    ``max_epsilon_history`` lists every budget that was in force (the header's, then each raise
    recorded in the ledger); the report states the last one as ``max_epsilon``.
    """
    history = [float(x) for x in (max_epsilon_history or (header.max_epsilon,))]
    aggregator = dict(header.aggregator)
    mechanism = aggregator.pop("mechanism")
    report = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "epsilon": spent.epsilon_data_independent,
        "delta": header.delta,
        "mechanism": mechanism,
        "parameters": aggregator,
        "queries_seen": spent.queries_seen,
        "queries_answered": spent.queries_answered,
        "queries_answered_by_teachers": spent.teacher_answered,
        "queries_rejected": spent.queries_seen - spent.queries_answered,
        "epsilon_data_independent": spent.epsilon_data_independent,
        "epsilon_data_dependent": spent.epsilon_data_dependent if include_private else None,
        # A smooth-sensitivity release of the data-dependent epsilon (PATE 2018, Appendix B) is not
        # offered for answers drawn with discrete noise: its sensitivity bounds are derived for the
        # continuous Gaussian's tail, not for the discrete tails our ledger uses.
        "epsilon_released": None,
        "order": spent.order_data_independent,
        "order_data_dependent": spent.order_data_dependent if include_private else None,
        "max_epsilon": history[-1],
        "max_epsilon_history": history,
        "stop_reason": stop_reason,
        "accountant": (
            f"Renyi DP over {header.orders} orders, {header.conversion} conversion to "
            "(epsilon, delta)"
        ),
        "orders": header.orders,
        "conversion": header.conversion,
        "noise": header.noise,
        "private": header.noise_private,
        "unit_of_privacy": header.unit_of_privacy,
        "num_teachers": header.num_teachers,
        "public_sha256": header.public_sha256,
        "run_id": header.run_id,
    }
    report["statement"] = privacy_statement(report)
    return report


# What "neighbouring" means for each unit of privacy the partition can support.
UNITS = {
    "individual": "any one individual (all records that share an individual id)",
    "record": "any one record (each record is its own individual in this dataset)",
    "individual-records": (
        "any change to one individual's records that keeps their number (the shards were balanced "
        "by record count, so adding or removing an individual is not covered)"
    ),
    "record-values": (
        "any change to one record's values (the shards were balanced by record count, so adding or "
        "removing a record is not covered)"
    ),
}


def privacy_statement(report: dict) -> str:
    """A plain-language statement of what the release guarantees, and its caveats."""
    unit = report.get("unit_of_privacy", "individual")
    who = UNITS.get(unit, UNITS["individual"])
    params = ", ".join(f"{k}={v:g}" for k, v in report["parameters"].items())
    lines = [
        f"This release was produced by PATE with {report['num_teachers']} teachers and the "
        f"{report['mechanism']} aggregator ({params}).",
        f"It satisfies ({report['epsilon']:.4g}, {report['delta']:g})-differential privacy with respect "
        f"to {who} of the private training data.",
        f"{report['queries_answered']} of {report['queries_seen']} public queries were answered; "
        f"epsilon is the data-independent bound ({report['accountant']}, optimal order "
        f"{report['order']:g}).",
        "The public data the student learned from is not protected; only the private data the "
        "teachers saw is.",
    ]
    if not report["private"]:
        lines.append(
            "WARNING: the noise was drawn from a fixed seed for an experiment; this release is NOT "
            "private and must not be published."
        )
    if report.get("epsilon_data_dependent") is not None:
        lines.append(
            f"Private-internal: the data-dependent epsilon is {report['epsilon_data_dependent']:.4g}; "
            "it depends on the private votes and must not be published without a "
            "smooth-sensitivity release."
        )
    return "\n".join(lines)


def write_report(path: str | os.PathLike, report: dict, *, private: bool = False) -> None:
    with atomic_file(Path(path), private=private) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


def majority_rate(labels: np.ndarray, num_classes: int) -> float:
    """The accuracy of always predicting the most common class: the baseline any model must beat.

    >>> majority_rate(np.array([0, 1, 1, 1]), 3)
    0.75
    """
    if len(labels) == 0:
        return 0.0
    return float(np.bincount(labels, minlength=num_classes).max() / len(labels))


#: Confidence level of the accuracy intervals, and significance level of the majority-rate test.
CONFIDENCE = 0.95
SIGNIFICANCE = 0.05


def accuracy_interval(correct: float, n: int, level: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) ``level`` interval of a binomial proportion: ``correct`` of ``n``
    test records right. A non-integral ``correct`` (a mean over teachers times ``n``) is rounded.

    >>> lo, hi = accuracy_interval(1062, 1350)
    >>> round(lo, 4), round(hi, 4)
    (0.7638, 0.8082)
    """
    from scipy.stats import beta

    k, n = int(round(correct)), int(n)
    if n <= 0:
        return (0.0, 1.0)
    tail = (1.0 - level) / 2.0
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - tail, k + 1, n - k))
    return (low, high)


def beats_rate_p_value(correct: float, n: int, rate: float) -> float:
    """One-sided exact binomial test of "accuracy > ``rate``": the probability of ``correct`` or more
    right answers of ``n`` if each were right with probability ``rate`` (the majority rate). The
    accuracy beats the rate *significantly* when this is below :data:`SIGNIFICANCE`.

    >>> beats_rate_p_value(1062, 1350, 0.7844) > 0.05  # 0.7867 vs 0.7844: inside the noise
    True
    >>> beats_rate_p_value(1120, 1350, 0.7844) < 0.05  # 0.8296 vs 0.7844
    True
    """
    from scipy.stats import binom

    k, n = int(round(correct)), int(n)
    if n <= 0:
        return 1.0
    return float(binom.sf(k - 1, n, min(max(rate, 0.0), 1.0)))


def beats_majority(accuracy: float, n: int, majority: float) -> bool:
    """Whether ``accuracy`` on ``n`` test records beats the ``majority`` rate significantly
    (:func:`beats_rate_p_value` below :data:`SIGNIFICANCE`)."""
    return beats_rate_p_value(accuracy * n, n, majority) < SIGNIFICANCE


def accuracy_text(accuracy: float, n: int) -> str:
    """``0.7867 (95% CI 0.764-0.808, n=1350)``: the accuracy with its exact 95% interval."""
    low, high = accuracy_interval(accuracy * n, n)
    return f"{accuracy:.4f} (95% CI {low:.3f}-{high:.3f}, n={n})"
