"""``pate label-and-distill``: teachers vote, a noisy aggregator answers within budget, a student learns."""

from __future__ import annotations

import click

from cli.common import POSITIVE_FLOAT, console, echo_json, progress_bar


@click.command("label-and-distill")
@click.argument("teachers_dir", metavar="TEACHERS_DIR", type=click.Path())
@click.option(
    "--public",
    "public_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Public unlabeled dataset the teachers vote on.",
)
@click.option(
    "--workspace",
    required=True,
    type=click.Path(file_okay=False),
    help="Private folder for the raw votes and the ledger (resumable).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Release folder: student.h5, labels.h5, privacy.json.",
)
@click.option(
    "--aggregator",
    type=click.Choice(["gnmax", "lnmax", "confident-gnmax", "interactive-gnmax"]),
    default="gnmax",
    show_default=True,
)
@click.option(
    "--sigma", type=POSITIVE_FLOAT, default=40.0, show_default=True, help="GNMax noise (votes)."
)
@click.option(
    "--scale", type=POSITIVE_FLOAT, default=20.0, show_default=True, help="LNMax Laplace scale."
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Confident/Interactive-GNMax threshold T (default: 0.6 x teachers).",
)
@click.option(
    "--sigma1",
    type=POSITIVE_FLOAT,
    default=None,
    help="Threshold-check noise (default: 0.6 x teachers / 1.6).",
)
@click.option(
    "--sigma2",
    type=POSITIVE_FLOAT,
    default=None,
    help="Answer noise of Confident/Interactive-GNMax (default: --sigma).",
)
@click.option(
    "--student-confidence",
    type=click.FloatRange(0, 1),
    default=0.9,
    show_default=True,
    help="Interactive-GNMax: the student labels a query itself above this confidence.",
)
@click.option(
    "--warmup-queries",
    type=click.IntRange(min=1),
    default=None,
    help="Interactive-GNMax: queries answered by Confident-GNMax before the student is "
    "trained (default: a third of the queries).",
)
@click.option(
    "--delta",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=1e-5,
    show_default=True,
)
@click.option(
    "--max-epsilon",
    type=POSITIVE_FLOAT,
    default=3.0,
    show_default=True,
    help="Budget: stop before the data-independent epsilon would exceed it.",
)
@click.option(
    "--max-queries",
    type=click.IntRange(min=1),
    default=None,
    help="Consider at most this many public records.",
)
@click.option(
    "--orders", type=click.Choice(["default", "paper"]), default="default", show_default=True
)
@click.option(
    "--conversion",
    type=click.Choice(["improved", "classic"]),
    default="improved",
    show_default=True,
)
@click.option(
    "--noise-seed",
    type=int,
    default=None,
    help="Seeded noise for experiments: the release is then NOT private.",
)
@click.option(
    "--student-method",
    type=click.Choice(["auto", "supervised", "self-train", "vat"]),
    default="auto",
    show_default=True,
    help="supervised: the answered rows only; self-train: an ensemble fitted on the answered rows "
    "labels the whole public set, the student learns from all of it; vat: semi-supervised on the "
    "answered rows and the whole public set (virtual adversarial training). auto: vat for images, "
    "self-train for tabular data (measured, see BENCHMARKS.md).",
)
@click.option(
    "--student-model",
    type=click.Choice(["auto", "mlp", "cnn", "cnn-medium", "cnn-small"]),
    default="auto",
    show_default=True,
    help="Student architecture. auto: cnn-medium for images, an MLP for tabular data.",
)
@click.option("--student-steps", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option(
    "--student-hidden",
    default=None,
    help="Student MLP widths (default: the teachers' for MLP teachers, else 256,256).",
)
@click.option(
    "--student-balance",
    type=click.FloatRange(min=0.0),
    default=1.0,
    show_default=True,
    help="vat only: weight of the class-balance term (the divergence of the mean prediction on the "
    "public pool from uniform; keeps a class with few answers from being absorbed by another). "
    "Assumes the public pool's classes are about equally common; 0 turns it off.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of student training.")
@click.option(
    "--test",
    "test_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labelled test set to evaluate the student.",
)
@click.option(
    "--batch-queries",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Queries per ledger record.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace a release folder that holds another run (never a folder holding a ledger).",
)
@click.option(
    "--raise-budget",
    is_flag=True,
    help="Accept a --max-epsilon larger than the workspace's budget in force; the raise is "
    "recorded in the ledger and the release states the new budget.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(
    teachers_dir,
    public_path,
    workspace,
    out_dir,
    aggregator,
    sigma,
    scale,
    threshold,
    sigma1,
    sigma2,
    student_confidence,
    warmup_queries,
    delta,
    max_epsilon,
    max_queries,
    orders,
    conversion,
    noise_seed,
    student_method,
    student_model,
    student_steps,
    student_hidden,
    student_balance,
    seed,
    test_path,
    batch_queries,
    force,
    raise_budget,
    as_json,
) -> None:
    """Label public data with noisy teacher votes within a privacy budget, then train a student.

    Each answer is charged to a durable ledger in --workspace before it is released; a killed run
    resumes from the ledger without paying twice. Answering stops before the data-independent
    epsilon would exceed --max-epsilon.

    \b
    Example:
      pate label-and-distill run/teachers --public data/adas/public.h5 \\
          --workspace run/workspace --out run/release --sigma 40 --max-epsilon 3 \\
          --test data/adas/test.h5
    """
    from cli.common import parse_widths
    from pate.aggregate import (
        ConfidentGNMaxConfig,
        GNMaxConfig,
        InteractiveGNMaxConfig,
        LNMaxConfig,
    )
    from pate.distill import label_and_distill
    from pate.labeling import BudgetConfig
    from pate.student import StudentConfig
    from pate.teachers import load_teachers

    if aggregator == "gnmax":
        config = GNMaxConfig(sigma)
    elif aggregator == "lnmax":
        config = LNMaxConfig(scale)
    else:
        num_teachers = load_teachers(teachers_dir).num_teachers
        threshold = 0.6 * num_teachers if threshold is None else threshold
        sigma1 = threshold / 1.6 / 2.5 if sigma1 is None else sigma1
        sigma2 = sigma if sigma2 is None else sigma2
        if aggregator == "confident-gnmax":
            config = ConfidentGNMaxConfig(threshold, sigma1, sigma2)
        else:
            config = InteractiveGNMaxConfig(threshold, sigma1, sigma2, student_confidence)
    budget = BudgetConfig(
        delta=delta,
        max_epsilon=max_epsilon,
        max_queries=max_queries,
        orders=orders,
        conversion=conversion,
    )
    warmup = 0
    if aggregator == "interactive-gnmax":
        warmup = warmup_queries or max(1, (max_queries or _count(public_path)) // 3)
    with progress_bar("answering queries", max_queries or _count(public_path)) as advance:
        result = label_and_distill(
            teachers_dir,
            public_path,
            workspace,
            out_dir,
            aggregator=config,
            budget=budget,
            noise_seed=noise_seed,
            test_path=test_path,
            student_config=StudentConfig(
                steps=student_steps, seed=seed, balance_weight=student_balance
            ),
            student_method=student_method,
            student_model=student_model,
            student_hidden=parse_widths(student_hidden) if student_hidden else None,
            warmup_queries=warmup,
            batch_queries=batch_queries,
            force=force,
            raise_budget=raise_budget,
            on_batch=lambda done, spent: advance(done, max_queries or done),
        )
    report = result.report
    summary = {
        "release_dir": str(result.release_dir),
        "workspace": str(workspace),
        "epsilon": report["epsilon"],
        "delta": report["delta"],
        "mechanism": report["mechanism"],
        "queries_seen": report["queries_seen"],
        "queries_answered": report["queries_answered"],
        "resumed_queries": result.outcome.resumed_queries,
        "stop_reason": report["stop_reason"],
        "epsilon_data_dependent_private": result.outcome.spent.epsilon_data_dependent,
        "student_method": report["student"]["method"],
        "student_model": report["student"]["model"],
        "student_test_accuracy": result.student_accuracy,
        "label_accuracy": result.label_accuracy,
        "private": report["private"],
        "warnings": result.warnings,
        "private_warnings": result.private_warnings,
    }
    for warning in result.private_warnings:
        click.echo(f"warning (private, kept out of the release): {warning}", err=True)
    if as_json:
        echo_json(summary)
        return
    out = console()
    out.print(
        f"{report['queries_answered']} of {report['queries_seen']} queries answered "
        f"({report['mechanism']}), stopped by {report['stop_reason']}"
        + (
            f"; {result.outcome.resumed_queries} resumed from the ledger"
            if result.outcome.resumed_queries
            else ""
        )
    )
    out.print(
        f"epsilon = {report['epsilon']:.4f} at delta = {report['delta']:g} (data-independent, "
        f"publishable); data-dependent (private-internal) = "
        f"{result.outcome.spent.epsilon_data_dependent:.4f}"
    )
    if result.label_accuracy is not None:
        out.print(
            f"label accuracy (evaluation labels of the public set) = {result.label_accuracy:.3f}"
        )
    if result.student_accuracy is not None:
        out.print(
            f"student test accuracy = {result.student_accuracy:.4f} "
            f"({report['student']['method']} {report['student']['model']} student)"
        )
    if not report["private"]:
        out.print("[bold red]WARNING: seeded noise: this release is NOT private[/]")
    for warning in result.warnings:
        out.print(f"warning: {warning}")
    out.print(f"release written to {result.release_dir}")


def _count(public_path: str) -> int:
    from pate.io import open_h5

    with open_h5(public_path, "dataset file") as handle:
        return int(handle["features"].shape[0]) if "features" in handle else 0
