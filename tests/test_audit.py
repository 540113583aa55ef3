"""``pate.audit`` and ``pate audit``: the statistics, the correct aggregators passing, and a
deliberately broken aggregator (noise scaled down while the accountant is told the full noise) caught.

The audits here are small (20 teachers, 3 classes, noise of a few votes) so that each runs in about a
second; the audit's own noise is seeded, so every figure is reproducible.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats
from scipy.special import logsumexp as special_logsumexp

from cli.main import app
from pate import audit as audit_module
from pate.aggregate import (
    AggregateResult,
    ConfidentGNMaxConfig,
    GNMaxConfig,
    InteractiveGNMaxConfig,
    LNMaxConfig,
    aggregate,
)
from pate.audit import (
    AUDIT_FAILED_EXIT,
    AuditConfig,
    accountant_epsilon,
    audit,
    clopper_pearson,
    epsilon_lower_bound,
    epsilon_lower_bound_composed,
    neighbour_pairs,
    plan,
    planned_probabilities,
)
from pate.errors import PateError
from pate.labeling import LEDGER_FILE, BudgetConfig, run_labeling
from pate.noise import SeededNoise, make_noise
from pate.records import RunHeader
from pate.report import privacy_report, write_report

SMALL = {"num_teachers": 20, "num_classes": 3, "trials": 10_000}
CORRECT = [
    GNMaxConfig(4.0),
    LNMaxConfig(2.0),
    ConfidentGNMaxConfig(16.0, 6.0, 4.0),
    InteractiveGNMaxConfig(10.0, 6.0, 4.0, 0.9),  # max_j (n_j - 20/3) + Z >= 10
]


def small(aggregator, **extra) -> AuditConfig:
    return AuditConfig(aggregator, **{**SMALL, "queries": 100, "confidence": 0.99, **extra})


def scaled_down(config, factor: float = 4.0):
    """A broken aggregator: the noise divided by ``factor``, while the audit claims ``config``."""
    if isinstance(config, GNMaxConfig):
        broken = GNMaxConfig(config.sigma / factor)
    elif isinstance(config, LNMaxConfig):
        broken = LNMaxConfig(config.scale / factor)
    else:
        broken = ConfidentGNMaxConfig(
            config.threshold, config.sigma1 / factor, config.sigma2 / factor
        )
    return lambda votes, noise: aggregate(votes, broken, noise)


# ----------------------------------------------------------------------------------------------------
# Statistics


@pytest.mark.parametrize(("hits", "trials"), [(0, 50), (1, 50), (17, 100), (99, 100), (100, 100)])
def test_clopper_pearson_is_the_exact_binomial_interval(hits, trials):
    low, high = clopper_pearson(hits, trials, 0.025)
    exact = stats.binomtest(hits, trials).proportion_ci(confidence_level=0.95, method="exact")
    assert low == pytest.approx(exact.low, abs=1e-12)
    assert high == pytest.approx(exact.high, abs=1e-12)
    assert (low == 0.0) == (hits == 0) and (high == 1.0) == (hits == trials)


def test_clopper_pearson_covers_at_its_level():
    """Over many binomial draws, each one-sided bound misses at most about alpha of the time."""
    rng = np.random.default_rng(0)
    p, trials, alpha = 0.3, 200, 0.05
    hits = rng.binomial(trials, p, size=2000)
    bounds = np.array([clopper_pearson(int(k), trials, alpha) for k in hits])
    assert np.mean(bounds[:, 0] > p) <= alpha
    assert np.mean(bounds[:, 1] < p) <= alpha


def test_epsilon_lower_bound_values():
    assert epsilon_lower_bound(0.5, 0.25, 0.0) == pytest.approx(math.log(2))
    assert epsilon_lower_bound(0.5, 0.25, 0.1) == pytest.approx(math.log(0.4 / 0.25))
    assert epsilon_lower_bound(0.2, 0.5, 0.0) == 0.0  # never negative
    assert epsilon_lower_bound(1e-6, 1e-9, 1e-5) == 0.0  # p below delta says nothing


def test_composed_bound_is_the_one_query_bound_for_one_query_and_grows_with_k():
    assert epsilon_lower_bound_composed(0.6, 0.4, 1e-5, 1) == pytest.approx(
        epsilon_lower_bound(0.6, 0.4, 1e-5)
    )
    values = [epsilon_lower_bound_composed(0.52, 0.48, 1e-5, k) for k in (1, 10, 100, 1000)]
    assert values == sorted(values) and values[-1] > 10 * values[0]
    assert epsilon_lower_bound_composed(0.4, 0.6, 1e-5, 100) == 0.0


def _exact_epsilon_of_randomized_response(p: float, q: float, k: int, delta: float) -> float:
    """The exact epsilon at delta of k-fold Bernoulli(p) vs Bernoulli(q): the privacy profile
    ``delta(eps) = sum_j max(0, P(j) - e^eps Q(j))`` over the count j, inverted by bisection."""
    j = np.arange(k + 1)
    log_p, log_q = stats.binom.logpmf(j, k, p), stats.binom.logpmf(j, k, q)

    def delta_at(eps):
        return float(np.sum(np.maximum(0.0, np.exp(log_p) - np.exp(eps + log_q))))

    low, high = 0.0, 50.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if delta_at(middle) > delta else (low, middle)
    return high


@pytest.mark.parametrize(("p", "q", "k"), [(0.55, 0.45, 1), (0.55, 0.45, 50), (0.51, 0.5, 2000)])
def test_composed_bound_never_exceeds_the_exact_epsilon(p, q, k):
    """Given the true probabilities, the bound is at most the true epsilon of the k-fold product."""
    bound = epsilon_lower_bound_composed(p, q, 1e-5, k)
    exact = _exact_epsilon_of_randomized_response(p, q, k, 1e-5)
    assert 0.5 * exact < bound <= exact + 1e-9


def test_accountant_epsilon_is_the_worst_case_composition():
    config = small(ConfidentGNMaxConfig(16.0, 6.0, 4.0))
    one, many = accountant_epsilon(config, 1), accountant_epsilon(config, 100)
    assert 0 < one < many
    config_gn = small(GNMaxConfig(6.0))
    assert accountant_epsilon(config_gn, 1) < accountant_epsilon(small(GNMaxConfig(4.0)), 1)


# ----------------------------------------------------------------------------------------------------
# Pairs and configuration


def test_neighbour_pairs_start_at_the_tie_and_stay_in_range():
    for aggregator in CORRECT:
        xs = neighbour_pairs(small(aggregator))
        assert xs[0] == 10 and all(10 <= x <= 19 for x in xs) and len(set(xs)) == len(xs)
    confident = neighbour_pairs(
        AuditConfig(ConfidentGNMaxConfig(200.0, 150.0, 40.0), num_teachers=250)
    )
    assert 200 in confident and 249 in confident


@pytest.mark.parametrize(
    "aggregator", [*CORRECT, InteractiveGNMaxConfig(10.0, 6.0, 4.0, 0.2)], ids=str
)
def test_the_plan_is_the_real_aggregators_distribution(aggregator):
    """The plan's exact category probabilities agree with the real aggregator's frequencies."""
    config = small(aggregator)
    mechanism = audit_module._default_mechanism(config)
    trials = 40_000
    for x in (10, 13, 17):
        votes = audit_module._histogram(config, x)
        model = planned_probabilities(config, votes)
        assert model.sum() == pytest.approx(1.0) and (model >= 0).all()
        seen = audit_module._category_counts(mechanism, votes, trials, SeededNoise(x)) / trials
        error = np.sqrt(model * (1 - model) / trials) + 1e-9
        assert np.all(np.abs(seen - model) <= 4.5 * error), (x, model, seen)


def test_the_plan_matches_a_direct_computation():
    """Two classes, GNMax: Pr[label 0] = Pr[Z1 - Z0 <= n0 - n1], by a direct double sum."""
    config = AuditConfig(GNMaxConfig(3.0), num_teachers=10)
    z = np.arange(-60, 61)
    pmf = np.exp(-(z**2) / 18.0)
    pmf /= pmf.sum()
    difference = z[:, None] - z[None, :]  # Z1 - Z0
    joint = pmf[:, None] * pmf[None, :]
    for x in (5, 7, 9):
        model = planned_probabilities(config, np.array([x, 10 - x]))
        assert model[1] == pytest.approx(joint[difference <= 2 * x - 10].sum(), rel=1e-12)
        assert model[0] == 0.0 and model[3] == pytest.approx(0.0, abs=1e-12)


def test_the_plan_prefers_the_tie_for_many_queries_and_a_gap_for_one():
    config = AuditConfig(GNMaxConfig(60.0), num_teachers=250, num_classes=6, trials=1_000_000)
    numerator, denominator, _, expected = plan(config, 807)
    assert {numerator, denominator} == {125, 126} and expected > 1.0
    numerator, denominator, _, expected = plan(config, 1)
    assert min(numerator, denominator) > 130 and 0.01 < expected < 0.079


CEILING_CASES = [
    GNMaxConfig(0.5),
    GNMaxConfig(3.0),
    GNMaxConfig(10.0),
    LNMaxConfig(0.5),
    LNMaxConfig(8.0),
    ConfidentGNMaxConfig(15.0, 2.0, 1.0),
    ConfidentGNMaxConfig(30.0, 10.0, 3.0),
    InteractiveGNMaxConfig(10.0, 3.0, 2.0, 0.9),
    InteractiveGNMaxConfig(10.0, 3.0, 2.0, 0.2),
]


@pytest.mark.parametrize("aggregator", CEILING_CASES, ids=str)
@pytest.mark.parametrize("classes", [2, 4])
def test_the_exact_statistic_never_exceeds_the_accountant(aggregator, classes):
    """With the claimed aggregator's exact probabilities (no sampling), the audit's statistic is a
    true lower bound on its epsilon, so it must stay below the accountant's: a deterministic audit of
    the accountant over many settings. It comes within 10% for one GNMax or LNMax query."""
    config = AuditConfig(aggregator, num_teachers=30, num_classes=classes)
    for queries in (1, 50):
        assert 0.0 < audit_module.ceiling(config, queries) <= accountant_epsilon(config, queries)
    if isinstance(aggregator, (GNMaxConfig, LNMaxConfig)) and aggregator != GNMaxConfig(10.0):
        assert audit_module.ceiling(config, 1) > 0.8 * accountant_epsilon(config, 1)


def test_an_accountant_that_undercharges_is_caught(monkeypatch):
    """The audit also holds the accountant to account: GNMax charged half its RDP fails, by the exact
    check alone (sigma 4) and by the measured bound too (sigma 2, 40,000 trials)."""
    honest = audit_module.worst_case_rdp
    monkeypatch.setattr(audit_module, "worst_case_rdp", lambda c, orders: honest(c, orders) / 2)
    result = audit(small(GNMaxConfig(4.0)))
    assert not result.passed and result.composed.measured_passed
    assert not result.composed.exact_passed
    assert "the accountant undercharges" in result.failure_message()
    result = audit(small(GNMaxConfig(2.0), trials=40_000))
    assert not result.composed.measured_passed


def test_the_ceiling_is_at_least_the_plan():
    config = small(GNMaxConfig(4.0))
    for queries in (1, 100):
        assert audit_module.ceiling(config, queries) >= plan(config, queries)[3]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_teachers", 1),
        ("num_classes", 1),
        ("trials", 10),
        ("queries", 0),
        ("confidence", 1.0),
        ("delta", 0.0),
        ("seed", -1),
        ("orders", "mine"),
        ("conversion", "exact"),
        ("trials", True),
        ("plan_noise_factors", ()),
        ("plan_noise_factors", (1.0, 2.0)),
        ("plan_noise_factors", [1.0]),
    ],
)
def test_config_refuses_bad_values(field, value):
    with pytest.raises(PateError, match=field):
        AuditConfig(GNMaxConfig(4.0), **{**SMALL, field: value})


@pytest.mark.parametrize(
    ("aggregator", "field"),
    [
        (GNMaxConfig(1e-300), "sigma"),
        (GNMaxConfig(1e300), "sigma"),
        (GNMaxConfig(0.09), "sigma"),
        (LNMaxConfig(2e4), "scale"),
        (ConfidentGNMaxConfig(16.0, 0.05, 4.0), "sigma1"),
        (InteractiveGNMaxConfig(10.0, 6.0, 1e300, 0.9), "sigma2"),
    ],
)
def test_config_refuses_noise_outside_the_range_it_can_compute(aggregator, field):
    with pytest.raises(PateError, match=f"^`{field}` .*: the audit takes noise scales from 0.1 to"):
        AuditConfig(aggregator, **SMALL)
    AuditConfig(GNMaxConfig(0.1), **SMALL), AuditConfig(LNMaxConfig(1e4), **SMALL)  # the ends


def test_config_refuses_more_classes_than_it_can_run_saying_why():
    with pytest.raises(PateError, match="^`num_classes` 100000000: the audit takes at most 1000 "):
        AuditConfig(GNMaxConfig(4.0), **{**SMALL, "num_classes": 100_000_000})
    AuditConfig(GNMaxConfig(4.0), **{**SMALL, "num_classes": 1000})


def test_many_classes_cost_the_plan_no_memory_per_class():
    """The empty classes of a pair are one factor of the plan (it made one array per class): the
    probabilities are those of the explicit product (checked on 5 classes), and 1000 classes plan."""
    config = AuditConfig(GNMaxConfig(4.0), **{**SMALL, "num_classes": 5})
    votes = np.array([12, 8, 0, 0, 0])
    z, pmf = audit_module._pmf("gaussian", 4.0)
    cdf = np.cumsum(pmf)
    below = lambda v: np.where(v - z[0] < 0, 0.0, cdf[np.clip(v - z[0], 0, z.size - 1)])  # noqa: E731
    p0 = np.sum(pmf * below(12 + z - 8) * below(12 + z) ** 3)
    assert planned_probabilities(config, votes)[1] == pytest.approx(p0, rel=1e-12)
    wide = AuditConfig(GNMaxConfig(4.0), **{**SMALL, "num_classes": 1000})
    probabilities = planned_probabilities(wide, audit_module._histogram(wide, 12))
    three = planned_probabilities(config, np.array([12, 8, 0]))
    assert probabilities.sum() == pytest.approx(1.0) and probabilities[3] > 10 * three[3] > 0


@pytest.mark.parametrize(("k", "p"), [(100_000, 0.43), (1000, 0.01), (50, 0.3)])
def test_log_binomial_tail_is_finite_and_exact_where_scipys_underflows(k, p):
    t = np.unique(np.linspace(1, k, 200).round().astype(np.int64))
    j = np.arange(k + 1)
    log_pmf = stats.binom.logpmf(j, k, p)
    reference = np.array([special_logsumexp(log_pmf[i:]) for i in t])
    found = audit_module.log_binomial_sf(t, k, p)
    assert np.all(np.isfinite(found))
    np.testing.assert_allclose(found, reference, rtol=1e-9, atol=1e-9)
    with np.errstate(divide="ignore"):
        assert k < 100_000 or not np.all(np.isfinite(stats.binom.logsf(t - 1, k, p)))


def test_a_correct_aggregator_over_many_queries_passes_with_a_finite_ceiling():
    """`pate audit --mechanism gnmax --teachers 10 --sigma 10 --queries 100000` said FAIL ("the
    accountant undercharges") with a ceiling of inf: a binomial tail below 1e-308 had underflowed."""
    config = AuditConfig(GNMaxConfig(10.0), num_teachers=10, queries=100_000, trials=20_000)
    result = audit(config)
    assert result.passed, result.failure_message()
    assert 0 < result.composed.ceiling <= result.composed.epsilon_upper < math.inf


def test_a_mechanism_with_impossible_labels_is_refused():
    def nonsense(votes, noise):
        labels = np.full(votes.shape[0], 7, dtype=np.int64)
        every = np.ones(votes.shape[0], dtype=bool)
        return AggregateResult(labels, every, every, ~every)

    with pytest.raises(PateError, match="labels"):
        audit(small(GNMaxConfig(4.0)), mechanism=nonsense)


# ----------------------------------------------------------------------------------------------------
# The audit


@pytest.mark.parametrize("aggregator", CORRECT, ids=lambda c: c.mechanism)
def test_correct_aggregators_pass_and_the_audit_has_power(aggregator):
    result = audit(small(aggregator))
    assert result.passed and result.verdict == "PASS" and result.failure_message() == ""
    for bound in (result.per_query, result.composed):
        assert 0.0 < bound.epsilon_lower <= bound.epsilon_upper
        assert 0.0 < bound.ratio <= 1.0
        # The pair is a pair of neighbours: one vote moved between the two top classes.
        difference = np.subtract(bound.neighbour, bound.histogram)
        assert sorted(difference.tolist()) == [-1] + [0] * (len(difference) - 2) + [1]
    assert result.composed.ratio > 0.1  # far from vacuous on these small settings
    runs, trials = result.mechanism_runs, result.config.trials
    assert runs % trials == 0 and 2 <= runs // trials <= 8  # at most 4 planned pairs
    assert bound.planned > 0


def test_correct_gnmax_passes_for_every_seed():
    for seed in range(4):
        result = audit(small(GNMaxConfig(4.0), seed=seed, trials=5_000))
        assert result.passed, result.failure_message()


@pytest.mark.parametrize("aggregator", CORRECT[:3], ids=lambda c: c.mechanism)
def test_a_broken_aggregator_fails_loudly(aggregator):
    """Noise scaled down by 4 behind the claim of the full noise: a bound exceeds its claim."""
    result = audit(small(aggregator), mechanism=scaled_down(aggregator))
    assert not result.passed and result.verdict == "FAIL"
    failed = [b for b in (result.per_query, result.composed) if not b.passed]
    assert failed and all(b.epsilon_lower > b.epsilon_upper and b.ratio > 1.0 for b in failed)
    message = result.failure_message()
    assert message.startswith(f"audit FAILED for {aggregator.mechanism}") and "\n" not in message
    assert all(f"lower bound {b.epsilon_lower:.4g} > claimed" in message for b in failed)


def test_the_scaled_down_plan_finds_a_bug_that_leaks_away_from_the_claims_best_pair():
    """Confident-GNMax with both noises / 4 hardly answers at the tie the claim's plan picks; the plan
    for noise x 0.25 looks near the threshold and catches it."""
    aggregator = ConfidentGNMaxConfig(16.0, 6.0, 4.0)
    claim_only = audit(
        small(aggregator, plan_noise_factors=(1.0,)), mechanism=scaled_down(aggregator)
    )
    assert claim_only.passed
    default = audit(small(aggregator), mechanism=scaled_down(aggregator))
    assert not default.passed and default.composed.plan_noise_factor == 0.25


def test_noise_scaled_down_by_half_is_caught_too():
    result = audit(small(GNMaxConfig(4.0)), mechanism=scaled_down(GNMaxConfig(4.0), 2.0))
    assert not result.passed


def test_the_audit_is_reproducible_and_reports_its_choices():
    first = audit(small(GNMaxConfig(4.0)))
    again = audit(small(GNMaxConfig(4.0)))
    assert first.to_dict() == again.to_dict()
    payload = json.loads(json.dumps(first.to_dict()))
    assert payload["verdict"] == "PASS" and payload["parameters"] == {"sigma": 4.0}
    assert payload["per_query"]["queries"] == 1 and payload["composed"]["queries"] == 100
    assert payload["noise"].startswith("seeded(seed=0)")


# ----------------------------------------------------------------------------------------------------
# The command


def run(*args):
    return CliRunner().invoke(app, ["audit", *[str(a) for a in args]])


SMALL_ARGS = ("--teachers", 20, "--classes", 3, "--trials", 10_000)


def test_cli_passes_a_correct_aggregator():
    result = run("--mechanism", "gnmax", "--sigma", 4, *SMALL_ARGS, "--queries", 100)
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.output and "100 queries" in result.output
    result = run("--mechanism", "confident-gnmax", "--threshold", 16, "--sigma1", 6, "--sigma2", 4,
                 *SMALL_ARGS, "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["mechanism"] == "confident-gnmax" and payload["composed"]["queries"] == 1000
    assert payload["per_query"]["epsilon_lower"] <= payload["per_query"]["epsilon_upper"]


def test_cli_exits_5_with_one_line_when_the_aggregator_is_broken(monkeypatch):
    monkeypatch.setattr(
        audit_module, "_default_mechanism", lambda config: scaled_down(config.aggregator)
    )
    result = run("--mechanism", "gnmax", "--sigma", 4, *SMALL_ARGS, "--queries", 100)
    assert result.exit_code == AUDIT_FAILED_EXIT == 5
    assert "verdict: FAIL" in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: audit FAILED for gnmax")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--sigma", "1e-300"), "error: --sigma 1e-300: the audit takes noise scales from 0.1 to"),
        (("--sigma", "1e300"), "error: --sigma 1e+300: the audit takes noise scales from 0.1 to"),
        (("--classes", "100000000"), "error: --classes 100000000: the audit takes at most 1000"),
    ],
)
def test_cli_refuses_parameters_it_cannot_compute_in_one_line(args, message):
    result = run("--mechanism", "gnmax", "--teachers", 10, *args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(message) and len(result.output.strip().splitlines()) == 1


def test_cli_refuses_ambiguous_sources():
    assert run(*SMALL_ARGS).exit_code == 2  # no source
    assert run("--mechanism", "gnmax").exit_code == 2  # no --teachers
    assert run("--mechanism", "gnmax", "--release", "x", *SMALL_ARGS).exit_code == 2


def _header(**extra) -> RunHeader:
    values = {
        "run_id": "r",
        "teachers_sha256": "t",
        "public_sha256": "p",
        "votes_sha256": "v",
        "num_queries": 40,
        "num_classes": 3,
        "num_teachers": 20,
        "aggregator": {"mechanism": "gnmax", "sigma": 4.0},
        "delta": 1e-6,
        "max_epsilon": 20.0,
        "orders": "default",
        "conversion": "improved",
        "noise": "seeded(seed=7), NOT PRIVATE",
        "noise_private": False,
        "noise_seed": 7,
        "stages": None,
    }
    return RunHeader(**{**values, **extra})


@pytest.fixture
def run_dirs(tmp_path):
    """A workspace (ledger of 40 GNMax answers) and its release (privacy.json)."""
    workspace, release = tmp_path / "workspace", tmp_path / "release"
    workspace.mkdir()
    release.mkdir()
    votes = np.tile(np.array([[12, 6, 2]], dtype=np.int64), (40, 1))
    header = _header()
    outcome = run_labeling(
        votes,
        GNMaxConfig(4.0),
        BudgetConfig(delta=1e-6, max_epsilon=20.0),
        workspace / LEDGER_FILE,
        noise=make_noise(7),
        noise_seed=7,
        header=header,
    )
    report = privacy_report(
        header=header, spent=outcome.spent, stop_reason="x", include_private=False
    )
    write_report(release / "privacy.json", report)
    return workspace, release, report


def test_cli_audits_what_a_release_and_a_workspace_claim(run_dirs):
    workspace, release, report = run_dirs
    for flag, path, classes in (("--release", release, 2), ("--workspace", workspace, 3)):
        result = run(flag, path, "--trials", 10_000, "--json")
        assert result.exit_code == 0, result.output
        payload = json.loads(result.output)
        assert payload["mechanism"] == "gnmax" and payload["parameters"] == {"sigma": 4.0}
        assert payload["num_teachers"] == 20 and payload["num_classes"] == classes
        assert payload["delta"] == 1e-6 and payload["composed"]["queries"] == 40
        assert payload["claimed_epsilon"] == pytest.approx(report["epsilon"])
        # k answered worst-case queries is exactly what the run was charged.
        assert payload["composed"]["epsilon_upper"] == pytest.approx(report["epsilon"])
    result = run("--workspace", release)
    assert result.exit_code == 2 and "is a release, expected a workspace" in result.output


def test_docstring_examples():
    import doctest

    result = doctest.testmod(audit_module)
    assert result.attempted > 0 and result.failed == 0


def test_help_has_an_example_and_the_group_lists_audit():
    result = run("--help")
    assert result.exit_code == 0 and "Example" in result.output and "pate audit" in result.output
    assert "audit" in CliRunner().invoke(app, ["--help"]).output


def test_the_command_and_the_library_import_no_jax():
    code = "import sys, cli.audit, pate.audit; assert 'jax' not in sys.modules, 'jax imported'"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
