"""``pate analyze``: the PATE privacy analysis of a file of vote histograms.

Parse, call :func:`~pate.accounting.analyze_file`, render. Defaults and choices are the library's;
its notes name options, said here as flags.
"""

from __future__ import annotations

from functools import partial

import click

from cli import common
from pate.accounting import CONVERSIONS, MECHANISMS, ORDER_LISTS, AnalysisReport, analyze_file
from pate.accounting import analyze as analyze_votes

FILE = click.Path(dir_okay=False)
HELP = {
    "mechanism": "The aggregator that answered the queries [default: gnmax; a workspace's own].",
    "sigma": "GNMax: standard deviation of the Gaussian noise.",
    "threshold": "Confident-GNMax: the threshold T on the top count.",
    "sigma1": "Confident-GNMax: noise of the threshold check.",
    "sigma2": "Confident-GNMax: noise of the answer.",
    "scale": "LNMax: scale of the Laplace noise (gamma = 1/scale).",
    "teachers": "Number of teachers; every row must sum to it.",
    "deltas": "Target delta (repeatable) [default: "
    f"{common.default_of(analyze_votes, 'delta'):g}; a workspace's own].",
    "orders": "Renyi orders: the PATE 2018 scripts' list or ours (denser, wider) [default: "
    f"{common.default_of(analyze_votes, 'orders')}; a workspace's own].",
    "conversion": "RDP to (epsilon, delta): the papers' or Balle et al. 2020's [default: "
    f"{common.default_of(analyze_votes, 'conversion')}; a workspace's own].",
    "smooth_sensitivity": "Also compute the smooth-sensitivity release of the data-dependent "
    "epsilon.",
    "answered": "Confident-GNMax: which queries were answered (.npy or HDF5 'answered', one 0/1 per "
    "row).",
    "baseline": "Interactive-GNMax: student baseline subtracted before the threshold check (same "
    "shape).",
    "as_json": "Print one JSON object.",
}
option = partial(common.field_option, HELP)


@click.command("analyze")
@click.argument("votes", metavar="VOTES", type=click.Path())
@option("--mechanism", type=click.Choice(MECHANISMS))
@option("--sigma", type=float)
@option("--threshold", type=float)
@option("--sigma1", type=float)
@option("--sigma2", type=float)
@option("--scale", type=float)
@option("--teachers", type=int)
@option("--delta", "deltas", type=float, multiple=True)
@option("--orders", type=click.Choice(ORDER_LISTS))
@option("--conversion", type=click.Choice(CONVERSIONS))
@option("--smooth-sensitivity", is_flag=True)
@option("--answered", type=FILE)
@option("--baseline", type=FILE)
@option("--json", "as_json", is_flag=True)
def command(deltas: tuple[float, ...], as_json: bool, **options) -> None:
    """Privacy cost (epsilon, delta) of answering the queries in VOTES with an aggregator.

    VOTES is a .npy file or an HDF5 file with a 'votes' dataset: integer vote counts, one row per
    query, one column per class. A workspace (its folder or its votes.h5) is analysed on the
    queries its ledger charged (and, for Confident-GNMax, answered), with the ledger's mechanism,
    parameters, delta, orders and conversion unless given. Reports the data-independent epsilon (a guarantee as such) and the
    data-dependent one of the PATE papers (it depends on the private votes: publish it only through
    --smooth-sensitivity).

    \b
    Examples:
      pate analyze run/workspace
      pate analyze run/workspace/votes.h5 --mechanism gnmax --sigma 40
      pate analyze votes.npy --mechanism confident-gnmax --threshold 200 \\
          --sigma1 150 --sigma2 40 --delta 1e-5 --delta 1e-6 --orders paper --json
    """
    if deltas:  # one --delta: one result; several: a list of results
        options["delta"] = list(deltas) if len(deltas) > 1 else deltas[0]
    with common.fields_as_flags(FLAGS):
        report = analyze_file(**options)
    if as_json:
        return common.echo_json(report.to_dict())
    render(options["votes"], report)


#: Option -> flag (`smooth_sensitivity` -> --smooth-sensitivity).
FLAGS = common.flags_of(command)


def render(votes_path: str, report: AnalysisReport) -> None:
    """Print the analysis (the command's output)."""
    from rich.markup import escape
    from rich.table import Table

    out = common.console()
    parameters = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in report.parameters.items()
    )
    asked = (
        f"the {report.queries} queries its ledger charged (of {report.workspace_rows} rows)"
        if report.workspace_rows is not None
        else f"{report.queries} queries"
    )
    out.print(
        f"PATE analysis of {votes_path}: {asked}, {report.mechanism} ({parameters})", markup=False
    )
    out.print(
        f"Renyi orders: {report.orders_name or 'custom'} ({report.orders.size}, "
        f"{report.orders.min():g}..{report.orders.max():g}); conversion: {report.conversion}"
    )
    table = Table(title_justify="left")
    for name, justify in (("bound", "left"), ("delta", "right"), ("epsilon", "right")):
        table.add_column(name, justify=justify)
    table.add_column("order", justify="right")
    for label, delta, result in report.bounds():
        table.add_row(label, f"{delta:g}", f"{result.epsilon:.6g}", f"{result.order:g}")
    out.print(table)
    for note in report.notes():
        out.print(common.as_flags(note, FLAGS), markup=False)
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
