"""``pate predict``: use an exported student alone (no teacher, no private file).

Parse, call :func:`~pate.export.predict` (imported when the command runs: it needs JAX), render;
library errors name arguments, said here as flags.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import click

from cli import common

if TYPE_CHECKING:
    from pate.export import PredictionResult

FILE = click.Path(dir_okay=False)
HELP = {
    "out": "Write predictions (labels, probabilities, the input's ids) to this HDF5 file, or to CSV "
    "when it ends in .csv (the predicted class name, the id, then one probability column per "
    "class). Owner-only (0600): predictions of private input are private.",
    "id_column": "Column of a CSV INPUT whose ids the predictions carry [default: the schema's "
    "individual column, when INPUT has it].",
    "force": "Replace an existing predictions file (never a file of another kind).",
    "as_json": "Print a summary as JSON.",
}
option = partial(common.field_option, HELP)


@click.command("predict")
@click.argument("student_path", metavar="STUDENT.h5", type=FILE)
@click.argument("input_path", metavar="INPUT.h5", type=FILE)
@option("--out", type=FILE, default=None)
@option("--id-column", default=None)
@option("--force", is_flag=True)
@option("--json", "as_json", is_flag=True)
def command(
    student_path: str,
    input_path: str,
    out: str | None,
    id_column: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Predict labels for INPUT.h5 (a pate-dataset file) with the student in STUDENT.h5.

    INPUT may also be a raw .csv file (labeled or not) when the student was trained on a dataset
    from `pate dataset csv`: the schema it carries (from the public split) encodes it as the import
    did; its empty cells take the schema's fill values (from the public split). Labels in INPUT
    only measure accuracy: records whose label is empty or unknown to the student are predicted
    and left out of it. Predictions carry INPUT's ids (see --id-column). INPUT may be private, so
    the predictions file is written owner-only (0600) and is not part of a release.

    \b
    Example:
      pate predict run/release/student.h5 data/adas/test.h5 --out preds.h5
      pate predict run/release/student.h5 new.csv --out predictions.csv
    """
    from pate.export import predict

    with common.fields_as_flags(FLAGS):
        result = predict(student_path, input_path, out=out, force=force, id_column=id_column)
    render(result, out, as_json)


#: Argument -> flag, for library errors (`out` -> --out, `input_path` -> INPUT.h5).
FLAGS = common.flags_of(command)


def render(result: PredictionResult, out_path: str | None, as_json: bool) -> None:
    if as_json:
        return common.echo_json(result.summary())
    out = common.console()
    accuracy, skipped = result.accuracy, result.labels_skipped
    measured = ""
    if accuracy is not None:
        measured = f", accuracy {accuracy:.4f} against INPUT's labels"
        if skipped:
            measured += f" on the {result.accuracy_records} records whose label the student knows"
    if skipped:
        measured += f" ({skipped} records with an empty or unknown label left out of the accuracy)"
    out.print(f"predicted {len(result.labels)} records{measured}", markup=False, soft_wrap=True)
    if result.filled_cells:
        out.print(f"filled {result.filled_cells} empty cells with the schema's public fill values")
    if out_path:
        ids = f", with ids from {result.id_column!r}" if result.id_column else ""
        out.print(f"predictions written to {out_path} (owner-only){ids}", markup=False)
