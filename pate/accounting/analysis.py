"""``analyze``: the PATE privacy analysis of a whole vote array, as the papers do it.

This is the library behind ``pate analyze``. It takes the (queries x classes) vote histograms of a run
and the aggregator's parameters and returns, for each delta, the data-independent and data-dependent
epsilon with their optimal orders, and on request the smooth-sensitivity release of the data-dependent
epsilon (PATE 2018) or the PATE 2017 moments accountant for LNMax. :func:`analyze_file` does the same
from the files ``pate analyze`` reads; :meth:`AnalysisReport.bounds` and :meth:`AnalysisReport.notes`
give the report's table and its plain-language notes (which name options in backquotes, as
`smooth_sensitivity`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pate.accounting._cores import (
    logpr_answered_core,
    logq_gaussian,
    logq_laplace,
    rdp_gaussian_sum,
    rdp_pure_eps_core,
    selection_votes,
    threshold_variance,
)
from pate.accounting._numerics import (
    check_delta,
    check_orders,
    check_positive,
    check_threshold,
    check_votes,
    log1mexp,
)
from pate.accounting.conversion import check_conversion, epsilon_from_rdp
from pate.accounting.files import read_array, read_votes
from pate.accounting.moments2017 import MomentsAnalysis2017, moments_analysis_2017
from pate.accounting.orders import resolve_orders
from pate.accounting.smooth_sensitivity import (
    SmoothSensitivityRelease,
    optimise_smooth_sensitivity,
)
from pate.errors import PateError

MECHANISMS = ("gnmax", "confident-gnmax", "lnmax")


@dataclass(frozen=True)
class EpsilonAtOrder:
    """An (epsilon, delta) guarantee and the Renyi order that gave it."""

    epsilon: float
    order: float

    def to_dict(self) -> dict:
        return {"epsilon": self.epsilon, "order": self.order}


@dataclass(frozen=True)
class RealisedCost:
    """Confident-GNMax's cost given which queries were actually answered (a DP guarantee as such)."""

    answered: int
    rdp_data_independent: np.ndarray
    rdp_data_dependent: np.ndarray
    data_independent: tuple[EpsilonAtOrder, ...]
    data_dependent: tuple[EpsilonAtOrder, ...]


