"""Schema-driven import (``pate dataset csv``): categories, missing values, separate files, and a
schema built from public inputs only, carried by the student to ``pate predict`` on raw CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.data.generic import build_csv
from pate.data.schema import OTHER, encode_table, read_csv_raw
from pate.errors import PateError
from pate.io import Dataset, read_dataset, write_dataset

WORKS = ("clerk", "farmer", "nurse")


def _rows(n: int, seed: int, *, works=WORKS, age_shift: float = 0.0, start: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        age = int(rng.integers(18, 70) + age_shift)
        work = str(rng.choice(works))
        zipc = str(rng.choice(["100", "200", "300"]))
        label = "high" if (age > 45) ^ (work == "nurse") else "low"
        rows.append({"id": f"u{start + i}", "age": str(age), "work": work, "zip": zipc, "y": label})
    return rows


def _write(path: Path, rows, columns=("id", "age", "work", "zip", "y")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[c] for c in columns])
    return path


def _files(tmp_path: Path, private_rows=None, *, public_labeled: bool = True) -> dict[str, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    private_rows = private_rows if private_rows is not None else _rows(300, 1)
    public_columns = (
        ("id", "age", "work", "zip", "y") if public_labeled else ("id", "age", "work", "zip")
    )
    return {
        "private": _write(tmp_path / "private.csv", private_rows),
        "public": _write(tmp_path / "public.csv", _rows(120, 2, start=10_000), public_columns),
        "test": _write(tmp_path / "test.csv", _rows(60, 3, start=20_000)),
    }


def _build(out: Path, files: dict[str, Path], **options) -> dict[str, Path]:
    kwargs = {"label_column": "y", "individual_column": "id", "categorical_columns": ("zip",)}
    return build_csv(out, **files, **(kwargs | options))


def _file_contents(path: Path) -> dict:
    with h5py.File(path, "r") as handle:
        values = {f"@{k}": repr(np.asarray(v).tolist()) for k, v in handle.attrs.items()}
        values.update({k: repr(handle[k][()].tolist()) for k in handle})
    return values


# -- (a) the schema and the public and test files do not depend on the private file ----------------


@pytest.mark.parametrize("public_labeled", [True, False])
def test_changing_the_private_file_only_changes_nothing_public(tmp_path, public_labeled):
    first = _files(tmp_path / "a", public_labeled=public_labeled)
    # Another private file: more records, other categories, older people (another median).
    other_rows = _rows(410, 9, works=(*WORKS, "astronaut", "pilot"), age_shift=25.0)
    second = _files(tmp_path / "b", other_rows, public_labeled=public_labeled)
    for files, out in ((first, "out-a"), (second, "out-b")):
        _build(tmp_path / out, files, missing="fill")
    schema_a = (tmp_path / "out-a" / "schema.json").read_text()
    assert schema_a == (tmp_path / "out-b" / "schema.json").read_text()
    for split in ("public", "test"):
        assert _file_contents(tmp_path / "out-a" / f"{split}.h5") == _file_contents(
            tmp_path / "out-b" / f"{split}.h5"
        )
    assert _file_contents(tmp_path / "out-a" / "private.h5") != _file_contents(
        tmp_path / "out-b" / "private.h5"
    )
    schema = json.loads(schema_a)
    assert schema["classes"] == ["high", "low"]
    kinds = {c["name"]: c["kind"] for c in schema["columns"]}
    assert kinds == {"age": "numeric", "work": "categorical", "zip": "categorical"}
    assert schema["feature_names"][:5] == [
        "age",
        "work=clerk",
        "work=farmer",
        "work=nurse",
        "work=<other>",
    ]
    public_ages = [float(r["age"]) for r in _rows(120, 2, start=10_000)]
    assert schema["columns"][0]["fill"] == float(np.median(public_ages))
    with h5py.File(tmp_path / "out-a" / "public.h5", "r") as handle:
        assert handle.attrs["schema"] == json.dumps(schema, sort_keys=True)
        assert ("evaluation_labels" in handle) == public_labeled


def test_declared_classes_and_private_label_outside_them(tmp_path):
    files = _files(tmp_path)
    _build(tmp_path / "out", files, classes=("low", "high"))
    private = read_dataset(tmp_path / "out" / "private.h5")
    assert private.class_names == ("low", "high")
    rows = _rows(300, 1)
    expected = [0 if r["y"] == "low" else 1 for r in rows]
    assert private.labels.tolist() == expected
    bad = rows[:5] + [dict(rows[5], y="medium")] + rows[6:]
    files = _files(tmp_path / "bad", bad)
    with pytest.raises(
        PateError, match=r"private\.csv: column 'y' record 6 holds 'medium', outside"
    ):
        _build(tmp_path / "bad" / "out", files)
    assert not (tmp_path / "bad" / "out" / "schema.json").exists()


# -- (b) missing values ----------------------------------------------------------------------------


def _with_missing(tmp_path: Path) -> dict[str, Path]:
    rows = _rows(300, 1)
    rows[3]["age"] = "?"
    rows[7]["age"] = ""
    rows[8]["work"] = "NA"
    files = _files(tmp_path, rows)
    public = _rows(120, 2, start=10_000)
    public[0]["work"] = "NaN"
    _write(files["public"], public)
    return files


def test_missing_error_lists_every_column_and_count(tmp_path):
    files = _with_missing(tmp_path)
    with pytest.raises(PateError) as raised:
        _build(tmp_path / "out", files)
    message = str(raised.value)
    assert "\n" not in message
    assert (
        f"{files['private']}: 'age' 2, 'work' 1; {files['public']}: 'work' 1; expected none"
        in message
    )


def test_missing_drop_and_fill(tmp_path):
    files = _with_missing(tmp_path)
    _build(tmp_path / "drop", files, missing="drop")
    assert len(read_dataset(tmp_path / "drop" / "private.h5")) == 297
    assert len(read_dataset(tmp_path / "drop" / "public.h5")) == 119
    _build(tmp_path / "fill", files, missing="fill")
    private = read_dataset(tmp_path / "fill" / "private.h5")
    schema = json.loads((tmp_path / "fill" / "schema.json").read_text())
    public_ages = [float(r["age"]) for r in _rows(120, 2, start=10_000)]
    median = float(np.median(public_ages))
    assert schema["columns"][0]["fill"] == median
    assert private.features[3, 0] == private.features[7, 0] == np.float32(median)
    names = list(private.feature_names)
    assert private.features[8, names.index("work=<missing>")] == 1
    assert private.features[8].sum() == private.features[8, 0] + 2  # <missing> and one zip


# -- (c) categories not in the public split --------------------------------------------------------


def test_unseen_category_goes_to_other(tmp_path):
    rows = _rows(300, 1)
    rows[0]["work"] = "astronaut"
    rows[1]["zip"] = "999"
    _build(tmp_path / "out", _files(tmp_path, rows))
    private = read_dataset(tmp_path / "out" / "private.h5")
    names = list(private.feature_names)
    assert "work=astronaut" not in names and "zip=999" not in names
    assert private.features[0, names.index(f"work={OTHER}")] == 1
    assert private.features[0, [names.index(f"work={w}") for w in WORKS]].sum() == 0
    assert private.features[1, names.index(f"zip={OTHER}")] == 1
    assert private.features[2, names.index(f"work={OTHER}")] == 0
    # zip is numeric text but declared categorical; age is numeric.
    assert names[0] == "age" and private.features[0, 0] == float(rows[0]["age"])


def test_numeric_column_with_text_in_the_private_file(tmp_path):
    rows = _rows(300, 1)
    rows[4]["age"] = "old"
    with pytest.raises(
        PateError, match=r"private\.csv: column 'age' record 5 holds 'old', expected a number"
    ):
        _build(tmp_path / "out", _files(tmp_path, rows))


# -- (e) errors: one line, exit code 2 -------------------------------------------------------------


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", "error: missing cells (count per column) in "),
        ("label", "column 'y' record 2 holds 'maybe', outside the classes"),
        ("text", "column 'age' record 1 holds 'x', expected a number"),
        ("input", "error: --private: given together with --input"),
        ("no-test", "error: --test: missing, expected --private, --public and --test"),
        ("test-unlabeled", "test.csv: no column 'y'"),
        ("one-class", "error: column 'y': the public and test splits hold 1 class ('low')"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, change, message):
    rows = _rows(50, 1)
    if change == "missing":
        rows[0]["age"] = "?"
    if change == "label":
        rows[1]["y"] = "maybe"
    if change == "text":
        rows[0]["age"] = "x"
    files = _files(tmp_path, rows, public_labeled=change != "one-class")
    if change == "test-unlabeled":
        _write(files["test"], _rows(20, 3, start=20_000), ("id", "age", "work", "zip"))
    if change == "one-class":
        _write(files["test"], [dict(r, y="low") for r in _rows(20, 3, start=20_000)])
    args = ["dataset", "csv", "--label-column", "y", "--individual-column", "id"]
    for split in ("private", "public", "test"):
        if not (change == "no-test" and split == "test"):
            args += [f"--{split}", files[split]]
    if change == "input":
        args += ["--input", files["private"]]
    result = _cli(*args, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


# -- (d) end to end: raw CSV in, CSV predictions out ----------------------------------------------


@pytest.mark.slow
def test_predict_raw_csv_end_to_end(tmp_path):
    files = _files(tmp_path / "in", _rows(480, 1), public_labeled=False)
    data = tmp_path / "data"
    args = ["dataset", "csv", "--label-column", "y", "--individual-column", "id"]
    args += ["--categorical-columns", "zip", "--missing", "fill", "--out", data]
    for split in ("private", "public", "test"):
        args += [f"--{split}", files[split]]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    run.mkdir()
    for step in (
        ["partition", data / "private.h5", "--teachers", "4", "--out", run / "shards.h5"],
        ["train-teachers", run / "shards.h5", "--out", run / "teachers", "--epochs", "3"]
        + ["--hidden", "16"],
        ["label-and-distill", run / "teachers", "--public", data / "public.h5", "--test"]
        + [data / "test.h5", "--workspace", run / "ws", "--out", run / "release", "--sigma", "4"]
        + ["--max-epsilon", "4", "--student-steps", "50", "--noise-seed", "1"],
    ):
        result = _cli(*step)
        assert result.exit_code == 0, (step[0], result.output)
    student = run / "release" / "student.h5"
    schema_text = (data / "schema.json").read_text()
    with h5py.File(student, "r") as handle:
        assert json.loads(handle.attrs["schema"]) == json.loads(schema_text)

    # New unlabeled records, with a missing cell and an unseen category.
    new_rows = _rows(25, 7, start=90_000)
    new_rows[0]["age"] = "?"
    new_rows[1]["work"] = "astronaut"
    new = _write(tmp_path / "new.csv", new_rows, ("age", "zip", "work"))
    result = _cli("predict", student, new, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "p.csv", newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["predicted", "p_high", "p_low"]
    assert len(table) == 26

    # The same records as an h5 encoded by the same schema give the same predictions.
    header, cells = read_csv_raw(new)
    features = encode_table(json.loads(schema_text), header, cells, new)
    as_h5 = tmp_path / "new.h5"
    write_dataset(as_h5, Dataset(features, None, np.arange(25), num_classes=2))
    result = _cli("predict", student, as_h5, "--out", tmp_path / "p.h5")
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        labels, probabilities = handle["labels"][()], handle["probabilities"][()]
    assert [row[0] for row in table[1:]] == [("high", "low")[i] for i in labels]
    assert np.allclose(np.array(table[1:])[:, 1:].astype(np.float64), probabilities, atol=1e-6)

    # The raw test CSV (labeled) gives what test.h5 gives, accuracy included.
    by_csv = _cli("predict", student, files["test"], "--json")
    by_h5 = _cli("predict", student, data / "test.h5", "--json")
    assert by_csv.exit_code == 0 and by_h5.exit_code == 0, (by_csv.output, by_h5.output)
    assert json.loads(by_csv.output) == json.loads(by_h5.output)


def test_one_file_split_detects_text_columns(tmp_path):
    rows = _rows(200, 4)
    path = _write(tmp_path / "all.csv", rows)
    build_csv(tmp_path / "out", input=path, label_column="y", individual_column="id", seed=1)
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    kinds = {c["name"]: c["kind"] for c in schema["columns"]}
    assert kinds == {"age": "numeric", "work": "categorical", "zip": "numeric"}
    assert schema["classes"] == ["high", "low"]
    private = read_dataset(tmp_path / "out" / "private.h5")
    assert private.feature_names == ("age", *(f"work={w}" for w in WORKS), "work=<other>", "zip")


def test_predict_csv_needs_a_schema(tmp_path):
    from pate.export import read_csv_records

    with pytest.raises(PateError, match=r"s\.h5: has no schema, so `input_path` x\.csv"):
        read_csv_records("s.h5", None, "x.csv")
