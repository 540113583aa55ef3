"""Golden test of what people read: the privacy statement, word for word."""

from __future__ import annotations

import dataclasses

import numpy as np

from pate.labeling import Spent
from pate.records import RunHeader
from pate.report import privacy_report

HEADER = RunHeader(
    run_id="0123456789abcdef0123456789abcdef",
    teachers_sha256="t",
    public_sha256="p",
    votes_sha256="v",
    num_queries=640,
    num_classes=10,
    num_teachers=250,
    aggregator={
        "mechanism": "confident-gnmax",
        "threshold": 200.0,
        "sigma1": 150.0,
        "sigma2": 40.0,
    },
    delta=1e-5,
    max_epsilon=2.0,
    orders="default",
    conversion="improved",
    noise="os-csprng",
    noise_private=True,
    noise_seed=None,
    stages=None,
)
SPENT = Spent(
    rdp_data_independent=np.zeros(3),
    rdp_data_dependent=np.zeros(3),
    epsilon_data_independent=1.8765,
    order_data_independent=12.5,
    epsilon_data_dependent=0.91,
    order_data_dependent=30.0,
    queries_seen=640,
    queries_answered=286,
    teacher_answered=286,
    threshold_checked=640,
)


def test_public_statement_exact_text():
    report = privacy_report(header=HEADER, spent=SPENT, stop_reason="budget", include_private=False)
    assert report["statement"] == (
        "This release was produced by PATE with 250 teachers and the confident-gnmax aggregator "
        "(threshold=200, sigma1=150, sigma2=40).\n"
        "It satisfies (1.877, 1e-05)-differential privacy with respect to any one individual (all "
        "records that share an individual id) of the private training data.\n"
        "286 of 640 public queries were answered; epsilon is the data-independent bound (Renyi DP "
        "over default orders, improved conversion to (epsilon, delta), optimal order 12.5).\n"
        "The public data the student learned from is not protected; only the private data the "
        "teachers saw is."
    )
    assert report["epsilon_data_dependent"] is None and report["order_data_dependent"] is None
    assert report["queries_rejected"] == 354


def test_private_and_seeded_statements():
    header = dataclasses.replace(
        HEADER, noise="seeded(seed=3), NOT PRIVATE", noise_private=False, unit_of_privacy="record"
    )
    report = privacy_report(header=header, spent=SPENT, stop_reason="budget", include_private=True)
    lines = report["statement"].split("\n")
    assert (
        "with respect to any one record (each record is its own individual in this dataset)"
        in (lines[1])
    )
    assert lines[4] == (
        "WARNING: the noise was drawn from a fixed seed for an experiment; this release is NOT "
        "private and must not be published."
    )
    assert lines[5] == (
        "Private-internal: the data-dependent epsilon is 0.91; it depends on the private votes and "
        "must not be published without a smooth-sensitivity release."
    )
    assert report["private"] is False and report["epsilon_data_dependent"] == 0.91


def test_release_report_holds_no_private_fingerprint():
    report = privacy_report(header=HEADER, spent=SPENT, stop_reason="budget", include_private=False)
    assert report["run_id"] == HEADER.run_id and report["public_sha256"] == "p"
    assert "t" not in report.values() and "v" not in report.values()  # teachers', votes' hashes
    assert report["max_epsilon"] == 2.0 and report["max_epsilon_history"] == [2.0]
    raised = privacy_report(
        header=HEADER,
        spent=SPENT,
        stop_reason="budget",
        include_private=False,
        max_epsilon_history=(2.0, 3.5),
    )
    assert raised["max_epsilon"] == 3.5 and raised["max_epsilon_history"] == [2.0, 3.5]