@dataclass(frozen=True)
class AnalysisReport:
    """The result of :func:`analyze`; ``to_dict()`` gives the JSON of ``pate analyze --json``.

    ``rdp_data_independent`` and ``rdp_data_dependent`` are the composed RDP curves over ``orders``.
    For Confident-GNMax both are expectations over the threshold noise, as in PATE 2018's tables
    (threshold cost of every query + Pr[answered] x GNMax cost); ``realised`` holds the cost of the
    queries actually answered when that is known.
    """

    mechanism: str
    queries: int
    deltas: tuple[float, ...]
    several_deltas: bool
    orders: np.ndarray
    orders_name: str | None
    conversion: str
    parameters: dict
    rdp_data_independent: np.ndarray
    rdp_data_dependent: np.ndarray
    data_independent: tuple[EpsilonAtOrder, ...]
    data_dependent: tuple[EpsilonAtOrder, ...]
    expected_answered: float | None = None
    rdp_data_independent_all_answered: np.ndarray | None = None
    data_independent_all_answered: tuple[EpsilonAtOrder, ...] | None = None
    realised: RealisedCost | None = None
    smooth_sensitivity: tuple[SmoothSensitivityRelease, ...] | None = None
    moments_2017: tuple[MomentsAnalysis2017, ...] | None = None
    warnings: tuple[str, ...] = field(default=())
    #: A workspace's analysis: its vote file's rows (the public records), of which ``queries`` were
    #: charged in its ledger; None for a plain vote file.
    workspace_rows: int | None = None

    def _pick(self, values: Sequence) -> object:
        items = [v.to_dict() if hasattr(v, "to_dict") else v for v in values]
        return items if self.several_deltas else items[0]

    def to_dict(self) -> dict:
        out: dict = {
            "mechanism": self.mechanism,
            "queries": self.queries,
            "delta": list(self.deltas) if self.several_deltas else self.deltas[0],
            "orders": self.orders_name if self.orders_name else self.orders.tolist(),
            "conversion": self.conversion,
            "parameters": dict(self.parameters),
            "data_independent": self._pick(self.data_independent),
            "data_dependent": self._pick(self.data_dependent),
        }
        if self.expected_answered is not None:
            out["expected_answered"] = self.expected_answered
            out["basis"] = "expected over the threshold noise"
            out["data_independent_all_answered"] = self._pick(self.data_independent_all_answered)
        if self.realised is not None:
            out["realised"] = {
                "answered": self.realised.answered,
                "data_independent": self._pick(self.realised.data_independent),
                "data_dependent": self._pick(self.realised.data_dependent),
            }
        if self.smooth_sensitivity is not None:
            out["smooth_sensitivity"] = self._pick(self.smooth_sensitivity)
        if self.moments_2017 is not None:
            out["moments_2017"] = self._pick(self.moments_2017)
            if self.moments_2017[0].smoothed_sensitivity is not None:
                out["smooth_sensitivity"] = self._pick(
                    [_moments_release(m) for m in self.moments_2017]
                )
        if self.workspace_rows is not None:
            out["source"] = "workspace ledger: the queries it charged"
            out["votes_rows"] = self.workspace_rows
        out["warnings"] = list(self.warnings)
        return out

    def bounds(self) -> list[tuple[str, float, EpsilonAtOrder]]:
        """``(bound, delta, epsilon at order)`` for every bound and delta: the report's table."""
        rows = [("data-independent", self.data_independent)]
        if self.data_independent_all_answered is not None:
            rows.append(("data-independent, all answered", self.data_independent_all_answered))
        rows.append(("data-dependent", self.data_dependent))
        if self.realised is not None:
            rows.append(("realised data-independent", self.realised.data_independent))
            rows.append(("realised data-dependent", self.realised.data_dependent))
        return [
            (label, delta, result)
            for label, results in rows
            for delta, result in zip(self.deltas, results, strict=True)
        ]

    def notes(self) -> list[str]:
        """What the table does not say, in plain language: expectations, the PATE 2017 accountant,
        the smooth-sensitivity releases and what may be published (warnings apart)."""
        notes = []
        if self.expected_answered is not None:
            notes.append(
                f"Expected answered: {self.expected_answered:.2f} of {self.queries}. The first and "
                "data-dependent rows are expectations over the threshold noise (PATE 2018's "
                "convention)."
            )
            if self.realised is not None:
                notes.append(
                    f"Realised: {self.realised.answered} answered; the realised rows are exact."
                )
        for analysis in self.moments_2017 or ():
            notes.append(
                f"PATE 2017 moments accountant (gamma={analysis.gamma:g}) at "
                f"delta={analysis.delta:g}: epsilon {analysis.epsilon:.6g} (moment "
                f"{analysis.moment:g}); data-independent {analysis.data_independent_epsilon:.6g}"
            )
            if analysis.smoothed_sensitivity is not None:
                index = int(analysis.epsilon_per_moment.argmin())
                notes.append(
                    f"  smoothed sensitivity (beta={analysis.beta:g}): "
                    f"{analysis.smoothed_sensitivity[index]:.4g} at that moment"
                )
        if self.smooth_sensitivity is not None:
            for delta, release in zip(self.deltas, self.smooth_sensitivity, strict=True):
                notes.append(_release_note(delta, release))
        if self.smooth_sensitivity is None and self.mechanism != "lnmax":
            notes.append(
                "The data-dependent epsilon depends on the private votes: publish the "
                "data-independent one, or the data-dependent one through `smooth_sensitivity`."
            )
        return notes


def _release_note(delta: float, release: SmoothSensitivityRelease) -> str:
    if release.sensitivity == 0:
        return (
            f"Smooth sensitivity at delta={delta:g}: nothing to add, the data-dependent bound is "
            f"data-independent at order {release.order:g}."
        )
    return (
        f"Smooth-sensitivity release at delta={delta:g}, order {release.order:g}: "
        f"beta={release.beta:.4g}, SS={release.sensitivity:.4g}, noise sigma="
        f"{release.noise_sigma:.4g} (std {release.noise_std:.4g}); epsilon "
        f"{release.epsilon_before:.6g} -> {release.epsilon_with_release:.6g} with the release"
    )


