"""Small helpers shared by the command modules: output formats and option types."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pate.io import json_default


def echo_json(payload: Any) -> None:
    """Print one JSON object on stdout."""
    click.echo(json.dumps(payload, indent=2, sort_keys=False, default=json_default))


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def console(stderr: bool = False):
    """A rich console (imported lazily so `--help` stays fast)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
POSITIVE_INT = click.IntRange(min=1)


class progress_bar:  # noqa: N801 (used as a context manager, like open())
    """A rich progress bar on stderr, quiet when stderr is not a terminal (or ``quiet``).

    Used as ``with progress_bar("teachers", total) as advance: advance(done, total)``;
    ``advance(done, total, description="...")`` also updates the label. The bar shows done/total,
    the throughput in ``unit`` per second, the elapsed time and the ETA.
    """

    def __init__(
        self, description: str, total: int, *, unit: str = "", quiet: bool = False
    ) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.quiet = quiet
        self._progress = None

    def __enter__(self):
        if self.quiet or not stderr_is_terminal():
            return lambda done, total, description=None: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
        ]
        if self.unit:
            columns.append(
                TextColumn(f"{{task.fields[rate]}} {self.unit}/s", justify="right"),
            )
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        self._progress = Progress(*columns, console=console(stderr=True), transient=True)
        self._progress.__enter__()
        task = self._progress.add_task(self.description, total=self.total, rate="-")

        def advance(done: int, total: int, description: str | None = None) -> None:
            speed = self._progress.tasks[0].speed
            fields = {"rate": f"{speed:,.0f}" if speed else "-"}
            if description is not None:
                fields["description"] = description
            self._progress.update(task, completed=done, total=total, **fields)

        return advance

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
