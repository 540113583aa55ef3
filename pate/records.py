"""Typed records of the privacy ledger: the run's header and one charge per query.

:mod:`pate.ledger` stores JSON objects and guards their order and integrity; this module says what
those objects mean. Both are frozen dataclasses with ``to_dict``/``from_dict``; ``from_dict`` validates
every field, so a damaged or foreign ledger is refused with one line naming the field, never read by
key somewhere downstream.

What the privacy proof needs from them:

* :class:`RunHeader` fixes everything the charges are computed from: the mechanism and its
  parameters, delta, the order list and conversion, and the noise mode. Its fingerprints of the
  teachers, the public data and the votes are **private** (they identify the private data) and tie a
  workspace to its inputs; ``run_id`` is fresh CSPRNG randomness and is the only link a release may
  carry to its workspace. ``selection`` is how the queries are chosen (``None``: public order;
  else the public parameters of :mod:`pate.distill.selection`), so a workspace is resumed only
  with the same choice.
* :class:`QueryCharge` records, per query, which mechanism steps were paid (``checked``: a threshold
  check, ``teacher``: a GNMax/LNMax answer) and their data-dependent bounds (``logq``, ``logq_check``:
  private). The data-independent epsilon depends only on how many steps of each kind were paid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from pate.errors import PateError

LEDGER_KIND = "pate-ledger"
LEDGER_VERSION = 1

__all__ = ["LEDGER_KIND", "LEDGER_VERSION", "QueryCharge", "RunHeader"]


def _field_error(where: str, name: str, value: Any, expected: str) -> PateError:
    return PateError(f"{where}: field {name!r} is {value!r}, expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunHeader:
    """The first record of a ledger: what the run is and how its charges are computed."""

    run_id: str
    teachers_sha256: str
    public_sha256: str
    votes_sha256: str
    num_queries: int
    num_classes: int
    num_teachers: int
    aggregator: dict[str, Any]
    delta: float
    max_epsilon: float
    orders: str
    conversion: str
    noise: str
    noise_private: bool
    noise_seed: int | None
    stages: dict[str, Any] | None
    unit_of_privacy: str = "individual"
    selection: dict[str, Any] | None = None
    kind: str = LEDGER_KIND
    version: int = LEDGER_VERSION

    # Fields that must agree when a workspace is resumed. The run id is the ledger's own; the budget
    # may change, but only explicitly (``raise_budget``) and recorded.
    MATCHING = (
        "kind",
        "teachers_sha256",
        "public_sha256",
        "votes_sha256",
        "aggregator",
        "delta",
        "orders",
        "conversion",
        "noise_seed",
        "num_queries",
        "stages",
        "selection",
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, where: str = "ledger header") -> RunHeader:
        """Validate and build; refuses with one line naming the field."""
        if not isinstance(raw, Mapping):
            raise PateError(f"{where}: is a {type(raw).__name__}, expected a JSON object")
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names if n not in raw and n not in _HEADER_DEFAULTS)
        if missing:
            raise PateError(
                f"{where}: missing field(s) {', '.join(missing)}, expected a run header"
            )
        values = {n: raw.get(n, _HEADER_DEFAULTS.get(n)) for n in names}
        for name in ("run_id", "teachers_sha256", "public_sha256", "votes_sha256", "orders"):
            if not isinstance(values[name], str):
                raise _field_error(where, name, values[name], "a string")
        for name in ("conversion", "noise", "unit_of_privacy", "kind"):
            if not isinstance(values[name], str):
                raise _field_error(where, name, values[name], "a string")
        for name in ("num_queries", "num_classes", "num_teachers", "version"):
            if not _is_int(values[name]) or values[name] < 0:
                raise _field_error(where, name, values[name], "an integer >= 0")
        for name in ("delta", "max_epsilon"):
            if not _is_number(values[name]) or not math.isfinite(values[name]):
                raise _field_error(where, name, values[name], "a finite number")
        if not isinstance(values["noise_private"], bool):
            raise _field_error(where, "noise_private", values["noise_private"], "true or false")
        if values["noise_seed"] is not None and not _is_int(values["noise_seed"]):
            raise _field_error(where, "noise_seed", values["noise_seed"], "an integer or null")
        if not isinstance(values["aggregator"], Mapping) or "mechanism" not in values["aggregator"]:
            raise _field_error(where, "aggregator", values["aggregator"], "{mechanism, ...}")
        if values["stages"] is not None and not isinstance(values["stages"], Mapping):
            raise _field_error(where, "stages", values["stages"], "an object or null")
        if values["selection"] is not None and not isinstance(values["selection"], Mapping):
            raise _field_error(where, "selection", values["selection"], "an object or null")
        if values["kind"] != LEDGER_KIND:
            raise _field_error(where, "kind", values["kind"], repr(LEDGER_KIND))
        values["aggregator"] = dict(values["aggregator"])
        values["delta"] = float(values["delta"])
        values["max_epsilon"] = float(values["max_epsilon"])
        return cls(**values)

    def mismatch(self, other: RunHeader) -> str | None:
        """The first field of :attr:`MATCHING` on which ``other`` differs, or ``None``."""
        for name in self.MATCHING:
            if getattr(self, name) != getattr(other, name):
                return name
        return None


_HEADER_DEFAULTS: dict[str, Any] = {
    "unit_of_privacy": "individual",
    "selection": None,
    "kind": LEDGER_KIND,
    "version": LEDGER_VERSION,
}


@dataclass(frozen=True)
class QueryCharge:
    """What one query cost and released.

    Attributes:
        q: the public query index.
        label: the released label, ``-1`` when the query was not answered.
        answered: a label was released (by the teachers, or by the student in Interactive-GNMax).
        teacher: the GNMax/LNMax step was paid (the teachers answered).
        checked: a threshold check was paid (Confident-/Interactive-GNMax).
        logq: ln q bound of the teachers' answer (private), ``None`` when not paid.
        logq_check: ln q bound of the threshold check (private), ``None`` when not paid.
        stage: Interactive-GNMax stage: 0 for the Confident-GNMax warm-up, 1 after; 0 otherwise.
    """

    q: int
    label: int
    answered: bool
    teacher: bool
    checked: bool
    logq: float | None
    logq_check: float | None
    stage: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, where: str = "ledger entry") -> QueryCharge:
        """Validate and build; refuses with one line naming the field."""
        if not isinstance(raw, Mapping):
            raise PateError(f"{where}: is a {type(raw).__name__}, expected a JSON object")
        missing = [f.name for f in fields(cls) if f.name not in raw and f.name != "stage"]
        if missing:
            raise PateError(f"{where}: missing field(s) {', '.join(missing)}, expected a charge")
        q, label, stage = raw["q"], raw["label"], raw.get("stage", 0)
        if not _is_int(q) or q < 0:
            raise _field_error(where, "q", q, "an integer >= 0")
        if not _is_int(label) or label < -1:
            raise _field_error(where, "label", label, "an integer >= -1")
        if stage not in (0, 1):
            raise _field_error(where, "stage", stage, "0 or 1")
        flags = {}
        for name in ("answered", "teacher", "checked"):
            if not isinstance(raw[name], bool):
                raise _field_error(where, name, raw[name], "true or false")
            flags[name] = raw[name]
        bounds = {}
        for name in ("logq", "logq_check"):
            value = raw[name]
            if value is not None and not (_is_number(value) and value <= 0.0):
                raise _field_error(where, name, value, "a log-probability <= 0 or null")
            bounds[name] = None if value is None else float(value)
        for name, bound in (("teacher", "logq"), ("checked", "logq_check")):
            if flags[name] and bounds[bound] is None:
                raise _field_error(where, bound, None, f"a bound, as {name} was paid")
        if flags["answered"] and label < 0:
            raise _field_error(where, "label", label, "a class index, as the query was answered")
        return cls(q=q, label=label, stage=stage, **flags, **bounds)