def _moments_release(analysis: MomentsAnalysis2017) -> dict:
    data = analysis.to_dict()["smoothed_sensitivity"]
    return {
        "method": "pate2017",
        "moment": analysis.moment,
        "order": analysis.moment + 1,
        "beta": data["beta"],
        "sensitivity": data["at_moment"],
        "laplace_scale": data["laplace_scale"],
        "release_epsilon": data["release_epsilon"],
        "epsilon_before": analysis.epsilon,
    }


def _as_deltas(delta: float | Sequence[float]) -> tuple[tuple[float, ...], bool]:
    if isinstance(delta, str):
        raise PateError(f"Expected delta={delta!r} in (0, 1).")
    if np.ndim(delta) == 0:
        return (check_delta(delta),), False
    values = tuple(check_delta(d) for d in np.asarray(delta, dtype=object).ravel())
    if not values:
        raise PateError("delta is an empty list, expected at least one delta in (0, 1)")
    return values, True


def _resolve(orders: str | np.ndarray | Sequence[float]) -> tuple[np.ndarray, str | None]:
    if isinstance(orders, str):
        return resolve_orders(orders), orders
    return check_orders(resolve_orders(orders)), None


def _convert(
    rdp: np.ndarray, orders: np.ndarray, deltas: tuple[float, ...], conversion: str
) -> tuple[EpsilonAtOrder, ...]:
    return tuple(
        EpsilonAtOrder(*epsilon_from_rdp(rdp, orders, d, conversion=conversion)) for d in deltas
    )


def _edge_warnings(
    label: str, results: tuple[EpsilonAtOrder, ...], deltas: tuple[float, ...], orders: np.ndarray
) -> list[str]:
    warnings = []
    for result, delta in zip(results, deltas, strict=True):
        if result.order <= orders.min() or result.order >= orders.max():
            end = "smallest" if result.order <= orders.min() else "largest"
            warnings.append(
                f"{label} epsilon at delta={delta:g}: the optimal order {result.order:g} is the {end} "
                "order of the list; a better order may lie outside it"
            )
    return warnings


def _composed(values: np.ndarray, variance: float, orders: np.ndarray, weights: np.ndarray | None):
    """``sum_q w_q RDP(values_q)`` for the Gaussian bound, through the distinct values only."""
    unique, inverse = np.unique(values, return_inverse=True)
    per_unique = np.bincount(inverse, weights=weights, minlength=unique.size)
    return rdp_gaussian_sum(unique, variance, orders, per_unique)


def _composed_threshold(logpr: np.ndarray, sigma1: float, orders: np.ndarray) -> np.ndarray:
    unique, inverse = np.unique(logpr, return_inverse=True)
    counts = np.bincount(inverse, minlength=unique.size).astype(np.float64)
    logq = np.minimum(unique, log1mexp(unique))
    return rdp_gaussian_sum(logq, threshold_variance(sigma1), orders, counts)


def _check_answered(answered: np.ndarray, num_queries: int) -> np.ndarray:
    array = np.asarray(answered)
    if array.ndim != 1 or array.shape[0] != num_queries:
        raise PateError(
            f"answered: has shape {array.shape}, expected ({num_queries},) (one flag per query)"
        )
    if array.dtype.kind not in "biuf" or not np.all((array == 0) | (array == 1)):
        raise PateError("answered: holds values other than 0/1, expected one boolean per query")
    return array.astype(bool)


def _unused(mechanism: str, **options: object) -> None:
    for name, value in options.items():
        if value is not None:
            raise PateError(f"{name.replace('_', '-')} does not apply to mechanism {mechanism!r}")


