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
