"""Small helpers shared by the command modules: output formats and option types."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from pate.errors import PateError
from pate.io import json_default
from pate.model_ref import REFERENCE_FORM, is_well_formed


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
NATURAL_INT = click.IntRange(min=0)


def field_option(help: dict[str, str], flag: str, *decls: str, field_of: Any = None, **kwargs):
    """An option for the configuration field ``decls[0]`` (default: named as the flag), with the
    field's ``help`` and, with ``field_of``, the default of that field of ``field_of`` (a dataclass)
    or of that parameter of ``field_of`` (a function)."""
    name = decls[0] if decls else flag.removeprefix("--").replace("-", "_")
    if field_of is not None:
        kwargs["default"] = default_of(field_of, name)
    return click.option(flag, *decls, help=help.get(name), **kwargs)


def default_of(owner: Any, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``owner``, or of parameter ``name`` of the
    function ``owner``."""
    if isinstance(owner, type):
        return getattr(owner, name)
    default = inspect.signature(owner).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{owner.__name__}: parameter {name!r} has no default")
    return default


def fields_of(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The options named after a field of the dataclass ``cls``."""
    return {f.name: options[f.name] for f in dataclasses.fields(cls) if f.name in options}


class ModelChoice(click.ParamType):
    """One of ``choices`` or a reference ``package.module:factory`` to the user's flax module factory.

    Only the reference's form is checked here (importing it would import JAX and the user's code at
    parse time); the library imports it and says what is wrong as one line naming `factory`.
    """

    name = "model"

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = tuple(choices)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "[" + "|".join((*self.choices, REFERENCE_FORM)) + "]"

    def convert(self, value, param, ctx):  # noqa: ANN001 (click's signature)
        if value in self.choices or is_well_formed(value):
            return value
        self.fail(
            f"{value!r}, expected one of {', '.join(self.choices)} or a model factory "
            f"{REFERENCE_FORM}",
            param,
            ctx,
        )


def parse_widths(text: str) -> tuple[int, ...]:
    """``64,64`` -> (64, 64); ``none`` -> () (a linear model)."""
    if text.strip().lower() in ("none", "linear", "0"):
        return ()
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r}, expected comma-separated integers such as 64,64, or none"
        ) from None
    if not widths or min(widths) < 1:
        raise click.BadParameter(f"{text!r}, expected positive widths such as 64,64, or none")
    return widths


def parse_devices(text: str) -> int:
    """``4`` -> 4; ``all`` -> every local device (asks JAX)."""
    if text == "all":
        import jax

        return jax.local_device_count()
    if not text.isdigit() or int(text) < 1:
        raise click.BadParameter(f"{text!r}, expected a positive integer or 'all'")
    return int(text)


def widths_text(widths: tuple[int, ...]) -> str:
    """The inverse of :func:`parse_widths`: (64, 64) -> ``64,64``; () -> ``none``."""
    return ",".join(map(str, widths)) or "none"


def flags_of(command: click.Command) -> dict[str, str]:
    """Parameter name -> how the user spells it: an option's first flag (``--teacher-chunk``), an
    argument's metavar (``PRIVATE.h5``)."""
    return {
        param.name: param.opts[0]
        if isinstance(param, click.Option)
        else param.metavar or param.name.upper()
        for param in command.params
        if param.name
    }


def as_flags(text: str, flags: dict[str, str]) -> str:
    """``text`` with each field in backquotes, as `teacher_chunk`, said as the command's flag
    (``flags``: field -> flag; other fields lose their quotes only)."""
    return re.sub(r"`(\w+)`", lambda match: flags.get(match[1], match[1]), text)


@contextmanager
def fields_as_flags(flags: dict[str, str]) -> Iterator[None]:
    """Library errors name a configuration field in backquotes, as `teacher_chunk`; say it as the
    command's flag instead (``flags``: field -> flag; other fields lose their quotes only)."""
    try:
        yield
    except PateError as error:
        raise PateError(as_flags(str(error), flags), exit_code=error.exit_code) from None


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
