"""``pate analyze``: the PATE privacy analysis of a file of vote histograms."""

from __future__ import annotations

import click

from cli.common import console, echo_json


@click.command("analyze")
@click.argument("votes_path", metavar="VOTES", type=click.Path(dir_okay=False))
@click.option(
    "--mechanism",
    type=click.Choice(["gnmax", "confident-gnmax", "lnmax"]),
    default="gnmax",
    show_default=True,
    help="The aggregator that answered the queries.",
)
@click.option("--sigma", type=float, help="GNMax: standard deviation of the Gaussian noise.")
@click.option("--threshold", type=float, help="Confident-GNMax: the threshold T on the top count.")
@click.option("--sigma1", type=float, help="Confident-GNMax: noise of the threshold check.")
@click.option("--sigma2", type=float, help="Confident-GNMax: noise of the answer.")
@click.option("--scale", type=float, help="LNMax: scale of the Laplace noise (gamma = 1/scale).")
@click.option("--teachers", type=int, help="Number of teachers; every row must sum to it.")
@click.option(
    "--delta",
    "deltas",
    type=float,
    multiple=True,
    help="Target delta (repeatable; default 1e-5).",
)
@click.option(
    "--orders",
    type=click.Choice(["paper", "default"]),
    default="default",
    show_default=True,
    help="Renyi orders: the PATE 2018 scripts' list or ours (denser, wider).",
)
@click.option(
    "--conversion",
    type=click.Choice(["classic", "improved"]),
    default="improved",
    show_default=True,
    help="RDP to (epsilon, delta): the papers' or Balle et al. 2020's.",
)
@click.option(
    "--smooth-sensitivity",
    is_flag=True,
    help="Also compute the smooth-sensitivity release of the data-dependent epsilon.",
)
@click.option(
    "--answered",
    "answered_path",
    type=click.Path(dir_okay=False),
    help="Confident-GNMax: which queries were answered (.npy or HDF5 'answered', one 0/1 per row).",
)
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(dir_okay=False),
    help="Interactive-GNMax: student baseline subtracted before the threshold check (same shape).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(
    votes_path: str,
    mechanism: str,
    sigma: float | None,
    threshold: float | None,
    sigma1: float | None,
    sigma2: float | None,
    scale: float | None,
    teachers: int | None,
    deltas: tuple[float, ...],
    orders: str,
    conversion: str,
    smooth_sensitivity: bool,
    answered_path: str | None,
    baseline_path: str | None,
    as_json: bool,
) -> None:
    """Privacy cost (epsilon, delta) of answering the queries in VOTES with an aggregator.

    VOTES is a .npy file or an HDF5 file with a 'votes' dataset: integer vote counts, one row per
    query, one column per class. Reports the data-independent epsilon (a guarantee as such) and the
    data-dependent one of the PATE papers (it depends on the private votes: publish it only through
    --smooth-sensitivity).

    \b
    Examples:
      pate analyze run/workspace/votes.h5 --mechanism gnmax --sigma 40
      pate analyze votes.npy --mechanism confident-gnmax --threshold 200 \\
          --sigma1 150 --sigma2 40 --delta 1e-5 --delta 1e-6 --orders paper --json
    """
    from pate.accounting import analyze
    from pate.accounting._numerics import check_votes
    from pate.accounting.files import read_array, read_votes

    votes = check_votes(read_votes(votes_path), name=votes_path, teachers=teachers)
    answered = read_array(answered_path, "answered") if answered_path else None
    baseline = read_array(baseline_path, "baseline") if baseline_path else None
    report = analyze(
        votes,
        mechanism=mechanism,
        sigma=sigma,
        threshold=threshold,
        sigma1=sigma1,
        sigma2=sigma2,
        scale=scale,
        teachers=teachers,
        delta=list(deltas) if len(deltas) > 1 else (deltas[0] if deltas else 1e-5),
        orders=orders,
        conversion=conversion,
        smooth_sensitivity=smooth_sensitivity,
        answered=answered,
        baseline=baseline,
    )
    if as_json:
        echo_json(report.to_dict())
        return
    _print_report(votes_path, report)


def _print_report(votes_path: str, report) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    parameters = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in report.parameters.items()
    )
    out.print(
        f"PATE analysis of {votes_path}: {report.queries} queries, {report.mechanism} ({parameters})",
        markup=False,
    )
    orders_label = report.orders_name or "custom"
    out.print(
        f"Renyi orders: {orders_label} ({report.orders.size}, "
        f"{report.orders.min():g}..{report.orders.max():g}); conversion: {report.conversion}"
    )
    table = Table(title_justify="left")
    table.add_column("bound")
    table.add_column("delta", justify="right")
    table.add_column("epsilon", justify="right")
    table.add_column("order", justify="right")
    rows = [("data-independent", report.data_independent)]
    if report.data_independent_all_answered is not None:
        rows.append(("data-independent, all answered", report.data_independent_all_answered))
    rows.append(("data-dependent", report.data_dependent))
    if report.realised is not None:
        rows.append(("realised data-independent", report.realised.data_independent))
        rows.append(("realised data-dependent", report.realised.data_dependent))
    for label, results in rows:
        for delta, result in zip(report.deltas, results, strict=True):
            table.add_row(label, f"{delta:g}", f"{result.epsilon:.6g}", f"{result.order:g}")
    out.print(table)
    if report.expected_answered is not None:
        out.print(
            f"Expected answered: {report.expected_answered:.2f} of {report.queries}. The first and "
            "data-dependent rows are expectations over the threshold noise (PATE 2018's convention)."
        )
        if report.realised is not None:
            out.print(
                f"Realised: {report.realised.answered} answered; the realised rows are exact."
            )
    if report.moments_2017 is not None:
        for analysis in report.moments_2017:
            out.print(
                f"PATE 2017 moments accountant (gamma={analysis.gamma:g}) at delta={analysis.delta:g}: "
                f"epsilon {analysis.epsilon:.6g} (moment {analysis.moment:g}); data-independent "
                f"{analysis.data_independent_epsilon:.6g}"
            )
            if analysis.smoothed_sensitivity is not None:
                index = int(analysis.epsilon_per_moment.argmin())
                out.print(
                    f"  smoothed sensitivity (beta={analysis.beta:g}): "
                    f"{analysis.smoothed_sensitivity[index]:.4g} at that moment"
                )
    if report.smooth_sensitivity is not None:
        for delta, release in zip(report.deltas, report.smooth_sensitivity, strict=True):
            if release.sensitivity == 0:
                out.print(
                    f"Smooth sensitivity at delta={delta:g}: nothing to add, the data-dependent bound "
                    f"is data-independent at order {release.order:g}."
                )
                continue
            out.print(
                f"Smooth-sensitivity release at delta={delta:g}, order {release.order:g}: "
                f"beta={release.beta:.4g}, SS={release.sensitivity:.4g}, noise sigma="
                f"{release.noise_sigma:.4g} (std {release.noise_std:.4g}); epsilon "
                f"{release.epsilon_before:.6g} -> {release.epsilon_with_release:.6g} with the release"
            )
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    if report.smooth_sensitivity is None and report.mechanism != "lnmax":
        out.print(
            "The data-dependent epsilon depends on the private votes: publish the data-independent "
            "one, or the data-dependent one through --smooth-sensitivity."
        )