def analyze(
    votes: np.ndarray,
    *,
    mechanism: str,
    sigma: float | None = None,
    threshold: float | None = None,
    sigma1: float | None = None,
    sigma2: float | None = None,
    scale: float | None = None,
    teachers: int | None = None,
    delta: float | Sequence[float] = 1e-5,
    orders: str | np.ndarray | Sequence[float] = "default",
    conversion: str = "improved",
    smooth_sensitivity: bool = False,
    answered: np.ndarray | None = None,
    baseline: np.ndarray | None = None,
) -> AnalysisReport:
    """Privacy analysis of answering every query of ``votes`` (Q, C) with ``mechanism``.

    Mechanisms and their parameters:

    * ``gnmax``: ``sigma`` (Gaussian noise on every count; PATE 2018).
    * ``confident-gnmax``: ``threshold``, ``sigma1`` (noise of the threshold check), ``sigma2`` (noise of
      the answer; ``sigma`` is accepted for it). ``baseline`` (Q, C) makes it Interactive-GNMax's
      threshold step on ``votes - baseline``. ``answered`` (Q,) booleans adds the realised cost.
    * ``lnmax``: ``scale`` (Laplace noise scale on every count); also reports the PATE 2017 moments
      accountant with gamma = 1/scale.

    ``teachers``: if given, every row must sum to it (it is also the number of teachers the smooth
    sensitivity needs; otherwise it is read off the rows). ``delta`` may be a list: every result is then
    a list in the same order. ``orders``: ``"paper"``, ``"default"`` or explicit orders > 1.
    ``conversion``: ``"classic"`` (the papers) or ``"improved"``. ``smooth_sensitivity``: also compute
    the release of the data-dependent epsilon (PATE 2018, Appendix B; 2017 smoothed sensitivity for
    LNMax).

    Guarantee: the data-independent epsilon is a DP guarantee as such. The data-dependent epsilon
    depends on the private votes: it may be published only through the smooth-sensitivity release
    (``epsilon_with_release``), or kept private.
    """
    if mechanism not in MECHANISMS:
        raise PateError(f"mechanism is {mechanism!r}, expected one of {', '.join(MECHANISMS)}")
    if teachers is not None:
        if isinstance(teachers, bool) or int(teachers) != teachers or teachers < 1:
            raise PateError(f"Expected teachers={teachers} to be a positive integer.")
        teachers = int(teachers)
    votes = check_votes(votes, teachers=teachers)
    deltas, several = _as_deltas(delta)
    orders_array, orders_name = _resolve(orders)
    conversion = check_conversion(conversion)
    num_queries = votes.shape[0]
    warnings: list[str] = []
    extras: dict = {}

    if mechanism == "gnmax":
        _unused(mechanism, threshold=threshold, sigma1=sigma1, scale=scale)
        _unused(mechanism, answered=answered, baseline=baseline)
        if sigma is None:
            sigma = sigma2
        if sigma is None:
            raise PateError("gnmax needs --sigma, expected the standard deviation of the noise")
        sigma = check_positive("sigma", sigma)
        parameters = {"sigma": sigma}
        rdp_independent = num_queries * orders_array / sigma**2
        rdp_dependent = _composed(logq_gaussian(votes, sigma), sigma**2, orders_array, None)
        answer_sigma, step1 = sigma, None
    elif mechanism == "confident-gnmax":
        _unused(mechanism, scale=scale)
        if sigma2 is None:
            sigma2 = sigma
        elif sigma is not None and sigma != sigma2:
            raise PateError(f"sigma={sigma} and sigma2={sigma2} differ, expected only --sigma2")
        if threshold is None or sigma1 is None or sigma2 is None:
            raise PateError("confident-gnmax needs --threshold, --sigma1 and --sigma2")
        threshold = check_threshold(threshold)
        sigma1 = check_positive("sigma1", sigma1)
        sigma2 = check_positive("sigma2", sigma2)
        parameters = {"threshold": threshold, "sigma1": sigma1, "sigma2": sigma2}
        selected = selection_votes(votes, baseline)
        logpr = logpr_answered_core(selected, threshold, sigma1)
        pr_answered = np.exp(logpr)
        expected = float(np.sum(pr_answered))
        step1_independent = orders_array / threshold_variance(sigma1)
        step2_independent = orders_array / sigma2**2
        step1 = _composed_threshold(logpr, sigma1, orders_array)
        logq = logq_gaussian(votes, sigma2)
        rdp_dependent = step1 + _composed(logq, sigma2**2, orders_array, pr_answered)
        rdp_independent = num_queries * step1_independent + expected * step2_independent
        all_answered = num_queries * (step1_independent + step2_independent)
        extras["expected_answered"] = expected
        extras["rdp_data_independent_all_answered"] = all_answered
        extras["data_independent_all_answered"] = _convert(
            all_answered, orders_array, deltas, conversion
        )
        if answered is not None:
            flags = _check_answered(answered, num_queries)
            count = int(flags.sum())
            real_dependent = step1 + _composed(
                logq, sigma2**2, orders_array, flags.astype(np.float64)
            )
            real_independent = num_queries * step1_independent + count * step2_independent
            real = RealisedCost(
                answered=count,
                rdp_data_independent=real_independent,
                rdp_data_dependent=real_dependent,
                data_independent=_convert(real_independent, orders_array, deltas, conversion),
                data_dependent=_convert(real_dependent, orders_array, deltas, conversion),
            )
            extras["realised"] = real
            warnings += _edge_warnings(
                "realised data-dependent", real.data_dependent, deltas, orders_array
            )
        answer_sigma = sigma2
    else:
        _unused(mechanism, sigma=sigma, threshold=threshold, sigma1=sigma1, sigma2=sigma2)
        _unused(mechanism, answered=answered, baseline=baseline)
        if scale is None:
            raise PateError("lnmax needs --scale, expected the scale of the Laplace noise")
        scale = check_positive("scale", scale)
        parameters = {"scale": scale}
        eps = 2.0 / scale
        rdp_independent = num_queries * np.minimum(0.5 * eps * eps * orders_array, eps)
        logq = logq_laplace(votes, scale)
        unique, inverse = np.unique(logq, return_inverse=True)
        rdp_dependent = np.bincount(inverse, minlength=unique.size) @ rdp_pure_eps_core(
            unique, eps, orders_array
        )
        extras["moments_2017"] = tuple(
            moments_analysis_2017(votes, 1.0 / scale, d, smooth_sensitivity=smooth_sensitivity)
            for d in deltas
        )
        for analysis in extras["moments_2017"]:
            if analysis.moment == analysis.moments[-1]:
                warnings.append(
                    f"PATE 2017 moments accountant at delta={analysis.delta:g}: the optimal moment "
                    f"{analysis.moment:g} is the largest computed; more moments may do better"
                )
        answer_sigma = None
    if teachers is not None:
        parameters["teachers"] = teachers

    data_independent = _convert(rdp_independent, orders_array, deltas, conversion)
    data_dependent = _convert(rdp_dependent, orders_array, deltas, conversion)
    warnings += _edge_warnings("data-independent", data_independent, deltas, orders_array)
    warnings += _edge_warnings("data-dependent", data_dependent, deltas, orders_array)

    if smooth_sensitivity and answer_sigma is not None:
        releases: dict[float, SmoothSensitivityRelease] = {}
        chosen = []
        for result, d in zip(data_dependent, deltas, strict=True):
            key = (result.order, d)
            if key not in releases:
                releases[key] = optimise_smooth_sensitivity(
                    votes,
                    sigma2=answer_sigma,
                    order=result.order,
                    delta=d,
                    threshold=threshold if mechanism == "confident-gnmax" else None,
                    sigma1=sigma1 if mechanism == "confident-gnmax" else None,
                    baseline=baseline,
                    num_teachers=teachers,
                    conversion=conversion,
                )
            release = releases[key]
            chosen.append(release)
            if not release.conditions_hold:
                warnings.append(
                    f"smooth sensitivity at order {release.order:g}: conditions C5/C6 of PATE 2018 "
                    f"(Section B.4.2) fail numerically for sigma={answer_sigma:g} and "
                    f"{votes.shape[1]} classes; the smooth-sensitivity bound is not proven there"
                )
        extras["smooth_sensitivity"] = tuple(chosen)

    return AnalysisReport(
        mechanism=mechanism,
        queries=num_queries,
        deltas=deltas,
        several_deltas=several,
        orders=orders_array,
        orders_name=orders_name,
        conversion=conversion,
        parameters=parameters,
        rdp_data_independent=rdp_independent,
        rdp_data_dependent=rdp_dependent,
        data_independent=data_independent,
        data_dependent=data_dependent,
        warnings=tuple(warnings),
        **extras,
    )


