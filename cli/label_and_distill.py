"""``pate label-and-distill``: teachers vote, a noisy aggregator answers within budget, a student learns.

Parse, build a :class:`~pate.distill.DistillJob`, call :func:`~pate.distill.label_and_distill`,
render. Each option fills the job, budget or student field it is named after and takes that field's
default and choices from the library; library errors name fields, said here as flags.
"""

from __future__ import annotations

from functools import partial

import click

from cli import common
from cli.common import POSITIVE_FLOAT, POSITIVE_INT
from pate.distill.config import AGGREGATORS, STUDENT_MODELS, DistillJob
from pate.distill.selection import QUERY_SELECTIONS
from pate.labeling import BudgetConfig
from pate.student_config import STUDENT_METHODS, StudentConfig

FILE, FOLDER = click.Path(dir_okay=False), click.Path(file_okay=False)
HELP = {
    "public": "Public unlabeled dataset the teachers vote on.",
    "workspace": "Private folder for the raw votes and the ledger (resumable): a workspace, an "
    "empty folder or a new one (made 0700, with its missing parents); one run at a time.",
    "out": "Release folder: student.h5, labels.h5, privacy.json (missing parents are made).",
    "sigma": "GNMax noise (votes); the default sigma2.",
    "scale": "LNMax Laplace scale.",
    "threshold": "Confident/Interactive-GNMax threshold T [default: 80% of the teachers].",
    "sigma1": "Threshold-check noise [default: 0.75 x T].",
    "sigma2": "Answer noise of Confident/Interactive-GNMax [default: --sigma].",
    "student_confidence": "Interactive-GNMax: the student labels a query itself above this.",
    "warmup_queries": "Interactive-GNMax: queries answered by Confident-GNMax before the student "
    "is trained [default: a third of the queries].",
    "max_epsilon": "Budget: stop before the data-independent epsilon would exceed it.",
    "max_queries": "Consider at most this many public records.",
    "noise_seed": "Seeded noise for experiments: the release is then NOT private.",
    "student_method": "supervised: the answered rows only; self-train: an ensemble fitted on the "
    "answered rows labels the whole public set, the student learns from all of it; vat: "
    "semi-supervised on the answered rows and the whole public set. auto: vat for images, "
    "self-train for tabular data (measured, see BENCHMARKS.md).",
    "student_model": "Student architecture. auto: cnn-medium for images, an MLP for tabular data. "
    "Or your own flax module: package.module:factory (as train-teachers --model); student.h5 then "
    "names it, and using the student needs it importable.",
    "steps": "Student training steps.",
    "student_hidden": "Student MLP widths [default: the teachers' for MLP teachers, else 256,256].",
    "balance_weight": "vat only: weight of the class-balance term (keeps a class with few answers "
    "from being absorbed by another). Assumes the public pool's classes are about equally common; "
    "0 turns it off.",
    "seed": "Seed of student training.",
    "test": "Labelled test set to evaluate the student.",
    "batch_queries": "Queries per ledger record.",
    "query_selection": "Which public records are asked. order: in the public set's order; "
    "uncertainty: in rounds of --selection-batch, the first a seeded random sample, each later one "
    "where a cheap model fitted on the labels released so far is least sure, leaning to classes "
    "with few labels. Uses only public data and released labels: same charges, no privacy cost. "
    "Not with interactive-gnmax.",
    "selection_batch": "uncertainty selection: queries per round (the model is refitted between "
    "rounds).",
    "selection_seed": "uncertainty selection: seed of the first round's sample and the candidate "
    "pools (public).",
    "force": "Replace a release folder that holds another run (never a folder holding a ledger, "
    "nor one of another kind).",
    "raise_budget": "Accept a --max-epsilon larger than the workspace's budget in force; the raise "
    "is recorded in the ledger and the release states the new budget.",
    "as_json": "Print the result as JSON.",
}
JOB, BUDGET, STUDENT = DistillJob, BudgetConfig, StudentConfig
option = partial(common.field_option, HELP)


