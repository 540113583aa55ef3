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


#: Width of the console when its stream is not a terminal: wide enough that no table row or line is
#: wrapped when the output is piped or captured (a terminal uses its own width).
PIPED_WIDTH = 10_000


def console(stderr: bool = False):
    """A rich console (imported lazily so `--help` stays fast). When its stream is not a terminal,
    lines and tables are never wrapped (rich would otherwise wrap them at 80 columns, mid-row)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    terminal = hasattr(stream, "isatty") and stream.isatty()
    return Console(
        stderr=stderr,
        highlight=False,
        width=None if terminal else PIPED_WIDTH,
        soft_wrap=not terminal,
    )


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


class Phases:
    """Progress a user can read, on stderr: one phase at a time (compiling, answering, training...),
    each with its elapsed time.

    On a terminal: a live line (a bar when the phase has a total, else a spinner) with the elapsed
    time, and when a phase ends a line ``<phase>: done in 12.3 s`` above it. When stderr is not a
    terminal (piped, a log file): one line when a phase starts and one when it ends, nothing else.
    ``quiet``: nothing at all.

    ``with Phases() as phases: phases.start("answering queries", total); phases.advance(done)``;
    starting a phase ends the one before, leaving the ``with`` ends the last.
    """

    def __init__(
        self, *, unit: str = "", quiet: bool = False, terminal: bool | None = None
    ) -> None:
        self.unit = unit
        self.quiet = quiet
        self.terminal = stderr_is_terminal() if terminal is None else terminal
        self.current: str | None = None
        self._started = 0.0
        self._progress = None
        self._task = None

    def __enter__(self) -> Phases:
        if self.quiet or not self.terminal:
            return self
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),  # done/total, the rate and the ETA, once known
            TimeElapsedColumn(),
        ]
        self._progress = Progress(*columns, console=console(stderr=True), transient=True)
        self._progress.__enter__()
        return self

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text, err=True)

    def start(self, name: str, total: int | None = None) -> None:
        """End the current phase (if any) and start ``name`` (``total`` units, or unknown)."""
        import time

        self.end()
        if self.quiet:
            return
        self.current, self._started = name, time.monotonic()
        if self._progress is not None:
            self._task = self._progress.add_task(name, total=total or None, detail="")
        else:
            self._say(f"{name} ...")

    def advance(self, done: int, total: int | None = None, description: str | None = None) -> None:
        """Progress within the current phase (shown on a terminal only)."""
        if self._progress is None or self._task is None:
            return
        fields: dict = {}
        if description is not None:
            fields["description"] = f"{self.current}: {description}"
        if total:
            fields["total"] = total
        self._progress.update(self._task, completed=done, **fields)
        task = next(t for t in self._progress.tasks if t.id == self._task)
        detail = f"{done:,}/{task.total:,.0f}" if task.total else f"{done:,}"
        if self.unit and task.speed:
            detail += f"  {task.speed:,.0f} {self.unit}/s"
        if task.total and task.time_remaining:
            minutes, seconds = divmod(int(task.time_remaining), 60)
            detail += f"  ETA {minutes}:{seconds:02d}"
        self._progress.update(self._task, detail=detail)

    def end(self) -> None:
        """End the current phase with a line saying how long it took."""
        import time

        if self.current is None:
            return
        elapsed = time.monotonic() - self._started
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._say(f"{self.current}: done in {elapsed:.1f} s")
        self.current = None

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.end()
        else:
            self.current = None  # an error: no "done" line
        if self._progress is not None:
            self._progress.__exit__(exc_type, *exc)
            self._progress = None