def analyze_file(
    votes: str | os.PathLike,
    *,
    mechanism: str | None = None,
    answered: str | os.PathLike | None = None,
    baseline: str | os.PathLike | None = None,
    teachers: int | None = None,
    **options,
) -> AnalysisReport:
    """:func:`analyze` of the vote histograms in the file ``votes`` (``.npy``, or HDF5 dataset
    ``votes``), with ``answered`` and ``baseline`` read from files too (datasets ``answered`` and
    ``baseline``); ``options`` are :func:`analyze`'s (None: its default). ``mechanism`` None is
    ``gnmax``. Errors about the votes name the file.

    A workspace (its folder, or the ``votes.h5`` beside its ``ledger.jsonl``) is analysed by
    :func:`analyze_workspace`: the queries its ledger charged, not every public row."""
    options = {name: value for name, value in options.items() if value is not None}
    if workspace_of(votes) is not None:
        if answered is not None or baseline is not None:
            raise PateError(
                f"{votes}: a workspace's `answered` queries are read from its ledger, expected no "
                "`answered` or `baseline` file"
            )
        return analyze_workspace(votes, mechanism=mechanism, teachers=teachers, **options)
    counts = check_votes(read_votes(votes), name=str(votes), teachers=teachers)
    return analyze(
        counts,
        mechanism=mechanism or "gnmax",
        teachers=teachers,
        answered=None if answered is None else read_array(answered, "answered"),
        baseline=None if baseline is None else read_array(baseline, "baseline"),
        **options,
    )


