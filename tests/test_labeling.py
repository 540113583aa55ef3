"""The answering loop: budget stop on public quantities, resume without paying twice, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pate import accounting
from pate.aggregate import ConfidentGNMaxConfig, GNMaxConfig, InteractiveGNMaxConfig
from pate.errors import BudgetExhausted, PateError
from pate.labeling import (
    BudgetConfig,
    check_budget_covers_one,
    queries_that_fit,
    run_labeling,
    spent,
    worst_case_rdp,
)
from pate.noise import make_noise
from pate.records import RunHeader


def _votes(num_queries: int, num_teachers: int = 50, num_classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(num_classes, 0.3), size=num_queries)
    return np.stack([rng.multinomial(num_teachers, p) for p in probs])


def _header(**extra) -> RunHeader:
    values = {
        "run_id": "r",
        "teachers_sha256": "t",
        "public_sha256": "p",
        "votes_sha256": "v",
        "num_queries": 0,
        "num_classes": 4,
        "num_teachers": 50,
        "aggregator": {"mechanism": "gnmax", "sigma": 1.0},
        "delta": 1e-5,
        "max_epsilon": 1.0,
        "orders": "default",
        "conversion": "improved",
        "noise": "seeded(seed=7), NOT PRIVATE",
        "noise_private": False,
        "noise_seed": 7,
        "stages": None,
    }
    values.update(extra)
    return RunHeader(**values)


def _run(tmp_path, votes, config, budget, name="ledger.jsonl", **kwargs):
    header = _header(aggregator=config.to_dict(), num_queries=len(votes))
    return run_labeling(
        votes,
        config,
        budget,
        tmp_path / name,
        noise=make_noise(7),
        noise_seed=7,
        header=header,
        **kwargs,
    )


def test_queries_that_fit_matches_brute_force():
    budget = BudgetConfig(max_epsilon=2.0)
    orders = budget.order_values
    worst = worst_case_rdp(GNMaxConfig(20.0), orders)
    start = 37 * worst
    expected = 0
    for k in range(0, 500):
        eps, _ = accounting.epsilon_from_rdp(start + k * worst, orders, 1e-5)
        if eps <= 2.0:
            expected = k
    assert queries_that_fit(start, worst, budget, 500) == expected
    assert queries_that_fit(start, worst, budget, 3) == min(3, expected)


def test_gnmax_stop_is_independent_of_the_votes(tmp_path):
    """The number of answers before the stop depends on public quantities only."""
    budget = BudgetConfig(max_epsilon=1.0)
    counts = []
    for seed in range(3):
        outcome = _run(
            tmp_path, _votes(400, seed=seed), GNMaxConfig(15.0), budget, name=f"l{seed}.jsonl"
        )
        assert outcome.stop_reason == "budget"
        assert outcome.spent.epsilon_data_independent <= 1.0
        counts.append(outcome.spent.queries_answered)
    assert len(set(counts)) == 1
    # One more answer would have exceeded the budget.
    orders = budget.order_values
    eps, _ = accounting.epsilon_from_rdp(
        (counts[0] + 1) * accounting.rdp_gnmax_data_independent(15.0, orders), orders, 1e-5
    )
    assert eps > 1.0


def test_resume_equals_uninterrupted_run(tmp_path):
    votes = _votes(300, seed=4)
    config = ConfidentGNMaxConfig(threshold=30, sigma1=30, sigma2=12)
    full = _run(
        tmp_path, votes, config, BudgetConfig(max_epsilon=6.0), name="full.jsonl", batch_queries=16
    )
    # Interrupted after 5 batches, then resumed on the same ledger.
    header = _header(aggregator=config.to_dict(), num_queries=len(votes))

    class Stop(Exception):
        pass

    def stop_after_five(done, state):
        if done >= 80:
            raise Stop

    with pytest.raises(Stop):
        run_labeling(
            votes,
            config,
            BudgetConfig(max_epsilon=6.0),
            tmp_path / "part.jsonl",
            noise=make_noise(7),
            noise_seed=7,
            header=header,
            batch_queries=16,
            on_batch=stop_after_five,
        )
    resumed = _run(
        tmp_path, votes, config, BudgetConfig(max_epsilon=6.0), name="part.jsonl", batch_queries=16
    )
    assert full.spent.queries_seen > 120 and full.stop_reason == "budget"
    assert resumed.resumed_queries == 80
    assert resumed.entries == full.entries  # no label lost, none re-noised, none paid twice
    assert resumed.spent.epsilon_data_independent == full.spent.epsilon_data_independent
    assert resumed.spent.epsilon_data_dependent == full.spent.epsilon_data_dependent


def test_confident_gnmax_charges_realised_cost(tmp_path):
    votes = _votes(200, seed=5)
    config = ConfidentGNMaxConfig(threshold=10_000, sigma1=50, sigma2=50)  # answers nothing
    outcome = _run(tmp_path, votes, config, BudgetConfig(max_epsilon=3.0, max_queries=100))
    assert outcome.spent.queries_answered == 0 and outcome.spent.threshold_checked == 100
    orders = BudgetConfig().order_values
    expected = 100 * accounting.rdp_threshold_data_independent(50, orders)
    np.testing.assert_allclose(outcome.spent.rdp_data_independent, expected, rtol=1e-12)
    assert outcome.stop_reason == "max queries"


def test_data_dependent_never_exceeds_data_independent(tmp_path):
    outcome = _run(
        tmp_path, _votes(300, seed=6), ConfidentGNMaxConfig(25, 8, 6), BudgetConfig(max_epsilon=3.0)
    )
    assert np.all(outcome.spent.rdp_data_dependent <= outcome.spent.rdp_data_independent + 1e-12)
    assert outcome.spent.epsilon_data_dependent <= outcome.spent.epsilon_data_independent


def test_interactive_gnmax_uses_a_student_after_warmup(tmp_path):
    votes = _votes(120, seed=8)
    config = InteractiveGNMaxConfig(threshold=20, sigma1=30, sigma2=25, student_confidence=0.5)
    seen_entries = []

    def student_probs(entries):
        seen_entries.append(len(entries))
        probs = np.full(votes.shape, 0.05)
        probs[:, 0] = 1 - 0.05 * (votes.shape[1] - 1)  # a confident student that says class 0
        return probs

    outcome = _run(
        tmp_path,
        votes,
        config,
        BudgetConfig(max_epsilon=10.0),
        student_probs_fn=student_probs,
        warmup_queries=40,
        batch_queries=20,
    )
    assert seen_entries == [40]
    stage1 = [e for e in outcome.entries if e.stage == 1]
    assert stage1 and all(e.checked for e in stage1)
    student_answered = [e for e in stage1 if e.answered and not e.teacher]
    assert student_answered and all(e.label == 0 for e in student_answered)


def test_ledger_of_another_run_is_refused(tmp_path):
    votes = _votes(50)
    _run(tmp_path, votes, GNMaxConfig(20.0), BudgetConfig(max_epsilon=1.0, max_queries=10))
    with pytest.raises(PateError, match="ledger belongs to another run"):
        _run(tmp_path, votes, GNMaxConfig(25.0), BudgetConfig(max_epsilon=1.0))


def test_edited_ledger_is_refused(tmp_path):
    votes = _votes(100)
    _run(
        tmp_path,
        votes,
        GNMaxConfig(20.0),
        BudgetConfig(max_epsilon=4.0, max_queries=64),
        batch_queries=8,
    )
    path = tmp_path / "ledger.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[3])
    record["entries"][0]["teacher"] = False  # pretend a paid answer was free
    lines[3] = (json.dumps(record) + "\n").encode()
    path.write_bytes(b"".join(lines))
    with pytest.raises(PateError, match="record 3 at byte .* fails its SHA-256 digest"):
        _run(tmp_path, votes, GNMaxConfig(20.0), BudgetConfig(max_epsilon=4.0))


def test_budget_smaller_than_one_query_is_refused():
    with pytest.raises(BudgetExhausted, match="does not cover one query"):
        check_budget_covers_one(GNMaxConfig(5.0), BudgetConfig(max_epsilon=0.1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delta": 0.0}, "delta=0.0"),
        ({"delta": 1.5}, "delta=1.5"),
        ({"max_epsilon": -1.0}, "max_epsilon=-1.0"),
        ({"max_queries": 0}, "max_queries=0"),
    ],
)
def test_budget_config_validation(kwargs, message):
    with pytest.raises(PateError, match=message):
        BudgetConfig(**kwargs)


def test_spent_of_nothing_is_zero():
    state = spent([], GNMaxConfig(10.0), BudgetConfig())
    assert state.epsilon_data_independent == 0.0 and state.queries_seen == 0
