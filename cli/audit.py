"""``pate audit``: an empirical lower bound on epsilon, held against the accountant's upper bound;
``pate audit canaries``: the same for a whole pipeline, end to end, from one run with canaries."""

from __future__ import annotations

import click

from cli.common import NATURAL_INT, POSITIVE_FLOAT, POSITIVE_INT, console, echo_json

MECHANISMS = ["gnmax", "lnmax", "confident-gnmax", "interactive-gnmax"]
OPTIONS = [
    ("--mechanism", click.Choice(MECHANISMS), None, "Aggregator (or --workspace, --release)."),
    ("--sigma", POSITIVE_FLOAT, 40.0, "GNMax noise, and the default --sigma2."),
    ("--scale", POSITIVE_FLOAT, 20.0, "LNMax noise."),
    ("--threshold", float, None, "Confident-GNMax T [default: 80% of the teachers]."),
    ("--sigma1", POSITIVE_FLOAT, None, "Threshold noise [default: 75% of T]."),
    ("--sigma2", POSITIVE_FLOAT, None, "Answer noise [default: --sigma]."),
    ("--teachers", POSITIVE_INT, None, "Number of teachers (with --mechanism)."),
    ("--classes", click.IntRange(min=2), None, "Classes [default: the workspace's, else 2]."),
    ("--queries", POSITIVE_INT, None, "k of the composed bound [default: answered, else 1000]."),
    ("--delta", POSITIVE_FLOAT, None, "Delta of both epsilons [default: the run's, else 1e-5]."),
    ("--workspace", click.Path(), None, "Audit what this workspace's run claims."),
    ("--release", click.Path(), None, "Audit what this release's privacy.json claims."),
    ("--trials", POSITIVE_INT, 500_000, "Runs of the aggregator per histogram of a chosen pair."),
    ("--confidence", float, 0.95, "Probability that both lower bounds hold."),
    ("--seed", NATURAL_INT, 0, "Seed of the audit's own noise."),
]


def _options(function):
    for flag, kind, default, text in reversed(OPTIONS):
        shown = default is not None
        function = click.option(flag, type=kind, default=default, show_default=shown, help=text)(
            function
        )
    return function


