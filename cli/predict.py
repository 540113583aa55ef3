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
    "out": "Write predictions (labels, probabilities) to this HDF5 file, or to CSV when it ends in "
    ".csv (the predicted class name, then one probability column per class).",
    "force": "Replace an existing predictions file (never a file of another kind).",
    "as_json": "Print a summary as JSON.",
}
option = partial(common.field_option, HELP)


@click.command("predict")
@click.argument("student_path", metavar="STUDENT.h5", type=FILE)
@click.argument("input_path", metavar="INPUT.h5", type=FILE)
@option("--out", type=FILE, default=None)
@option("--force", is_flag=True)
@option("--json", "as_json", is_flag=True)
def command(
    student_path: str, input_path: str, out: str | None, force: bool, as_json: bool
) -> None:
    """Predict labels for INPUT.h5 (a pate-dataset file) with the student in STUDENT.h5.

    INPUT may also be a raw .csv file (labeled or not) when the student was trained on a dataset
    from `pate dataset csv`: the schema it carries (from the public split) encodes it as the import
    did.

    \b
    Example:
      pate predict run/release/student.h5 data/adas/test.h5 --out preds.h5
      pate predict run/release/student.h5 new.csv --out predictions.csv
    """
    from pate.export import predict

    with common.fields_as_flags(FLAGS):
        result = predict(student_path, input_path, out=out, force=force)
    render(result, out, as_json)


#: Argument -> flag, for library errors (`out` -> --out, `input_path` -> INPUT.h5).
FLAGS = common.flags_of(command)


def render(result: PredictionResult, out_path: str | None, as_json: bool) -> None:
    if as_json:
        return common.echo_json(result.summary())
    out = common.console()
    accuracy = result.accuracy
    out.print(
        f"predicted {len(result.labels)} records"
        + ("" if accuracy is None else f", accuracy {accuracy:.4f} against INPUT's labels")
    )
    if out_path:
        out.print(f"predictions written to {out_path}")
