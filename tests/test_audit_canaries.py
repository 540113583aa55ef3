"""``pate.audit_canaries`` and ``pate audit canaries``: the one-run bound of Steinke, Nasr and
Jagielski (2023), a correct pipeline passing, and a deliberately broken one (its aggregator's noise
scaled to ~0 behind a claim of the full noise) caught, end to end, through the command line.

The runs are tiny (the session's 60-car fleet, 100 canaries, one to six small teachers, 20 epochs):
about ten seconds each; everything is seeded, so the figures are reproducible.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from cli.main import app
from pate import audit_canaries as module
from pate.audit_canaries import (
    AUDIT_FAILED_EXIT,
    CanaryConfig,
    ceiling,
    epsilon_lower_bound,
    guesses,
    p_value,
)
from pate.errors import PateError

# ----------------------------------------------------------------------------------------------------
# Statistics


def _p_value_by_the_papers_loop(m, r, v, eps, delta):
    """Appendix D's ``p_value_DP_audit``, written as a plain loop (the reference for the vector form)."""
    q = 1 / (1 + math.exp(-eps))
    beta = stats.binom.sf(v - 1, r, q)
    alpha, total = 0.0, 0.0
    for i in range(1, v + 1):
        total += stats.binom.pmf(v - i, r, q)
        if total > i * alpha:
            alpha = total / i
    return min(beta + alpha * delta * 2 * m, 1)


@pytest.mark.parametrize(
    ("m", "r", "v", "eps", "delta"),
    [
        (100, 80, 60, 0.5, 1e-5),
        (100, 80, 80, 3.0, 1e-3),
        (1000, 200, 130, 1.0, 1e-6),
        (10, 4, 0, 1, 0.1),
    ],
)
def test_p_value_is_the_papers_formula(m, r, v, eps, delta):
    assert p_value(m, r, v, eps, delta) == pytest.approx(
        _p_value_by_the_papers_loop(m, r, v, eps, delta), rel=1e-9, abs=1e-15
    )
    # Pure DP (delta = 0): the binomial tail of Theorem 3.1.
    q = 1 / (1 + math.exp(-eps))
    assert p_value(m, r, v, eps, 0.0) == pytest.approx(stats.binom.sf(v - 1, r, q))


def test_the_lower_bound_is_the_edge_of_the_rejected_epsilons():
    m, r, v, delta = 200, 160, 140, 1e-5
    low = epsilon_lower_bound(m, r, v, delta, 0.95)
    assert 0 < low < ceiling(m, r, delta, 0.95)
    assert p_value(m, r, v, low, delta) < 0.05 <= p_value(m, r, v, low + 1e-6, delta)
    # More right guesses, a larger bound; chance gives nothing.
    values = [epsilon_lower_bound(m, r, v, delta, 0.95) for v in (80, 100, 120, 140, 160)]
    assert (
        values[0] == 0.0 and values == sorted(values) and values[-1] == ceiling(m, r, delta, 0.95)
    )
    # Every guess right among r: about ln(r / 3) at 95% (q^r = 0.05).
    assert ceiling(1000, 100, 0.0, 0.95) == pytest.approx(
        math.log(0.05**0.01 / (1 - 0.05**0.01)), abs=1e-6
    )


def test_the_bound_covers_an_eps_dp_mechanism():
    """Randomized response on the bits is exactly eps-DP: its bound exceeds eps at most ~5% of runs."""
    rng = np.random.default_rng(0)
    eps, m, k, runs = 1.0, 100, 40, 200
    exceed = 0
    for _ in range(runs):
        bits = rng.integers(0, 2, m).astype(bool)
        keep = rng.random(m) < math.exp(eps) / (1 + math.exp(eps))
        output = np.where(keep, bits, ~bits).astype(float) + rng.random(m) * 0.1
        guess = guesses(output, k, rng)
        v = int(np.count_nonzero(guess * np.where(bits, 1, -1) == 1))
        exceed += epsilon_lower_bound(m, 2 * k, v, 0.0, 0.95) > eps
    assert exceed <= 0.08 * runs


def test_guesses_take_the_top_and_bottom_k_and_break_ties_at_random():
    rng = np.random.default_rng(1)
    g = guesses(np.array([0.1, 0.9, 0.5, 0.2, 0.8]), 2, rng)
    assert g.tolist() == [-1, 1, 0, -1, 1]
    tied = {tuple(guesses(np.zeros(6), 2, rng)) for _ in range(20)}
    assert len(tied) > 1 and all(sum(t) == 0 and t.count(0) == 2 for t in tied)
    with pytest.raises(PateError):
        guesses(np.zeros(3), 2, rng)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("canaries", 1),
        ("records", 0),
        ("guesses", 51),
        ("guesses", 0),
        ("confidence", 1.0),
        ("seed", -1),
        ("canaries", True),
    ],  # fmt: skip
)
def test_config_refuses_bad_values(field, value):
    with pytest.raises(PateError, match=field):
        CanaryConfig(**{field: value})


def test_docstring_examples():
    import doctest

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------------------------------
# End to end, through the command line

PIPELINE = """
[partition]
input = "{private}"
out = "never-written/shards.h5"
num_teachers = {teachers}

[train_teachers]
shards = "never-written/shards.h5"
out = "never-written/teachers"
hidden = [64]
epochs = 20
checkpoints = false

[label_and_distill]
teachers = "never-written/teachers"
public = "{public}"
workspace = "never-written/workspace"
out = "never-written/release"
sigma = 100.0
max_queries = 100
max_epsilon = 10.0
noise_seed = 5
student_method = "supervised"
steps = 200
"""


