"""``pate run PIPELINE.toml``: the stages' jobs from one file, checked, run in order, resuming what is
finished.

Parse, call :func:`~pate.pipeline.run_pipeline`, and render each stage's result with its own
command's renderer (so a stage prints what its command prints, warnings included), then the
release's summary as ``pate inspect`` shows it.
"""

from __future__ import annotations

import warnings
from typing import Any

import click

from cli import common


@click.command("run")
@click.argument("pipeline_path", metavar="PIPELINE.toml", required=False, type=click.Path())
@click.option(
    "--print-config",
    is_flag=True,
    help="Print a pipeline file that runs as printed (a small adas demo, with comments naming "
    "what to change and every other field with its default), and exit.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print what each stage did and the release as JSON."
)
def command(pipeline_path: str | None, print_config: bool, as_json: bool) -> None:
    """Run the stages a pipeline file names (dataset, partition, train_teachers,
    label_and_distill), in that order, after checking them all (inputs, outputs, and that a finished
    stage was made with the file's parameters: it is then skipped; a changed one is refused).

    Each table holds the fields of that stage's job, as `pate run --print-config` lists them;
    relative paths are read from the file's folder.

    \b
    Example:
      pate run --print-config > pipeline.toml   # a small demo; edit what the comments name
      pate run pipeline.toml
    """
    from pate.errors import PateError, PrivateDataWarning
    from pate.pipeline import default_config, load_pipeline, run_pipeline

    if print_config:
        click.echo(default_config(), nl=False)
        return
    if pipeline_path is None:
        raise PateError("PIPELINE.toml: missing, expected a pipeline file (or --print-config)")
    pipeline = load_pipeline(pipeline_path)
    done: dict[str, str] = {}
    summaries: dict[str, Any] = {}
    progress = _Progress(pipeline, quiet=as_json)

    def on_stage(stage: str, status: str, result) -> None:
        progress.close()
        done[stage] = status
        if status == "skipped":
            if not as_json:
                common.console().print(f"{stage}: skipped (finished, made with these parameters)")
            return
        summaries[stage] = _render(stage, getattr(pipeline, stage), result, as_json)

    with common.fields_as_flags({}):

        def on_start(stage: str) -> None:
            if not as_json:
                common.console().print(f"[bold]{stage}[/]: running")

        try:
            with warnings.catch_warnings():  # each stage's private warnings are printed plainly
                warnings.simplefilter("ignore", PrivateDataWarning)
                run_pipeline(pipeline, on_stage=on_stage, progress=progress, on_start=on_start)
        finally:
            progress.close()
        release = None
        if pipeline.label_and_distill is not None:
            from pate.inspection import inspect

            release = inspect(pipeline.label_and_distill.out)
    if as_json:
        common.echo_json(
            {
                "pipeline": str(pipeline.path),
                "stages": done,
                "results": summaries,
                "release": None if release is None else release.summary(),
            }
        )
    elif release is not None:
        from cli import inspect as inspect_command

        inspect_command.render(str(pipeline.label_and_distill.out), release, None)


def _render(stage: str, job, result, as_json: bool) -> dict:
    """The stage's result as its command renders it (nothing with ``--json``); its JSON summary."""
    if stage == "dataset":
        from cli import dataset

        if not as_json:
            dataset.render(result, False)
        return {split: info.to_dict() for split, info in result.items()}
    if stage == "partition":
        from cli import partition

        if not as_json:
            partition.render(result, {"as_json": False, "input": job.input, "out": job.out})
        return result.summary()
    if stage == "train_teachers":
        from cli import train_teachers

        if not as_json:
            train_teachers.render(result, False)
        return result.summary()
    from cli import label_and_distill

    label_and_distill.print_private_warnings(result)
    if not as_json:
        label_and_distill.render(result, False)
    return result.summary()


class _Progress:
    """Each long stage's phases, as its command shows them (quiet with ``--json``; one line per phase
    when stderr is not a terminal): ``progress(stage)`` opens the stage's phases and gives its hooks."""

    def __init__(self, pipeline, *, quiet: bool) -> None:
        self.pipeline, self.quiet, self.phases = pipeline, quiet, None

    def close(self) -> None:
        if self.phases is not None:
            self.phases.__exit__(None, None, None)
            self.phases = None

    def __call__(self, stage: str) -> dict:
        self.close()
        if stage == "train_teachers":
            from cli import train_teachers as command
        else:
            from cli import label_and_distill as command
        unit = "steps" if stage == "train_teachers" else ""
        self.phases = common.Phases(unit=unit, quiet=self.quiet).__enter__()
        return command.callbacks(self.phases)
