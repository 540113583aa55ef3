"""``pate inspect``: the privacy budget spent by a workspace or a release.

Parse, call :func:`~pate.inspection.inspect`, render; library errors name arguments, said here as flags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli import common

if TYPE_CHECKING:
    from pate.inspection import Inspection


@click.command("inspect")
@click.argument("path", metavar="WORKSPACE_OR_RELEASE", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a PNG: epsilon against queries answered, and the vote margins (a workspace: "
    "private) or the answers per class (a release).",
)
def command(path: str, as_json: bool, plot: str | None) -> None:
    """Show the privacy budget spent: epsilon at delta, queries, mechanism and accountant.

    A workspace (private) is recomputed from its ledger and also shows the data-dependent epsilon;
    a release shows only what was published.

    \b
    Example:
      pate inspect run/release
      pate inspect run/workspace --json --plot budget.png
    """
    from pate.inspection import inspect

    with common.fields_as_flags(FLAGS):
        inspection = inspect(path, plot=plot)
    if as_json:
        return common.echo_json(inspection.summary())
    render(path, inspection, plot)


#: Argument -> flag, for library errors (`plot` -> --plot, `path` -> WORKSPACE_OR_RELEASE).
FLAGS = common.flags_of(command)


def render(path: str, inspection: Inspection, plot: str | None) -> None:
    """Print the inspection (the command's output)."""
    from rich.table import Table

    report = inspection.report
    table = Table(
        title=f"Privacy budget of {path} ({inspection.kind})",
        title_justify="left",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column()
    params = ", ".join(f"{k}={v:g}" for k, v in report["parameters"].items())
    dd = report.get("epsilon_data_dependent")
    rows = [
        ("mechanism", f"{report['mechanism']} ({params})"),
        ("teachers", str(report["num_teachers"])),
        (
            "queries seen / answered / rejected",
            f"{report['queries_seen']} / {report['queries_answered']} / {report['queries_rejected']}",
        ),
        (
            "epsilon (publishable, data-independent)",
            f"{report['epsilon']:.4f} at delta = {report['delta']:g}",
        ),
        (
            "epsilon data-dependent",
            "not released" if dd is None else f"{dd:.4f} (private-internal, do not publish)",
        ),
        (
            "epsilon released (smooth sensitivity)",
            "not offered for discrete noise (PATE 2018 App. B assumes Gaussian tails)",
        ),
        (
            "budget",
            " -> ".join(f"{b:g}" for b in report.get("max_epsilon_history") or [])
            or f"{report['max_epsilon']:g}",
        ),
        ("optimal order", f"{report['order']:g}"),
        ("accountant", report["accountant"]),
        ("noise", report["noise"] + ("" if report["private"] else "  [NOT PRIVATE]")),
    ]
    public_records = report.get("public_records")
    if isinstance(public_records, int):
        rows.insert(
            3,
            ("public records labelled", f"{report['queries_answered']} of {public_records}"),
        )
    accuracy, majority = report.get("student_test_accuracy"), report.get("test_majority_rate")
    if isinstance(accuracy, (int, float)) and isinstance(majority, (int, float)):
        from pate.report import accuracy_text, beats_majority

        n = report.get("test_records")
        if isinstance(n, int) and n > 0:  # releases made before test_records was recorded: plain
            shown, beats = accuracy_text(accuracy, n), beats_majority(accuracy, n, majority)
        else:
            shown, beats = f"{accuracy:.4f}", accuracy > majority
        verdict = "" if beats else "  [does not beat the majority rate significantly]"
        rows.append(("student test accuracy", f"{shown} (majority rate {majority:.4f}){verdict}"))
    for name, value in rows:
        table.add_row(name, value)
    out = common.console()
    out.print(table)
    if report.get("ledger_damage"):
        out.print(f"[bold red]LEDGER DAMAGED: {report['ledger_damage']}[/]")
        out.print("[bold red]The epsilon above under-counts what was spent.[/]")
    out.print(report["statement"])
    if plot:
        out.print(f"plot written to {plot}")
