"""``pate partition``: split private data into one shard per teacher, one individual per shard."""

from __future__ import annotations

import click

from cli.common import console, echo_json


@click.command("partition")
@click.argument("input_path", metavar="PRIVATE.h5", type=click.Path(dir_okay=False))
@click.option(
    "--teachers",
    "num_teachers",
    required=True,
    type=click.IntRange(min=1),
    help="Number of teachers (shards).",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Shards file to write (private).",
)
@click.option(
    "--individual-column",
    default="individual_id",
    show_default=True,
    help="Dataset holding who each record belongs to.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the tie-breaking.")
@click.option("--force", is_flag=True, help="Replace an existing shards file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(
    input_path: str,
    num_teachers: int,
    out_path: str,
    individual_column: str,
    seed: int,
    force: bool,
    as_json: bool,
) -> None:
    """Partition PRIVATE.h5 into --teachers shards, all records of an individual in one shard.

    Shards are balanced by record count (largest individual first onto the lightest shard), the split is
    verified before the file is written, and features are streamed in chunks.

    \b
    Example:
      pate partition data/adas/private.h5 --teachers 250 --out run/shards.h5
    """
    from pathlib import Path

    from pate.errors import PateError
    from pate.io import refuse_overlap
    from pate.partition import PartitionConfig, partition_file

    refuse_overlap(inputs={"PRIVATE.h5": input_path}, outputs={"--out": out_path})  # even --force
    if Path(out_path).exists() and not force:
        raise PateError(
            f"{out_path}: already exists and holds another run; pass --force to replace it",
            exit_code=4,
        )
    config = PartitionConfig(
        num_teachers=num_teachers, seed=seed, individual_column=individual_column
    )
    summary = partition_file(input_path, out_path, config)
    if as_json:
        echo_json(summary.to_dict())
        return
    from rich.table import Table

    table = Table(title=f"Partition of {input_path} (verified)", title_justify="left")
    table.add_column("shards", justify="right")
    table.add_column("records", justify="right")
    table.add_column("individuals", justify="right")
    table.add_column("records/shard min·median·max", justify="right")
    table.add_column("max/min", justify="right")
    table.add_column("individuals/shard", justify="right")
    table.add_row(
        str(summary.num_shards),
        str(summary.records),
        str(summary.individuals),
        f"{summary.min_shard} · {summary.median_shard:g} · {summary.max_shard}",
        f"{summary.size_ratio:.3f}",
        f"{summary.min_individuals}–{summary.max_individuals}",
    )
    out = console()
    out.print(table)
    out.print(f"shards written to {out_path}")
