"""``pate plan``: noise parameters from a privacy budget (data-independent worst case).

Parse, call :func:`~pate.accounting.plan`, render. Defaults and choices are the library's.
"""

from __future__ import annotations

from functools import partial

import click

from cli import common
from pate.accounting import CONVERSIONS, ORDER_LISTS, PLAN_MECHANISMS, PlanResult, plan

HELP = {
    "epsilon": "Target epsilon of the whole run.",
    "delta": "Target delta.",
    "queries": "Number of student queries.",
    "teachers": "Number of teachers.",
    "classes": "Number of classes.",
    "mechanism": "Which aggregator to plan for.",
    "answered_fraction": "Confident-GNMax: at most this fraction of the queries gets an answer.",
    "threshold": "Confident-GNMax: threshold T (default 80% of the teachers).",
    "threshold_share": "Confident-GNMax: share of the budget spent on threshold checks.",
    "orders": "Renyi orders.",
    "conversion": "RDP to (epsilon, delta) conversion.",
    "as_json": "Print one JSON object.",
}
option = partial(common.field_option, HELP)


@click.command("plan", context_settings={"show_default": True})
@option("--epsilon", type=float, required=True)
@option("--delta", field_of=plan, type=float)
@option("--queries", type=int, required=True)
@option("--teachers", type=int, required=True)
@option("--classes", type=int, required=True)
@option("--mechanism", field_of=plan, type=click.Choice(PLAN_MECHANISMS))
@option("--answered-fraction", field_of=plan, type=float)
@option("--threshold", type=float)
@option("--threshold-share", field_of=plan, type=float)
@option("--orders", field_of=plan, type=click.Choice(ORDER_LISTS))
@option("--conversion", field_of=plan, type=click.Choice(CONVERSIONS))
@option("--json", "as_json", is_flag=True)
def command(as_json: bool, **options) -> None:
    """Suggest the noise that keeps a run within a privacy budget.

    Uses the data-independent worst case, the only bound known before any vote is cast: sigma for
    GNMax, and T, sigma1, sigma2 for Confident-GNMax. Prints the epsilon the suggestion reaches.

    \b
    Example:
      pate plan --epsilon 2 --delta 1e-5 --queries 1000 --teachers 250 --classes 10 \\
          --answered-fraction 0.4
    """
    result = plan(**options)
    if as_json:
        return common.echo_json(result.to_dict())
    render(result)


def render(result: PlanResult) -> None:
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
