"""The ledger's typed records: exact round trips, and one-line refusals naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from pate.errors import PateError
from pate.records import LEDGER_KIND, QueryCharge, RunHeader

HEADER = RunHeader(
    run_id="ab" * 16,
    teachers_sha256="t",
    public_sha256="p",
    votes_sha256="v",
    num_queries=10,
    num_classes=3,
    num_teachers=5,
    aggregator={"mechanism": "gnmax", "sigma": 4.0},
    delta=1e-5,
    max_epsilon=2.0,
    orders="default",
    conversion="improved",
    noise="os-csprng",
    noise_private=True,
    noise_seed=None,
    stages=None,
)
CHARGE = QueryCharge(
    q=3, label=1, answered=True, teacher=True, checked=True, logq=-2.5, logq_check=-0.1
)


def test_round_trips_are_exact():
    assert RunHeader.from_dict(HEADER.to_dict()) == HEADER
    assert HEADER.kind == LEDGER_KIND
    assert QueryCharge.from_dict(CHARGE.to_dict()) == CHARGE
    rejected = QueryCharge(
        q=4, label=-1, answered=False, teacher=False, checked=True, logq=None, logq_check=-3.0
    )
    assert QueryCharge.from_dict(rejected.to_dict()) == rejected
    assert QueryCharge.from_dict({**CHARGE.to_dict(), "logq": float("-inf")}).logq == float("-inf")


def test_mismatch_names_the_first_differing_field():
    assert HEADER.mismatch(dataclasses.replace(HEADER, run_id="other", max_epsilon=9.0)) is None
    assert HEADER.mismatch(dataclasses.replace(HEADER, delta=1e-6)) == "delta"
    assert HEADER.mismatch(dataclasses.replace(HEADER, votes_sha256="w")) == "votes_sha256"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_queries": -1}, "field 'num_queries' is -1, expected an integer >= 0"),
        ({"delta": "small"}, "field 'delta' is 'small', expected a finite number"),
        ({"noise_private": 1}, "field 'noise_private' is 1, expected true or false"),
        ({"aggregator": {"sigma": 4}}, "field 'aggregator'"),
        ({"kind": "other"}, "field 'kind' is 'other', expected 'pate-ledger'"),
        ({"noise_seed": 1.5}, "field 'noise_seed' is 1.5, expected an integer or null"),
    ],
)
def test_a_damaged_header_is_refused_naming_the_field(change, message):
    with pytest.raises(PateError, match=message):
        RunHeader.from_dict({**HEADER.to_dict(), **change}, where="ledger.jsonl: header")


def test_a_header_with_missing_fields_or_of_another_type_is_refused():
    raw = HEADER.to_dict()
    del raw["votes_sha256"]
    with pytest.raises(PateError, match="missing field\\(s\\) votes_sha256"):
        RunHeader.from_dict(raw)
    with pytest.raises(PateError, match="is a list, expected a JSON object"):
        RunHeader.from_dict([1, 2])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"q": -1}, "field 'q' is -1"),
        ({"q": True}, "field 'q' is True"),
        ({"label": -2}, "field 'label' is -2"),
        ({"teacher": "yes"}, "field 'teacher' is 'yes', expected true or false"),
        ({"logq": 0.5}, "field 'logq' is 0.5, expected a log-probability <= 0 or null"),
        ({"logq": float("nan")}, "field 'logq' is nan"),
        ({"logq": None}, "field 'logq' is None, expected a bound, as teacher was paid"),
        ({"label": -1}, "field 'label' is -1, expected a class index"),
        ({"stage": 2}, "field 'stage' is 2, expected 0 or 1"),
    ],
)
def test_a_damaged_charge_is_refused_naming_the_field(change, message):
    with pytest.raises(PateError, match=message):
        QueryCharge.from_dict({**CHARGE.to_dict(), **change}, where="entry 7")