@click.command("label-and-distill", context_settings={"show_default": True})
@click.argument("teachers", metavar="TEACHERS_DIR", type=click.Path())
@option("--public", required=True, type=FILE)
@option("--workspace", required=True, type=FOLDER)
@option("--out", required=True, type=FOLDER)
@option("--aggregator", field_of=JOB, type=click.Choice(AGGREGATORS))
@option("--sigma", field_of=JOB, type=POSITIVE_FLOAT)
@option("--scale", field_of=JOB, type=POSITIVE_FLOAT)
@option("--threshold", type=float, default=None)
@option("--sigma1", type=POSITIVE_FLOAT, default=None)
@option("--sigma2", type=POSITIVE_FLOAT, default=None)
@option("--student-confidence", field_of=JOB, type=click.FloatRange(0, 1))
@option("--warmup-queries", type=POSITIVE_INT, default=None)
@option("--delta", field_of=BUDGET, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@option("--max-epsilon", field_of=BUDGET, type=POSITIVE_FLOAT)
@option("--max-queries", field_of=BUDGET, type=POSITIVE_INT)
@option("--orders", field_of=BUDGET, type=click.Choice(["default", "paper"]))
@option("--conversion", field_of=BUDGET, type=click.Choice(["improved", "classic"]))
@option("--noise-seed", type=int, default=None)
@option("--student-method", field_of=JOB, type=click.Choice(["auto", *STUDENT_METHODS]))
@option("--student-model", field_of=JOB, type=common.ModelChoice(STUDENT_MODELS))
@option("--student-steps", "steps", field_of=STUDENT, type=POSITIVE_INT)
@option("--student-hidden", default=None)
@option("--student-balance", "balance_weight", field_of=STUDENT, type=click.FloatRange(min=0.0))
@option("--seed", field_of=STUDENT, type=int)
@option("--test", type=FILE, default=None)
@option("--batch-queries", field_of=JOB, type=POSITIVE_INT)
@option("--query-selection", field_of=JOB, type=click.Choice(QUERY_SELECTIONS))
@option("--selection-batch", field_of=JOB, type=POSITIVE_INT)
@option("--selection-seed", field_of=JOB, type=int)
@option("--force", field_of=JOB, is_flag=True)
@option("--raise-budget", field_of=JOB, is_flag=True)
@option("--json", "as_json", is_flag=True)
def command(**options) -> None:
    """Label public data with noisy teacher votes within a privacy budget, then train a student.

    Each answer is charged to a durable ledger in --workspace before it is released; a killed run
    resumes from the ledger without paying twice. Answering stops before the data-independent
    epsilon would exceed --max-epsilon. Every check that can fail on public facts runs before the
    first query is charged.

    \b
    Example:
      pate label-and-distill run/teachers --public data/adas/public.h5 \\
          --workspace run/workspace --out run/release --sigma 40 --max-epsilon 3 \\
          --test data/adas/test.h5
    """
    with common.fields_as_flags(FLAGS):
        job = job_from_options(options)
        import warnings

        from pate.distill import label_and_distill
        from pate.errors import PrivateDataWarning

        with common.Phases(quiet=options["as_json"]) as phases, warnings.catch_warnings():
            warnings.simplefilter("ignore", PrivateDataWarning)  # printed below, once, plainly
            result = label_and_distill(job, **callbacks(phases))
    print_private_warnings(result)
    render(result, options["as_json"])


#: Field -> flag, for library errors (`raise_budget` -> --raise-budget; the custom student's
#: `factory` is --student-model's).
FLAGS = {param.name: param.opts[0] for param in command.params if isinstance(param, click.Option)}
FLAGS["factory"] = "--student-model"


def job_from_options(options: dict) -> DistillJob:
    """The job the options describe (also what ``pate run`` builds from a pipeline file)."""
    if options.get("student_hidden") is not None and isinstance(options["student_hidden"], str):
        options = {**options, "student_hidden": common.parse_widths(options["student_hidden"])}
    return JOB(
        **common.fields_of(JOB, options),
        budget=BUDGET(**common.fields_of(BUDGET, options)),
        student=STUDENT(**common.fields_of(STUDENT, options)),
    )


def callbacks(phases: common.Phases) -> dict:
    """``label_and_distill``'s progress hooks shown as ``phases`` (the command's and ``pate run``'s)."""
    return {"on_batch": lambda done, spent: phases.advance(done), "on_phase": phases.start}


def print_private_warnings(result) -> None:
    """Warnings about the private data: to the operator's terminal (stderr) only, never published."""
    for warning in result.private_warnings:
        click.echo(f"warning (private, kept out of the release): {warning}", err=True)


def render(result, as_json: bool) -> None:
    """Print what ``label_and_distill`` did (the command's output; ``pate run`` calls it too)."""
    report, spent = result.report, result.outcome.spent
    if as_json:
        return common.echo_json(result.summary())
    out = common.console()
    resumed = result.outcome.resumed_queries
    out.print(
        f"{result.labelled_text}; {report['queries_seen']} asked ({report['mechanism']})"
        + (f"; {resumed} resumed from the ledger" if resumed else ""),
        markup=False,
    )
    out.print(
        f"epsilon = {report['epsilon']:.4f} at delta = {report['delta']:g} (data-independent, "
        f"publishable); data-dependent (private-internal) = {spent.epsilon_data_dependent:.4f}"
    )
    if result.label_accuracy is not None:
        out.print(
            f"label accuracy (evaluation labels of the public set) = {result.label_accuracy:.3f}"
        )
    if result.student_accuracy is not None:
        out.print(
            f"student test accuracy = {result.student_accuracy_text} "
            f"({report['student']['method']} {report['student']['model']} student; always the "
            f"most common class: {report['test_majority_rate']:.4f})",
            markup=False,
        )
    if not report["private"]:
        out.print("[bold red]WARNING: seeded noise: this release is NOT private[/]")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    out.print(f"release written to {result.release_dir}")
