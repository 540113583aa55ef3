"""``pate run PIPELINE.toml``: the stages' jobs from one file, run in order, resuming what is finished."""

from __future__ import annotations

import click

from cli import common


@click.command("run")
@click.argument("pipeline_path", metavar="PIPELINE.toml", required=False, type=click.Path())
@click.option(
    "--print-config",
    is_flag=True,
    help="Print a pipeline file with every stage's fields and their defaults, and exit.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what each stage did as JSON.")
def command(pipeline_path: str | None, print_config: bool, as_json: bool) -> None:
    """Run the stages a pipeline file names (dataset, partition, train_teachers,
    label_and_distill), in that order; a stage whose output is complete is skipped.

    Each table holds the fields of that stage's job, as `pate run --print-config` lists them.

    \b
    Example:
      pate run --print-config > pipeline.toml   # edit the paths, then
      pate run pipeline.toml
    """
    from pate.errors import PateError
    from pate.pipeline import default_config, load_pipeline, run_pipeline

    if print_config:
        click.echo(default_config(), nl=False)
        return
    if pipeline_path is None:
        raise PateError("PIPELINE.toml: missing, expected a pipeline file (or --print-config)")
    pipeline = load_pipeline(pipeline_path)
    done: dict[str, str] = {}

    def on_stage(stage: str, status: str, result) -> None:
        done[stage] = status
        if not as_json:
            common.console().print(f"{stage}: {status}")

    with common.fields_as_flags({}):
        run_pipeline(pipeline, on_stage=on_stage)
    if as_json:
        common.echo_json({"pipeline": str(pipeline.path), "stages": done})
