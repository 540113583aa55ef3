"""``pate plan``: noise parameters from a privacy budget (data-independent worst case).

Parse, call :func:`~pate.accounting.plan`, render. Defaults and choices are the library's.
"""

from __future__ import annotations

from functools import partial

import click

from cli import common
from pate.accounting import (
    CONVERSIONS,
    ORDER_LISTS,
    PLAN_MECHANISMS,
    PlanResult,
    SizingResult,
    plan,
    size_teachers,
    size_teachers_from_files,
)
from pate.errors import PateError

HELP = {
    "epsilon": "Target epsilon of the whole run.",
    "delta": "Target delta.",
    "queries": "Number of student queries.",
    "teachers": "Number of teachers.",
    "classes": "Number of classes [default with --private: the file's num_classes].",
    "mechanism": "Which aggregator to plan for.",
    "answered_fraction": "Confident-GNMax: at most this fraction of the queries gets an answer.",
    "threshold": "Confident-GNMax: threshold T (default 80% of the teachers).",
    "threshold_share": "Confident-GNMax: share of the budget spent on threshold checks.",
    "orders": "Renyi orders.",
    "conversion": "RDP to (epsilon, delta) conversion.",
    "individuals": "Sizing: how many individuals the private data holds (a table over teacher "
    "counts replaces the noise suggestion).",
    "private": "Sizing: read the individuals, records and classes from this private dataset file "
    "(locally; nothing is written).",
    "public": "Sizing: read the public pool's size from this public dataset file.",
    "records": "Sizing: how many records the private data holds [default: --individuals].",
    "public_size": "Sizing: records in the public pool (caps the answers).",
    "agreement": "Sizing: assumed share of teachers voting for the plurality class.",
    "as_json": "Print one JSON object.",
}
option = partial(common.field_option, HELP)


@click.command("plan", context_settings={"show_default": True})
@option("--epsilon", type=float, required=True)
@option("--delta", field_of=plan, type=float)
@option("--queries", type=int)
@option("--teachers", type=int)
@option("--classes", type=click.IntRange(min=2))
@option("--mechanism", field_of=plan, type=click.Choice(PLAN_MECHANISMS))
@option("--answered-fraction", field_of=plan, type=float)
@option("--threshold", type=float)
@option("--threshold-share", field_of=plan, type=float)
@option("--orders", field_of=plan, type=click.Choice(ORDER_LISTS))
@option("--conversion", field_of=plan, type=click.Choice(CONVERSIONS))
@option("--individuals", type=click.IntRange(min=1))
@option("--private", type=click.Path(dir_okay=False))
@option("--records", type=click.IntRange(min=1))
@option("--public", type=click.Path(dir_okay=False))
@option("--public-size", type=click.IntRange(min=1))
@option("--agreement", type=click.FloatRange(0, 1, min_open=True), default=0.8)
@option("--json", "as_json", is_flag=True)
def command(as_json: bool, **options) -> None:
    """Suggest the noise that keeps a run within a privacy budget.

    Uses the data-independent worst case, the only bound known before any vote is cast: sigma for
    GNMax, and T, sigma1, sigma2 for Confident-GNMax. Prints the epsilon the suggestion reaches.

    With --private (or --individuals), a sizing table instead: for 25 to 500 teachers, what a
    shard holds and how many answers epsilon buys; it ends with the row it suggests and why, or
    says that no setting gives a useful student and what would. --private and --public are read
    locally for their sizes and classes; nothing is written.

    \b
    Example:
      pate plan --epsilon 2 --delta 1e-5 --queries 1000 --teachers 250 --classes 10 \\
          --answered-fraction 0.4
      pate plan --epsilon 2 --private data/adas/private.h5 --public data/adas/public.h5
    """
    sizing = {
        k: options.pop(k)
        for k in ("individuals", "private", "public", "records", "public_size", "agreement")
    }
    if sizing["individuals"] or sizing["private"]:
        return render_sizing(_sizing(options, sizing), as_json)
    if sizing["public"]:
        raise PateError("--public: sizes a plan with --private, expected --private too")
    for name in ("queries", "teachers", "classes"):
        if options[name] is None:
            raise PateError(f"--{name}: missing, expected it (or --individuals for a sizing table)")
    result = plan(**options)
    if as_json:
        return common.echo_json(result.to_dict())
    render(result)


def render(result: PlanResult) -> None:
    """Print a noise plan (the command's output)."""
    from rich.markup import escape

    out = common.console()
    out.print(
        f"Budget: epsilon={result.target_epsilon:g} at delta={result.delta:g} for {result.queries} "
        f"queries, {result.teachers} teachers, {result.classes} classes "
        f"({result.conversion} conversion, {result.orders_name or 'custom'} orders; "
        "data-independent worst case)",
        markup=False,
    )
    if result.gnmax is not None:
        g = result.gnmax
        out.print(
            f"GNMax: sigma = {g.sigma:.4f}  -> epsilon {g.epsilon:.6g} (order {g.order:g})",
            markup=False,
        )
    if result.confident_gnmax is not None:
        c = result.confident_gnmax
        out.print(
            f"Confident-GNMax: T = {c.threshold:g}, sigma1 = {c.sigma1:.4f}, sigma2 = {c.sigma2:.4f} "
            f"(at most {c.answered} answers, {c.threshold_share:.0%} of the budget on checks)  -> "
            f"epsilon {c.epsilon:.6g} (order {c.order:g})",
            markup=False,
        )
    for warning in result.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def _sizing(options: dict, sizing: dict) -> SizingResult:
    common_options = {
        "epsilon": options["epsilon"],
        "delta": options["delta"],
        "public_size": sizing["public_size"],
        "agreement": sizing["agreement"],
        "orders": options["orders"],
        "conversion": options["conversion"],
    }
    with common.fields_as_flags(FLAGS):
        if sizing["private"]:
            return size_teachers_from_files(
                private=sizing["private"],
                public=sizing["public"],
                classes=options["classes"],
                **common_options,
            )
        if sizing["public"]:
            raise PateError("`public`: read with `private`, expected `private` too")
        if options["classes"] is None:
            raise PateError("`classes`: missing, expected it with `individuals` (or `private`)")
        return size_teachers(
            individuals=sizing["individuals"],
            records=sizing["records"],
            classes=options["classes"],
            **common_options,
        )


def render_sizing(result: SizingResult, as_json: bool) -> None:
    """Print a sizing table and its recommendation (the command's output with --private)."""
    if as_json:
        return common.echo_json(result.to_dict())
    out = common.console()
    out.print(
        f"Sizing for {result.individuals} individuals ({result.records} records), "
        f"{result.classes} classes, epsilon={result.epsilon:g} at delta={result.delta:g}",
        markup=False,
    )
    out.print(f"The estimate rests on {result.assumption}.", markup=False)
    for row in result.rows:
        out.print(
            f"{row.teachers:5d} teachers: {row.individuals_per_teacher:8.1f} individuals and "
            f"{row.records_per_teacher:9.1f} records each; GNMax sigma {row.sigma:7.2f} buys "
            f"{row.queries} answers",
            markup=False,
        )
        for warning in row.warnings:
            out.print(f"      warning: {warning}", markup=False)
    advice = common.as_flags(result.advice, {**FLAGS, "public_size": "--public (or --public-size)"})
    out.print(f"Suggested: {advice}" if result.recommended is not None else advice, markup=False)


#: Field -> flag, for library errors (`public_size` -> --public-size).
FLAGS = common.flags_of(command)
