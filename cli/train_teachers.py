"""``pate train-teachers``: train one teacher per shard, all as one program over the teacher axis."""

from __future__ import annotations

import click

from cli.common import console, echo_json, progress_bar


def parse_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r}, expected comma-separated integers such as 64,64"
        ) from None
    if not widths or min(widths) < 1:
        raise click.BadParameter(f"{text!r}, expected positive widths such as 64,64")
    return widths


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
    help="auto: cnn for images, mlp otherwise.",
)
@click.option("--hidden", default="64", show_default=True, help="MLP hidden widths, e.g. 256,256.")
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True, help="Root of the key tree.")
@click.option(
    "--strategy",
    type=click.Choice(["auto", "vmap", "loop"]),
    default="auto",
    show_default=True,
    help="How the teacher axis is computed.",
)
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Lay the teacher axis over this many devices (vmap strategy).",
)
@click.option(
    "--test",
    "test_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labelled test set for per-teacher accuracy.",
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
    seed,
    strategy,
    devices,
    test_path,
    force,
    as_json,
) -> None:
    """Train one teacher per shard of SHARDS.h5 and save them, stacked, in --out.

    Each teacher sees only its own shard: batches are drawn from its own rows, padded rows weigh
    nothing, and its normalisation is fitted on its own records.

    \b
    Example:
      pate train-teachers run/shards.h5 --out run/teachers --test data/adas/test.h5
    """
    import numpy as np

    from pate.io import atomic_dir, read_dataset
    from pate.models import ModelConfig
    from pate.teachers import (
        TrainConfig,
        ensemble_predictions,
        load_shards,
        save_teachers,
        train_ensemble,
    )

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        strategy=strategy,
        devices=devices,
    )
    with atomic_dir(out_dir, force=force, private=True) as tmp:
        shards = load_shards(shards_path)
        test = None
        if test_path:
            test = read_dataset(test_path, require_labels=True)
            if test.feature_shape != shards.feature_shape:
                from pate.errors import PateError

                raise PateError(
                    f"{test_path}: features have shape {test.feature_shape}, expected "
                    f"{shards.feature_shape} as in {shards_path}"
                )
        kind = model if model != "auto" else ("cnn" if len(shards.feature_shape) == 3 else "mlp")
        model_config = ModelConfig(
            kind=kind,
            input_shape=shards.feature_shape,
            num_classes=shards.num_classes,
            hidden=parse_widths(hidden),
        )
        with progress_bar("training teachers", shards.num_teachers * epochs) as advance:
            result = train_ensemble(shards, model_config, config, progress=advance)
        accuracy = np.full(shards.num_teachers, np.nan)
        if test is not None:
            predictions = ensemble_predictions(
                result.params, model_config, result.scale, result.mean, result.std, test.features
            )
            accuracy = (predictions == test.labels[None, :]).mean(axis=1)
        save_teachers(tmp, result, model_config, config, shards, accuracy)
    report = {
        "teachers_dir": out_dir,
        "teachers": shards.num_teachers,
        "model": kind,
        "strategy": result.strategy,
        "seconds": round(result.seconds, 2),
        "accuracy_min": None if test is None else float(accuracy.min()),
        "accuracy_mean": None if test is None else float(accuracy.mean()),
        "accuracy_max": None if test is None else float(accuracy.max()),
    }
    if as_json:
        echo_json(report)
        return
    out = console()
    out.print(
        f"trained {shards.num_teachers} {kind} teachers ({result.strategy}) in "
        f"{result.seconds:.1f} s -> {out_dir}"
    )
    if test is not None:
        out.print(
            f"test accuracy per teacher: min {accuracy.min():.3f}  mean {accuracy.mean():.3f}  "
            f"max {accuracy.max():.3f}"
        )
