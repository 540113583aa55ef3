"""``pate dataset NAME --out DIR``: write a built-in or imported dataset in the pate-dataset format."""

from __future__ import annotations

import click

from cli.common import console


@click.command("dataset")
@click.argument("name", type=click.Choice(["adas"]))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to create with private.h5, public.h5 and test.h5.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generator.")
@click.option(
    "--vehicles",
    type=click.IntRange(min=2),
    default=None,
    help="adas: number of private vehicles (default 2500, ~100k records).",
)
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
def command(name: str, out_dir: str, seed: int, vehicles: int | None, force: bool) -> None:
    """Write dataset NAME as DIR/private.h5, DIR/public.h5 and DIR/test.h5.

    \b
    adas: a synthetic driving log of a fleet of cars (one car = one individual),
          heavy-tailed records per car, each car with its own driving style.

    \b
    Example:
      pate dataset adas --out data/adas --seed 0
    """
    from pate.data import BUILDERS
    from pate.io import atomic_dir, read_dataset

    with atomic_dir(out_dir, force=force) as tmp:
        paths = BUILDERS[name](tmp, seed=seed, vehicles=vehicles)
        names = {split: path.name for split, path in paths.items()}
    out = console()
    for split, filename in names.items():
        data = read_dataset(f"{out_dir}/{filename}")
        individuals = len(set(data.individual_id.tolist()))
        out.print(
            f"{split:>8}: {len(data):>7} records, {individuals:>5} individuals -> {out_dir}/{filename}"
        )
