"""Entry point of the ``pate`` command.

Each command lives in its own module of this package and exposes a ``command`` object. Library errors
(:class:`pate.errors.PateError`) become a one-line ``error:`` message on stderr and a non-zero exit status,
never a traceback.
"""

from __future__ import annotations

import importlib
import sys

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
        try:
            return super().invoke(ctx)
        except PateError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)


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
    app.main(args=argv, prog_name="pate", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
