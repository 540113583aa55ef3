"""``pate partition``: split private data into one shard per teacher, one individual per shard.

Parse, build a :class:`~pate.partitioning.PartitionJob`, call :func:`~pate.partitioning.partition`, render.
Each option fills the job field it is named after and takes that field's default from the job; library
errors name fields, said here as flags.
"""

from __future__ import annotations

from functools import partial

import click

from cli import common
from cli.common import POSITIVE_INT
from pate.partitioning import METHODS, PartitionJob, PartitionSummary, partition

HELP = {
    "num_teachers": "Number of teachers (shards).",
    "out": "Shards file to write (private; missing parents are made, 0700).",
    "individual_column": "Dataset holding who each record belongs to.",
    "seed": "Seed of the keyed hash (hash) or of the tie-breaking (lpt).",
    "method": "hash: an individual's shard depends on its own id only, so adding or removing one "
    "individual changes one shard (the per-individual guarantee); lpt: shards balanced by record "
    "count, but an individual's placement depends on the others' counts, so the guarantee then "
    "covers only changes that keep the number of an individual's records.",
    "force": "Replace an existing shards file (never a file of another kind).",
    "as_json": "Print the summary as JSON.",
}
JOB = PartitionJob
option = partial(common.field_option, HELP)


@click.command("partition", context_settings={"show_default": True})
@click.argument("input", metavar="PRIVATE.h5", type=click.Path(dir_okay=False))
@option("--teachers", "num_teachers", required=True, type=POSITIVE_INT)
@option("--out", required=True, type=click.Path(dir_okay=False))
@option("--individual-column", field_of=JOB)
@option("--seed", field_of=JOB, type=int)
@option("--method", field_of=JOB, type=click.Choice(METHODS))
@option("--force", field_of=JOB, is_flag=True)
@option("--json", "as_json", is_flag=True)
def command(**options) -> None:
    """Partition PRIVATE.h5 into --teachers shards, all records of an individual in one shard.

    By default (--method hash) an individual's shard is a keyed hash of its own id and --seed, so
    adding or removing one individual changes one shard and no other; shards are balanced by
    individuals in expectation, not by records. --method lpt balances record counts instead
    (largest individual first onto the lightest shard), at the cost of that guarantee. The split is
    verified before the file is written, and features are streamed in chunks.

    \b
    Example:
      pate partition data/adas/private.h5 --teachers 250 --out run/shards.h5
    """
    with common.fields_as_flags(FLAGS):
        summary = partition(JOB(**common.fields_of(JOB, options)))
    render(summary, options)


#: Field -> flag, for library errors (`out` -> --out, `input` -> PRIVATE.h5).
FLAGS = common.flags_of(command)


def render(summary: PartitionSummary, options: dict) -> None:
    if options["as_json"]:
        return common.echo_json(summary.summary())
    from rich.table import Table

    table = Table(title=f"Partition of {options['input']} (verified)", title_justify="left")
    for column in ("shards", "records", "individuals", "records/shard min·median·max", "max/min"):
        table.add_column(column, justify="right")
    table.add_column("individuals/shard", justify="right")
    table.add_row(
        str(summary.num_shards),
        str(summary.records),
        str(summary.individuals),
        f"{summary.min_shard} · {summary.median_shard:g} · {summary.max_shard}",
        f"{summary.size_ratio:.3f}",
        f"{summary.min_individuals}–{summary.max_individuals}",
    )
    out = common.console()
    out.print(table)
    out.print(f"shards written to {options['out']}")
