"""Small helpers shared by the command modules: output formats and option types."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def echo_json(payload: Any) -> None:
    """Print one JSON object on stdout."""
    click.echo(json.dumps(payload, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def console(stderr: bool = False):
    """A rich console (imported lazily so `--help` stays fast)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
POSITIVE_INT = click.IntRange(min=1)


class progress_bar:  # noqa: N801 (used as a context manager, like open())
    """A rich progress bar on stderr, quiet when stderr is not a terminal.

    Used as ``with progress_bar("teachers", total) as advance: advance(done, total)``.
    """

    def __init__(self, description: str, total: int) -> None:
        self.description = description
        self.total = total
        self._progress = None

    def __enter__(self):
        if not stderr_is_terminal():
            return lambda done, total: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console(stderr=True),
            transient=True,
        )
        self._progress.__enter__()
        task = self._progress.add_task(self.description, total=self.total)
        return lambda done, total: self._progress.update(task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