@click.group("audit", invoke_without_command=True)
@_options
@click.option("--system-noise", is_flag=True, help="Draw the audit's noise from the OS CSPRNG.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def command(ctx: click.Context, **o) -> None:
    """Run the real aggregator many times on worst-case neighbouring vote histograms and report a
    Clopper-Pearson lower bound on epsilon, for one query and for k queries composed, next to the
    accountant's data-independent upper bound. A lower bound above the upper bound is a bug: the
    verdict is FAIL and the exit status 5.

    \b
    Example:
      pate audit --mechanism gnmax --sigma 60 --teachers 250 --classes 6 --queries 807
      pate audit --release run/release --json

    `pate audit canaries PIPELINE.toml --out DIR` audits a whole pipeline end to end instead
    (see its --help).
    """
    if ctx.invoked_subcommand is not None:
        source = click.core.ParameterSource.COMMANDLINE
        given = [
            p.opts[0] for p in ctx.command.params if ctx.get_parameter_source(p.name) == source
        ]
        if given:
            raise click.UsageError(f"{given[0]} is an option of `pate audit`, not of its commands")
        return
    from cli.common import fields_as_flags, flags_of
    from pate.errors import PateError

    flags = {**flags_of(ctx.command), "num_classes": "--classes", "num_teachers": "--teachers"}
    with fields_as_flags(flags):
        result = _audit(o)
    if o["as_json"]:
        echo_json(result.to_dict())
    else:
        _render(result)
    if not result.passed:
        from pate.audit import AUDIT_FAILED_EXIT

        raise PateError(result.failure_message(), exit_code=AUDIT_FAILED_EXIT)


def _audit(o: dict):
    """The audit the options describe, run."""
    from dataclasses import replace

    from pate.aggregate import aggregator_config
    from pate.audit import AuditConfig, audit, claimed_config

    sources = [name for name in ("mechanism", "workspace", "release") if o[name] is not None]
    if len(sources) != 1:
        raise click.UsageError("expected exactly one of --mechanism, --workspace and --release")
    settings = {
        "trials": o["trials"],
        "confidence": o["confidence"],
        "seed": None if o["system_noise"] else o["seed"],
    }
    extra: dict = {}
    if o["mechanism"] is None:
        kind = sources[0]
        config, extra = claimed_config(
            o[kind],
            kind,
            num_classes=o["classes"],
            queries=o["queries"],
            delta=o["delta"],
            **settings,
        )
    elif o["teachers"] is None:
        raise click.UsageError("--mechanism needs --teachers")
    else:
        names = ("sigma", "scale", "threshold", "sigma1", "sigma2")
        aggregator = aggregator_config(o["mechanism"], o["teachers"], **{k: o[k] for k in names})
        config = AuditConfig(
            aggregator,
            o["teachers"],
            num_classes=o["classes"] or 2,
            queries=o["queries"] or 1000,
            delta=o["delta"] or 1e-5,
            **settings,
        )
    return replace(audit(config), extra=extra)


def _render(result) -> None:
    c = result.config
    params = ", ".join(f"{k}={v:g}" for k, v in c.aggregator.to_dict().items() if k != "mechanism")
    lines = [
        f"Audit of {c.aggregator.mechanism} ({params}), {c.num_teachers} teachers, {c.num_classes} "
        f"classes, delta={c.delta:g}, confidence {c.confidence:g}",
        f"{c.trials} runs per histogram of the pairs planned among {result.candidate_pairs} "
        f"({result.mechanism_runs} runs in all; the audit's noise: {result.noise})",
    ]
    if "claimed_epsilon" in result.extra:
        lines.append(
            f"{result.extra['source']} claims epsilon {result.extra['claimed_epsilon']:.4g}"
        )
    lines.append(
        f"{'':13}{'lower (measured)':>17}{'ceiling':>10}{'upper (accountant)':>20}{'ratio':>8}"
    )
    for b in (result.per_query, result.composed):
        name = f"{b.queries} quer{'y' if b.queries == 1 else 'ies'}"
        lines.append(
            f"{name:13}{b.epsilon_lower:>17.4g}{b.ceiling:>10.4g}{b.epsilon_upper:>20.4g}{b.ratio:>8.3f}"
        )
    for bound in (result.per_query, result.composed):
        lines.append(
            f"  {bound.queries} q: pair {list(bound.histogram)} vs {list(bound.neighbour)}, event "
            f"{bound.event} ({bound.hits} vs {bound.neighbour_hits} of {bound.trials}; planned for "
            f"noise x{bound.plan_noise_factor:g}, expecting {bound.planned:.4g})"
        )
    lines.append("ratio = lower / upper; ceiling: what infinitely many runs could show (exact)")
    out = console()
    out.print("\n".join(lines), markup=False, soft_wrap=True)
    verdict = "[bold green]PASS[/]" if result.passed else "[bold red]FAIL[/]"
    out.print(f"verdict: {verdict} (a lower bound above the upper bound is a bug)")


@command.command("canaries")
@click.argument("pipeline_path", metavar="PIPELINE.toml", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="New folder for the audit (private).")
@click.option("--canaries", type=click.IntRange(min=2), default=100, show_default=True,
              help="Canary individuals, one per public query.")  # fmt: skip
@click.option("--records", type=POSITIVE_INT, default=4, show_default=True,
              help="Records of each canary.")  # fmt: skip
@click.option("--guesses", type=POSITIVE_INT, default=None,
              help="Guesses on each side (top and bottom scores) [default: 40% of the canaries].")  # fmt: skip
@click.option("--confidence", type=float, default=0.95, show_default=True,
              help="Probability that the lower bound holds.")  # fmt: skip
@click.option("--seed", type=NATURAL_INT, default=None,
              help="Seed of the audit's choices and inclusion bits, for experiments: whoever knows it knows the bits [default: the OS CSPRNG, no seed kept].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def canaries(pipeline_path, out, canaries, records, guesses, confidence, seed, as_json) -> None:
    """Audit a whole pipeline in one run (Steinke, Nasr, Jagielski, NeurIPS 2023): plant canary
    individuals on public queries, include each with probability 1/2, run the pipeline file's
    partition, teachers and label-and-distill once into --out, guess from the release alone who was
    included, and turn the correct guesses into a lower bound on epsilon at the release's delta.
    A lower bound above the release's claimed epsilon is a bug: the verdict is FAIL and the exit
    status 5. Expect about 0 for a correct pipeline (one individual moves one vote).

    The pipeline file's paths are read (the private and public sets) but its outputs are not
    written: the run goes into --out, with the audit's secrets (inclusion bits, scores) in
    --out/secrets.json. Never publish that folder.

    \b
    Example:
      pate audit canaries pipeline.toml --out audit-run --canaries 200 --seed 1
    """
    from pate.audit_canaries import AUDIT_FAILED_EXIT, CanaryConfig, audit_canaries
    from pate.errors import PateError
    from pate.pipeline import load_pipeline, run_stage, stage_is_finished

    pipeline = load_pipeline(pipeline_path)
    missing = [s for s in ("partition", "train_teachers", "label_and_distill") if
               getattr(pipeline, s) is None]  # fmt: skip
    if missing:
        raise PateError(
            f"{pipeline_path}: has no [{missing[0]}] table, expected the partition, train_teachers "
            "and label_and_distill stages to audit"
        )
    if pipeline.dataset is not None and not stage_is_finished("dataset", pipeline.dataset):
        run_stage("dataset", pipeline.dataset)  # public generator: builds the inputs if missing
    config = CanaryConfig(
        canaries=canaries, records=records, guesses=guesses, confidence=confidence, seed=seed
    )
    result = audit_canaries(
        config,
        partition=pipeline.partition,
        teachers=pipeline.train_teachers,
        distill=pipeline.label_and_distill,
        out=out,
    )
    if as_json:
        echo_json(result.to_dict())
    else:
        _render_canaries(result)
    if not result.passed:
        raise PateError(result.failure_message(), exit_code=AUDIT_FAILED_EXIT)


def _render_canaries(result) -> None:
    c = result.config
    lines = [
        f"End-to-end canary audit: {result.canaries} canaries ({c.records} records each), "
        f"{result.included} included, confidence {c.confidence:g}, "
        + (
            f"seed {result.seed} (reproducible: the seed rebuilds the secrets)"
            if result.seed is not None
            else "secrets from the OS CSPRNG (no seed kept)"
        ),
        f"run: {result.queries_answered} queries answered; at the {result.canaries} canary queries "
        f"{result.canary_queries_answered} answered, {result.canary_labels_released} with the canary "
        "label",
        f"guesses: {result.correct} of {result.guesses} right (p-value at the claim "
        f"{result.p_value_at_claim:.3g})",
        f"epsilon at delta={result.delta:g}: lower bound {result.epsilon_lower:.4g}, claimed "
        f"{result.claimed_epsilon:.4g} (ratio {result.ratio:.3f}); every guess right would give "
        f"{result.ceiling:.4g}",
        f"secrets and result: {result.extra.get('audit_folder')} (private; never publish)",
    ]
    out = console()
    out.print("\n".join(lines), markup=False, soft_wrap=True)
    verdict = "[bold green]PASS[/]" if result.passed else "[bold red]FAIL[/]"
    out.print(f"verdict: {verdict} (a lower bound above the claim is a bug)")