def pipeline_file(tmp_path, data, teachers: int):
    path = tmp_path / "pipeline.toml"
    text = PIPELINE.format(private=data["private"], public=data["public"], teachers=teachers)
    path.write_text(text)
    return path


def audit(pipeline, out, *extra):
    args = ["audit", "canaries", pipeline, "--out", out, "--canaries", 100, "--records", 16]
    return CliRunner().invoke(app, [str(a) for a in [*args, "--seed", 1, *extra]])


def test_a_correct_pipeline_passes_and_keeps_its_secrets_out_of_the_release(tiny_adas, tmp_path):
    result = audit(pipeline_file(tmp_path, tiny_adas, teachers=6), tmp_path / "audit", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["verdict"] == "PASS" and payload["canaries"] == 100
    assert payload["epsilon_lower"] <= payload["claimed_epsilon"] < payload["ceiling"]
    assert payload["guesses"] == 80 and payload["canary_queries_answered"] == 100
    assert payload["seed"] == 1 and payload["reproducible"] is True
    folder = tmp_path / "audit"
    assert not (tmp_path / "never-written").exists()  # the pipeline's own outputs are not touched
    for name in ("secrets.json", "audit.json", "data/private.h5"):
        assert oct(os.stat(folder / name).st_mode & 0o777) == "0o600", name
    assert oct(os.stat(folder).st_mode & 0o777) == "0o700"
    secrets = json.loads((folder / "secrets.json").read_text())
    assert len(secrets["included"]) == 100 and sum(secrets["included"]) == payload["included"]
    release = folder / "run" / "release"
    assert sorted(p.name for p in release.iterdir()) == [
        "labels.h5", "privacy.json", "student.h5", "student.jax"
    ]  # fmt: skip
    claimed = json.loads((release / "privacy.json").read_text())
    assert claimed["epsilon"] == payload["claimed_epsilon"] and "included" not in json.dumps(
        claimed
    )
    # The audit's own folder cannot be reused.
    again = audit(pipeline_file(tmp_path, tiny_adas, teachers=6), folder)
    assert again.exit_code == 4 and "already exists" in again.output


def test_without_a_seed_no_seed_that_rebuilds_the_secrets_is_printed_or_stored(tiny_adas, tmp_path):
    pipeline = pipeline_file(tmp_path, tiny_adas, teachers=6)
    args = ["audit", "canaries", pipeline, "--out", tmp_path / "audit", "--canaries", 20]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "secrets from the OS CSPRNG (no seed kept)" in result.output
    assert "seed " not in result.output.replace("no seed kept", "")
    stored = json.loads((tmp_path / "audit" / "audit.json").read_text())
    secrets = json.loads((tmp_path / "audit" / "secrets.json").read_text())
    assert stored["seed"] is None and stored["reproducible"] is False
    assert "seed" not in secrets and secrets["reproducible"] is False
    assert len(secrets["included"]) == 20


def test_noise_scaled_to_zero_is_caught_with_exit_5(tiny_adas, tmp_path, monkeypatch):
    """The accountant is told sigma = 100, the aggregator adds ~none: one teacher's label is released
    as it is, so the released labels say which canaries it was trained on."""
    import pate.labeling as labeling
    from pate.aggregate import GNMaxConfig

    real = labeling.aggregate

    def silent(votes, config, noise, *args, **kwargs):
        return real(votes, GNMaxConfig(config.sigma * 1e-3), noise, *args, **kwargs)

    monkeypatch.setattr(labeling, "aggregate", silent)
    folder = tmp_path / "audit"
    result = audit(pipeline_file(tmp_path, tiny_adas, teachers=1), folder)
    assert result.exit_code == AUDIT_FAILED_EXIT == 5, result.output
    assert "verdict: FAIL" in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: canary audit FAILED")
    payload = json.loads((folder / "audit.json").read_text())
    assert payload["epsilon_lower"] > 2 * payload["claimed_epsilon"]
    assert payload["correct"] >= 0.85 * payload["guesses"]


def test_cli_errors_are_one_line_with_status_2(tiny_adas, tmp_path):
    path = tmp_path / "partial.toml"
    path.write_text(
        f'[partition]\ninput = "{tiny_adas["private"]}"\nout = "s.h5"\nnum_teachers = 2\n'
    )
    result = audit(path, tmp_path / "audit")
    assert result.exit_code == 2 and "has no [train_teachers] table" in result.output
    assert "Traceback" not in result.output
    result = audit(
        pipeline_file(tmp_path, tiny_adas, teachers=2), tmp_path / "audit", "--canaries", 100_000
    )
    assert result.exit_code == 2 and "expected at most the" in result.output
    assert not (tmp_path / "audit").exists()
    # An option of `pate audit` itself is refused before a command.
    result = CliRunner().invoke(
        app, ["audit", "--trials", "5", "canaries", str(path), "--out", "x"]
    )
    assert result.exit_code == 2 and "--trials" in result.output


def test_help_has_an_example_and_the_group_lists_canaries():
    result = CliRunner().invoke(app, ["audit", "canaries", "--help"])
    assert result.exit_code == 0 and "pate audit canaries" in result.output
    assert "canaries" in CliRunner().invoke(app, ["audit", "--help"]).output