def workspace_of(path: str | os.PathLike) -> Path | None:
    """The workspace folder ``path`` names (the folder, or a file beside its ledger), or None."""
    from pate.labeling import LEDGER_FILE

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return folder if (folder / LEDGER_FILE).is_file() else None


def analyze_workspace(
    path: str | os.PathLike, *, mechanism: str | None = None, **options
) -> AnalysisReport:
    """:func:`analyze` of the queries a workspace's ledger charged (its votes file holds every public
    row; only those asked cost anything). For Confident-GNMax, the ledger's answered queries give the
    realised cost. ``mechanism`` None: the ledger's mechanism and parameters (each overridden by an
    option given); ``delta``, ``orders`` and ``conversion`` default to the ledger's too.
    Interactive-GNMax is refused: its threshold step needs the student's baseline at each query,
    which the workspace does not keep (``pate inspect`` shows its cost from the ledger)."""
    from pate.inspection import inspect_path, load_votes

    folder = workspace_of(path)
    if folder is None:
        raise PateError(f"{path}: not a workspace (no ledger beside it)")
    inspection = inspect_path(folder)
    header, entries = inspection.header, inspection.entries or []
    if inspection.votes_path is None:
        raise PateError(f"{folder}: no votes.h5, expected the workspace's vote histograms")
    counts = load_votes(inspection)
    recorded = dict(header.aggregator)
    recorded_mechanism = recorded.pop("mechanism")
    if recorded_mechanism == "interactive-gnmax":
        raise PateError(
            f"{folder}: an Interactive-GNMax workspace, expected GNMax, LNMax or Confident-GNMax "
            "(its threshold step needs the student's baseline at each query, which the workspace "
            "does not keep); `pate inspect` shows its cost from the ledger"
        )
    if mechanism is None or mechanism == recorded_mechanism:
        mechanism = recorded_mechanism
        options = {**recorded, **options}
    options.setdefault("delta", header.delta)
    options.setdefault("orders", header.orders)
    options.setdefault("conversion", header.conversion)
    # The queries the run paid for (a teacher answer, a threshold check or both); which of them were
    # answered is the run's own fact, so it counts only for the run's own mechanism.
    charged = [e for e in entries if e.teacher or e.checked]
    answered = None
    if mechanism == recorded_mechanism == "confident-gnmax":
        answered = np.array([e.teacher for e in charged], dtype=bool)
    if not charged:
        raise PateError(f"{folder}: its ledger charged no query yet, expected at least one")
    rows = counts[np.array([e.q for e in charged], dtype=np.int64)]
    report = analyze(
        check_votes(rows, name=str(inspection.votes_path)),
        mechanism=mechanism,
        answered=answered,
        **options,
    )
    return dataclasses.replace(report, workspace_rows=int(len(counts)))
