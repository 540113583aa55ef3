"""``pate predict``: use an exported student alone (no teacher, no private file)."""

from __future__ import annotations

import click

from cli.common import console, echo_json


@click.command("predict")
@click.argument("student_path", metavar="STUDENT.h5", type=click.Path(dir_okay=False))
@click.argument("input_path", metavar="INPUT.h5", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write predictions (labels, probabilities) to this HDF5 file.",
)
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
def command(
    student_path: str, input_path: str, out_path: str | None, force: bool, as_json: bool
) -> None:
    """Predict labels for INPUT.h5 (a pate-dataset file) with the student in STUDENT.h5.

    \b
    Example:
      pate predict run/release/student.h5 data/adas/test.h5 --out preds.h5
    """
    from pathlib import Path

    from pate.errors import PateError
    from pate.export import load_student, write_predictions
    from pate.io import read_dataset, refuse_overlap

    refuse_overlap(  # --force never replaces an input
        inputs={"STUDENT.h5": student_path, "INPUT.h5": input_path}, outputs={"--out": out_path}
    )
    student, attrs = load_student(student_path)
    data = read_dataset(input_path)
    if data.feature_shape != tuple(student.model.input_shape):
        raise PateError(
            f"{input_path}: features have shape {data.feature_shape}, expected "
            f"{tuple(student.model.input_shape)} as the student in {student_path}"
        )
    if out_path and Path(out_path).exists() and not force:
        raise PateError(f"{out_path}: already exists; pass --force to replace it", exit_code=4)
    probabilities = student.probabilities(data.features)
    labels = probabilities.argmax(axis=1)
    if out_path:
        write_predictions(out_path, labels, probabilities, attrs["class_names"])
    accuracy = None if data.labels is None else float((labels == data.labels).mean())
    summary = {
        "records": len(labels),
        "accuracy": accuracy,
        "out": out_path,
        "class_counts": {
            name: int((labels == i).sum()) for i, name in enumerate(attrs["class_names"])
        },
    }
    if as_json:
        echo_json(summary)
        return
    out = console()
    out.print(
        f"predicted {len(labels)} records"
        + ("" if accuracy is None else f", accuracy {accuracy:.4f} against INPUT's labels")
    )
    if out_path:
        out.print(f"predictions written to {out_path}")
