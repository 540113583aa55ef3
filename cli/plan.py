"""``pate plan``: noise parameters from a privacy budget (data-independent worst case)."""

from __future__ import annotations

import click

from cli.common import console, echo_json


@click.command("plan")
@click.option("--epsilon", type=float, required=True, help="Target epsilon of the whole run.")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="Target delta.")
@click.option("--queries", type=int, required=True, help="Number of student queries.")
@click.option("--teachers", type=int, required=True, help="Number of teachers.")
@click.option("--classes", type=int, required=True, help="Number of classes.")
@click.option(
    "--mechanism",
    type=click.Choice(["gnmax", "confident-gnmax", "all"]),
    default="all",
    show_default=True,
    help="Which aggregator to plan for.",
)
@click.option(
    "--answered-fraction",
    type=float,
    default=1.0,
    show_default=True,
    help="Confident-GNMax: at most this fraction of the queries gets an answer.",
)
@click.option(
    "--threshold",
    type=float,
    help="Confident-GNMax: threshold T (default 80% of the teachers).",
)
@click.option(
    "--threshold-share",
    type=float,
    default=0.1,
    show_default=True,
    help="Confident-GNMax: share of the budget spent on threshold checks.",
)
@click.option(
    "--orders",
    type=click.Choice(["paper", "default"]),
    default="default",
    show_default=True,
    help="Renyi orders.",
)
@click.option(
    "--conversion",
    type=click.Choice(["classic", "improved"]),
    default="improved",
    show_default=True,
    help="RDP to (epsilon, delta) conversion.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(
    epsilon: float,
    delta: float,
    queries: int,
    teachers: int,
    classes: int,
    mechanism: str,
    answered_fraction: float,
    threshold: float | None,
    threshold_share: float,
    orders: str,
    conversion: str,
    as_json: bool,
) -> None:
    """Suggest the noise that keeps a run within a privacy budget.

    Uses the data-independent worst case, the only bound known before any vote is cast: sigma for
    GNMax, and T, sigma1, sigma2 for Confident-GNMax. Prints the epsilon the suggestion reaches.

    \b
    Example:
      pate plan --epsilon 2 --delta 1e-5 --queries 1000 --teachers 250 --classes 10 \\
          --answered-fraction 0.4
    """
    from pate.accounting import plan

    result = plan(
        epsilon=epsilon,
        delta=delta,
        queries=queries,
        teachers=teachers,
        classes=classes,
        mechanism=mechanism,
        answered_fraction=answered_fraction,
        threshold=threshold,
        threshold_share=threshold_share,
        orders=orders,
        conversion=conversion,
    )
    if as_json:
        echo_json(result.to_dict())
        return
    from rich.markup import escape

    out = console()
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
