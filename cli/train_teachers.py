"""``pate train-teachers``: train one teacher per shard, all as one program over the teacher axis.

Parse, build a :class:`~pate.teachers.TeachersJob`, call :func:`~pate.teachers.train_teachers`, render.
Each option fills the job or training field it is named after and takes that field's default from
:mod:`pate.teachers.config`, as the choices; library errors name fields, said here as flags.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import click

from cli import common
from cli.common import NATURAL_INT, POSITIVE_FLOAT, POSITIVE_INT
from pate.teachers import config

if TYPE_CHECKING:
    from pate.teachers import Progress, TeachersResult

FILE, FOLDER = click.Path(dir_okay=False), click.Path(file_okay=False)
HELP = {
    "out": "Teachers folder to create (private; missing parents are made, 0700); one run at a "
    "time.",
    "model": "auto: cnn for images, mlp otherwise (public strategy: the head is an MLP). Or your "
    "own flax module: package.module:factory, factory(input_shape, num_classes) -> Module (called "
    "as module.apply({'params': p}, x), logits out; see pate.model_ref); the module must stay "
    "importable for label-and-distill.",
    "hidden": "MLP hidden widths, e.g. 256,256, or none [default: "
    f"{common.widths_text(config.DEFAULT_HIDDEN)}; public-strategy heads: "
    f"{common.widths_text(config.DEFAULT_HEAD_HIDDEN)}].",
    "weight_decay": "AdamW weight decay (0: Adam).",
    "seed": "Root of the key tree.",
    "strategy": "How the teacher axis is computed: loop (one dispatch per step), scan (one per "
    "epoch), vmap, fold (convolutions as batched matrix products), public (extractor learned from "
    "--public, per-teacher dense heads); auto: public with --public, else the measured winner.",
    "public": "Public unlabeled set to learn the shared feature extractor from (public strategy).",
    "devices": "Devices per process to lay the teacher axis over (a number or 'all').",
    "teacher_chunk": "Teachers trained (and read from disk) together; 0 sizes it from memory.",
    "test": "Labelled test set for per-teacher accuracy.",
    "checkpoint_dir": "Checkpoint folder (private) [default: OUT.checkpoints]; an interrupted run "
    "resumes from it, and it is removed after success.",
    "checkpoint_every": "Save the chunk in progress every this many epochs (0: only finished "
    "chunks).",
    "no_checkpoints": "Do not write checkpoints.",
    "coordinator": "Multi-host: address HOST:PORT of process 0's coordinator.",
    "num_processes": "Multi-host.",
    "process_id": "Multi-host.",
    "force": "Replace an existing teachers folder (never a dataset folder, a release...).",
    "as_json": "Print the report as JSON.",
}
JOB, TRAIN = config.TeachersJob, config.TrainConfig
option = partial(common.field_option, HELP)


@click.command("train-teachers", context_settings={"show_default": True})
@click.argument("shards", metavar="SHARDS.h5", type=FILE)
@option("--out", required=True, type=FOLDER)
@option("--model", field_of=JOB, type=common.ModelChoice(config.TEACHER_MODELS))
@option("--hidden")
@option("--epochs", field_of=TRAIN, type=POSITIVE_INT)
@option("--batch-size", field_of=TRAIN, type=POSITIVE_INT)
@option("--learning-rate", field_of=TRAIN, type=POSITIVE_FLOAT)
@option("--weight-decay", field_of=TRAIN, type=click.FloatRange(min=0))
@option("--seed", field_of=TRAIN, type=int)
@option("--strategy", field_of=TRAIN, type=click.Choice(config.STRATEGIES))
@option("--public", type=FILE)
@option("--devices", field_of=TRAIN, type=str)
@option("--teacher-chunk", field_of=TRAIN, type=NATURAL_INT)
@option("--test", type=FILE)
@option("--checkpoints", "checkpoint_dir", type=FOLDER)
@option("--checkpoint-every", field_of=JOB, type=NATURAL_INT)
@option("--no-checkpoints", is_flag=True)
@option("--coordinator")
@option("--num-processes", type=POSITIVE_INT, default=1)
@option("--process-id", type=NATURAL_INT, default=0)
@option("--force", field_of=JOB, is_flag=True)
@option("--json", "as_json", is_flag=True)
def command(**options) -> None:
    """Train one teacher per shard of SHARDS.h5 and save them, stacked, in --out.

    Each teacher sees only its own shard: batches are drawn from its own rows, padded rows weigh
    nothing, and its normalisation is fitted on its own records. With --public, a feature extractor
    is first learned from the public unlabeled set alone (no private record touches it), and each
    teacher is a dense head on its features.

    \b
    Examples:
      pate train-teachers run/shards.h5 --out run/teachers --test data/adas/test.h5
      pate train-teachers run/mnist-shards.h5 --out run/teachers --public data/mnist/public.h5 \\
          --epochs 40 --learning-rate 1e-3 --weight-decay 0.1 --test data/mnist/test.h5
    \b
    Multi-host (run once per host; each reads only its own teachers' shards):
      pate train-teachers shards.h5 --out teachers --strategy vmap --devices all \\
          --coordinator host0:1234 --num-processes 2 --process-id 0
    """
    with common.fields_as_flags(FLAGS):
        if options["num_processes"] > 1 or options["coordinator"]:
            from pate.teachers import initialize_distributed

            initialize_distributed(
                options["coordinator"], options["num_processes"], options["process_id"]
            )
        import jax

        from pate.teachers import train_teachers

        options["devices"] = common.parse_devices(options["devices"])
        options["hidden"] = (
            None if options["hidden"] is None else common.parse_widths(options["hidden"])
        )
        train = TRAIN(**common.fields_of(TRAIN, options))
        job = JOB(
            **common.fields_of(JOB, options), train=train, checkpoints=not options["no_checkpoints"]
        )
        quiet = options["as_json"] or jax.process_index() != 0
        with common.Phases(unit="steps", quiet=quiet) as phases:
            result = train_teachers(job, **callbacks(phases))
    if result.path is not None:  # only process 0 writes and reports
        render(result, options["as_json"])


def callbacks(phases: common.Phases) -> dict:
    """``train_teachers``'s progress hooks shown as ``phases`` (the command's and ``pate run``'s)."""

    def on_progress(p: Progress) -> None:
        # XLA compiles before the first step: that phase ends with the first steps done.
        if phases.current == "compiling and first steps" and p.steps_done > 0:
            phases.start("training teachers", p.steps_total)
        teachers = f"teachers {p.teachers_done}/{p.teachers_total}"
        phases.advance(p.steps_done, p.steps_total, description=teachers)

    return {"progress": on_progress, "on_phase": phases.start}


#: Field -> flag, for library errors (`teacher_chunk` -> --teacher-chunk; the custom model's
#: `factory` is --model's).
FLAGS = {param.name: param.opts[0] for param in command.params if isinstance(param, click.Option)}
FLAGS["factory"] = "--model"


def render(result: TeachersResult, as_json: bool) -> None:
    """Print what ``train_teachers`` did (the command's output; ``pate run`` calls it too)."""
    report, ensemble, accuracy = result.summary(), result.ensemble, result.accuracy
    if as_json:
        return common.echo_json(report)
    out = common.console()
    resumed = f", resumed {ensemble.resumed_chunks} chunks" if ensemble.resumed_chunks else ""
    out.print(
        f"trained {result.num_teachers} {result.model} teachers ({ensemble.strategy}, "
        f"{ensemble.devices} device(s) x {ensemble.processes} process(es){resumed}) in "
        f"{ensemble.seconds:.1f} s -> {report['teachers_dir']}"
    )
    out.print(
        f"steps per teacher: {report['steps_min']}..{report['steps_max']}  "
        f"time per teacher: {report['teacher_seconds_mean']:.3f} s"
    )
    if accuracy is not None:
        out.print(
            f"test accuracy per teacher: min {accuracy.min():.3f}  mean "
            f"{result.mean_accuracy_text or format(accuracy.mean(), '.3f')}  max {accuracy.max():.3f}",
            markup=False,
        )
    if result.majority_rate is not None:
        out.print(f"always the most common test class: {result.majority_rate:.3f}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
