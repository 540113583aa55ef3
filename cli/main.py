"""Entry point of the ``pate`` command.

Each command lives in its own module of this package and exposes a ``command`` object. Library errors
(:class:`pate.errors.PateError`) become a one-line ``error:`` message on stderr and a non-zero exit status,
never a traceback. An ``OSError`` no library code turned into one (a write on a full or read-only
disk) becomes ``error: <path>: cannot write (<reason>)`` and exit status 2.

Interruptions: SIGINT (Ctrl-C) ends a command with ``error: interrupted`` and exit status 130, SIGTERM
with ``error: terminated`` and 143 (128 + the signal number, as a shell reports a death by signal).
Both raise an exception in the main thread, so every temporary output is removed on the way out (see
:func:`pate.io.atomic_file`); a second signal while that cleanup runs is ignored. The process then
ends with ``os._exit``: an interrupt can leave an XLA compilation running on a background thread, and
the interpreter's normal teardown destroys the XLA client under it (a segmentation fault).
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import os
import signal
import sys
import threading

import click

from pate import __version__
from pate.errors import PateError

# Command modules, in the order of the pipeline. Each defines ``command``.
COMMAND_MODULES = (
    "dataset",
    "partition",
    "train_teachers",
    "label_and_distill",
    "inspect",
    "predict",
    "analyze",
    "plan",
    "audit",
    "run",
)


class PateGroup(click.Group):
    """A click group that loads command modules lazily and turns PateError into a clean exit."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name.replace("_", "-") for name in COMMAND_MODULES if _module_exists(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = cmd_name.replace("-", "_")
        if module_name not in COMMAND_MODULES or not _module_exists(module_name):
            return None
        return importlib.import_module(f"cli.{module_name}").command

    def invoke(self, ctx: click.Context):
        # ``_INTERRUPTS.done = ...`` are plain stores, where Python never raises a pending interrupt:
        # once the command has ended, a late signal can no longer turn its outcome into another.
        try:
            result = super().invoke(ctx)
        except PateError as exc:
            _INTERRUPTS.done = True
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a write the library did not wrap: a full or read-only disk...
            _INTERRUPTS.done = True
            from pate.outputs import write_error

            click.echo(f"error: {write_error(exc.filename or 'output', exc)}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt as exc:
            _INTERRUPTS.done = True
            terminated = isinstance(exc, Terminated)
            click.echo("error: terminated" if terminated else "error: interrupted", err=True)
            ctx.exit(143 if terminated else 130)
        _INTERRUPTS.done = True
        return result


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM: handled (and cleaned up after) as Ctrl-C is."""


class _Interrupts:
    """SIGINT and SIGTERM handlers that raise in the main thread, once, while a command runs.

    The first signal raises :class:`KeyboardInterrupt` (SIGINT) or :class:`Terminated` (SIGTERM);
    later ones, and any after the command has ended (``done``), are ignored so that the cleanup under
    way is not cut short. Python cannot propagate an exception raised inside a garbage-collector
    callback or a ``__del__`` (JAX runs one on every collection): it prints "Exception ignored" and
    goes on. Such a swallowed interrupt is delivered again 10 ms later instead of being printed.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.swallowed = False
        self.done = False

    def install(self) -> None:
        self.__init__()
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. nohup: stay ignored
                signal.signal(signum, self._raise)
        if sys.unraisablehook != self._unraisable:
            self._unraisablehook = sys.unraisablehook
            sys.unraisablehook = self._unraisable

    def _raise(self, signum, frame) -> None:
        if self.done or (self.signum is not None and not self.swallowed):
            return
        self.signum = self.signum or signum
        self.swallowed = False
        raise Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    def _unraisable(self, unraisable) -> None:
        if self.signum is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
            self.swallowed = True
            threading.Timer(0.01, _thread.interrupt_main, (self.signum,)).start()
            return
        self._unraisablehook(unraisable)


_INTERRUPTS = _Interrupts()


def _unclosable_files() -> bool:
    """Whether an HDF5 file whose write failed is still open (:func:`pate.io.h5_create`): the
    interpreter's teardown would close it into a segmentation fault, so the process ends with
    ``os._exit`` instead."""
    io = sys.modules.get("pate.io")
    return bool(io is not None and io._UNCLOSABLE)


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"cli.{name}") is not None


@click.group(cls=PateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pate")
def app() -> None:
    """PATE: train a model on private data with per-individual differential privacy.

    \b
    The pipeline:
      pate dataset adas --out data/adas
      pate partition data/adas/private.h5 --teachers 250 --out run/shards.h5
      pate train-teachers run/shards.h5 --out run/teachers --test data/adas/test.h5
      pate label-and-distill run/teachers --public data/adas/public.h5 \\
          --workspace run/workspace --out run/release --test data/adas/test.h5
      pate inspect run/release
    """


def main(argv: list[str] | None = None) -> None:
    _INTERRUPTS.install()
    try:
        app.main(args=argv, prog_name="pate", standalone_mode=True)
    except SystemExit as exc:
        if _INTERRUPTS.signum is None and not _unclosable_files():
            # The command ran to its end: a signal during the interpreter's teardown changes nothing
            # (and after Python restores the default handlers it would kill the process instead).
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            raise
        code = exc.code if isinstance(exc.code, int) else 1
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)  # skip the interpreter teardown (see the module docstring)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
