"""``pate train-teachers``: train one teacher per shard, all as one program over the teacher axis."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from cli.common import console, echo_json, progress_bar

STRATEGY_NAMES = ("auto", "loop", "scan", "vmap", "fold", "public")


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
    import jax

    if text == "all":
        return jax.local_device_count()
    try:
        value = int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}, expected a positive integer or 'all'") from None
    if value < 1:
        raise click.BadParameter(f"{text!r}, expected a positive integer or 'all'")
    return value


@click.command("train-teachers")
@click.argument("shards_path", metavar="SHARDS.h5", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Teachers folder to create (private).",
)
@click.option(
    "--model",
    type=click.Choice(["auto", "mlp", "cnn", "cnn-small"]),
    default="auto",
    show_default=True,
    help="auto: cnn for images, mlp otherwise (public strategy: the head is an MLP).",
)
@click.option(
    "--hidden",
    default=None,
    help="MLP hidden widths, e.g. 256,256, or none [default: 64; public-strategy heads: none].",
)
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="AdamW weight decay (0: Adam).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Root of the key tree.")
@click.option(
    "--strategy",
    type=click.Choice(STRATEGY_NAMES),
    default="auto",
    show_default=True,
    help="How the teacher axis is computed: loop (one dispatch per step), scan (one per epoch), "
    "vmap, fold (convolutions as batched matrix products), public (extractor learned from "
    "--public, per-teacher dense heads); auto: public with --public, else the measured winner.",
)
@click.option(
    "--public",
    "public_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Public unlabeled set to learn the shared feature extractor from (public strategy).",
)
@click.option(
    "--devices",
    default="1",
    show_default=True,
    help="Devices per process to lay the teacher axis over (a number or 'all').",
)
@click.option(
    "--teacher-chunk",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Teachers trained (and read from disk) together; 0 sizes it from memory.",
)
@click.option(
    "--test",
    "test_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labelled test set for per-teacher accuracy.",
)
@click.option(
    "--checkpoints",
    "checkpoint_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Checkpoint folder (private) [default: OUT.checkpoints]; an interrupted run resumes "
    "from it, and it is removed after success.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Save the chunk in progress every this many epochs (0: only finished chunks).",
)
@click.option("--no-checkpoints", is_flag=True, help="Do not write checkpoints.")
@click.option(
    "--coordinator", default=None, help="Multi-host: address HOST:PORT of process 0's coordinator."
)
@click.option(
    "--num-processes", type=click.IntRange(min=1), default=1, show_default=True, help="Multi-host."
)
@click.option(
    "--process-id", type=click.IntRange(min=0), default=0, show_default=True, help="Multi-host."
)
@click.option("--force", is_flag=True, help="Replace an existing teachers folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(
    shards_path,
    out_dir,
    model,
    hidden,
    epochs,
    batch_size,
    learning_rate,
    weight_decay,
    seed,
    strategy,
    public_path,
    devices,
    teacher_chunk,
    test_path,
    checkpoint_dir,
    checkpoint_every,
    no_checkpoints,
    coordinator,
    num_processes,
    process_id,
    force,
    as_json,
) -> None:
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
    if num_processes > 1 or coordinator:
        if not coordinator:
            raise click.BadParameter("needs --coordinator HOST:PORT", param_hint="--num-processes")
        from pate.teachers import initialize_distributed

        initialize_distributed(coordinator, num_processes, process_id)
    import jax
    import numpy as np

    from pate.errors import PateError
    from pate.io import atomic_dir, read_dataset
    from pate.models import ModelConfig
    from pate.teachers import (
        TrainConfig,
        ensemble_predictions,
        open_shards,
        resolve_strategy,
        save_teachers,
        teacher_accuracy,
        train_ensemble,
    )

    main_process = jax.process_index() == 0
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        seed=seed,
        strategy=strategy,
        devices=parse_devices(devices),
        teacher_chunk=teacher_chunk,
    )
    if main_process and Path(out_dir).exists() and not force:
        raise PateError(
            f"{out_dir}: already exists and holds another run; pass --force to replace it",
            exit_code=4,
        )
    shards = open_shards(shards_path)
    test = None
    if test_path:
        test = read_dataset(test_path, require_labels=True)
        if test.feature_shape != tuple(shards.feature_shape):
            raise PateError(
                f"{test_path}: features have shape {test.feature_shape}, expected "
                f"{tuple(shards.feature_shape)} as in {shards_path}"
            )
        if test.num_classes != shards.num_classes:
            raise PateError(
                f"{test_path}: {test.num_classes} classes, expected {shards.num_classes} as in "
                f"{shards_path}"
            )
    images = len(shards.feature_shape) == 3
    kind = model if model != "auto" else ("cnn" if images else "mlp")
    model_config = ModelConfig(
        kind=kind,
        input_shape=tuple(shards.feature_shape),
        num_classes=shards.num_classes,
        hidden=parse_widths(hidden or "64"),
    )
    chosen = resolve_strategy(strategy, model_config, public=public_path is not None)
    extractor = head = None
    if chosen == "public":
        from pate.extractor import fit_extractor_from_file

        extractor = fit_extractor_from_file(public_path)
        if tuple(extractor.input_shape) != tuple(shards.feature_shape):
            raise PateError(
                f"{public_path}: images of shape {tuple(extractor.input_shape)}, expected "
                f"{tuple(shards.feature_shape)} as in {shards_path}"
            )
        head = ModelConfig(
            kind="mlp",
            input_shape=(extractor.num_features,),
            num_classes=shards.num_classes,
            hidden=parse_widths(hidden or "none"),
        )
        kind = "public extractor + " + ("linear" if not head.hidden else "mlp") + " head"
    checkpoints = None
    if not no_checkpoints:
        checkpoints = Path(checkpoint_dir or f"{str(out_dir).rstrip(os.sep)}.checkpoints")

    quiet = as_json or not main_process
    total = int(config.epochs * np.ceil(shards.sizes / config.batch_size).sum())
    with progress_bar("training teachers", total, unit="steps", quiet=quiet) as advance:
        result = train_ensemble(
            shards,
            model_config,
            config,
            progress=lambda p: advance(
                p.steps_done,
                p.steps_total,
                description=f"teachers {p.teachers_done}/{p.teachers_total}",
            ),
            extractor=extractor,
            head=head,
            checkpoint_dir=checkpoints,
            checkpoint_every=checkpoint_every,
        )
    if not main_process:
        return
    accuracy = np.full(shards.num_teachers, np.nan)
    if test is not None:
        predictions = ensemble_predictions(
            result.params,
            result.model,
            result.scale,
            result.mean,
            result.std,
            test.features,
            extractor=result.extractor,
        )
        accuracy = teacher_accuracy(predictions, test.labels)
    with atomic_dir(out_dir, force=force, private=True) as tmp:
        save_teachers(tmp, result, model_config, config, shards, accuracy)
    if checkpoints is not None:
        shutil.rmtree(checkpoints, ignore_errors=True)
    report = {
        "teachers_dir": out_dir,
        "teachers": shards.num_teachers,
        "model": kind,
        "strategy": result.strategy,
        "devices": result.devices,
        "processes": result.processes,
        "teacher_chunk": result.teacher_chunk,
        "seconds": round(result.seconds, 2),
        "resumed_chunks": result.resumed_chunks,
        "steps_min": int(result.steps.min()),
        "steps_max": int(result.steps.max()),
        "accuracy_min": None if test is None else float(accuracy.min()),
        "accuracy_mean": None if test is None else float(accuracy.mean()),
        "accuracy_max": None if test is None else float(accuracy.max()),
        "teacher_seconds_mean": float(result.teacher_seconds.mean()),
    }
    if as_json:
        echo_json(report)
        return
    out = console()
    resumed = f", resumed {result.resumed_chunks} chunks" if result.resumed_chunks else ""
    out.print(
        f"trained {shards.num_teachers} {kind} teachers ({result.strategy}, "
        f"{result.devices} device(s) x {result.processes} process(es){resumed}) in "
        f"{result.seconds:.1f} s -> {out_dir}"
    )
    out.print(
        f"steps per teacher: {report['steps_min']}..{report['steps_max']}  "
        f"time per teacher: {report['teacher_seconds_mean']:.3f} s"
    )
    if test is not None:
        out.print(
            f"test accuracy per teacher: min {accuracy.min():.3f}  mean {accuracy.mean():.3f}  "
            f"max {accuracy.max():.3f}"
        )
