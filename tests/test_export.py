"""The student bundle (save, load), the predictions file, and predict() as one call."""

from __future__ import annotations

import json
import re

import h5py
import jax
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.errors import PateError
from pate.export import (
    PREDICTIONS_FORMAT,
    STUDENT_FORMAT,
    PredictionResult,
    load_student,
    predict,
    save_student,
    write_predictions,
)
from pate.io import Dataset, write_dataset
from pate.models import ModelConfig, Preprocessing
from pate.student import TrainedModel

CLASSES = ("cat", "dog", "eel")


def make_student(class_names=CLASSES) -> TrainedModel:
    """An untrained 3 -> 5 -> 3 MLP with weights from the model's init and a non-trivial preprocessing."""
    model = ModelConfig("mlp", (3,), 3, hidden=(5,))
    params = model.build().init(jax.random.key(1), np.zeros((1, 3), np.float32))["params"]
    return TrainedModel(
        params=jax.tree.map(np.asarray, params),
        model=model,
        preprocessing=Preprocessing(
            0.5, np.array([0.1, -0.2, 0.3], np.float32), np.array([1.0, 2.0, 0.5], np.float32)
        ),
    )


@pytest.fixture(scope="module")
def student_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("student") / "student.h5"
    save_student(
        path, make_student(), class_names=CLASSES, privacy={"epsilon": 1.5}, statement="stated"
    )
    return path


def write_input(path, rows=12, *, labels=True, features=3):
    rng = np.random.default_rng(4)
    data = Dataset(
        rng.normal(size=(rows, features)).astype(np.float32),
        rng.integers(0, 3, rows) if labels else None,
        np.arange(rows),
        num_classes=3,
    )
    write_dataset(path, data)
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ----------------------------------------------------------------------------------------------------
# The bundle and the predictions file


def test_save_and_load_student_round_trip(student_file):
    student = make_student()
    loaded, attrs = load_student(student_file)
    assert loaded.model == student.model
    assert attrs == {
        "class_names": CLASSES,
        "privacy_statement": "stated",
        "privacy": {"epsilon": 1.5},
    }
    flat = jax.tree_util.tree_leaves_with_path
    assert [path for path, _ in flat(loaded.params)] == [path for path, _ in flat(student.params)]
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(student.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.preprocessing.scale == student.preprocessing.scale
    np.testing.assert_array_equal(loaded.preprocessing.mean, student.preprocessing.mean)
    np.testing.assert_array_equal(loaded.preprocessing.std, student.preprocessing.std)
    features = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.probabilities(features), student.probabilities(features))
    with h5py.File(student_file) as handle:
        assert handle.attrs["format"] == STUDENT_FORMAT
        assert "teachers" not in handle and "votes" not in handle


def test_a_bundle_without_class_names_names_the_classes_by_number(tmp_path):
    save_student(tmp_path / "s.h5", make_student(), class_names=(), privacy={}, statement="")
    _, attrs = load_student(tmp_path / "s.h5")
    assert attrs["class_names"] == ("0", "1", "2")


def test_write_predictions(tmp_path):
    probabilities = np.array([[0.2, 0.8], [0.9, 0.1]], np.float64)
    write_predictions(tmp_path / "p.h5", np.array([1, 0]), probabilities, ("no", "yes"))
    with h5py.File(tmp_path / "p.h5") as handle:
        assert handle.attrs["format"] == PREDICTIONS_FORMAT and handle.attrs["version"] == 1
        assert list(handle.attrs["class_names"]) == ["no", "yes"]
        assert handle["labels"].dtype == np.int64 and handle["labels"][()].tolist() == [1, 0]
        assert handle["probabilities"].dtype == np.float32
        np.testing.assert_allclose(handle["probabilities"][()], probabilities, rtol=1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]  # no temporary left


# ----------------------------------------------------------------------------------------------------
# predict()


def test_predict_equals_the_command(student_file, tmp_path):
    data = write_input(tmp_path / "input.h5")
    result = predict(student_file, data, out=tmp_path / "lib.h5")
    assert isinstance(result, PredictionResult)
    command = invoke("predict", student_file, data, "--out", tmp_path / "cli.h5", "--json")
    assert command.exit_code == 0, command.output
    assert json.loads(command.output) == {**result.summary(), "out": str(tmp_path / "cli.h5")}
    with h5py.File(tmp_path / "lib.h5") as lib, h5py.File(tmp_path / "cli.h5") as cli:
        assert dict(lib.attrs).keys() == dict(cli.attrs).keys()
        for name in ("labels", "probabilities"):
            np.testing.assert_array_equal(lib[name][()], cli[name][()])
        np.testing.assert_array_equal(lib["labels"][()], result.labels)
        np.testing.assert_allclose(lib["probabilities"][()], result.probabilities, rtol=1e-6)


def test_predict_result(student_file, tmp_path):
    data = write_input(tmp_path / "input.h5", rows=12)
    result = predict(student_file, data)
    student, _ = load_student(student_file)
    with h5py.File(data) as handle:
        features, labels = handle["features"][()], handle["labels"][()]
    expected = student.probabilities(features)
    np.testing.assert_array_equal(result.probabilities, expected)
    np.testing.assert_array_equal(result.labels, expected.argmax(axis=1))
    assert result.accuracy == pytest.approx(float((result.labels == labels).mean()))
    assert result.out is None and result.class_names == CLASSES
    assert result.class_counts == {
        name: int((result.labels == i).sum()) for i, name in enumerate(CLASSES)
    }
    assert sum(result.class_counts.values()) == 12
    summary = result.summary()
    assert summary == {
        "records": 12,
        "accuracy": result.accuracy,
        "accuracy_records": 12,
        "labels_skipped": 0,
        "filled_cells": 0,
        "id_column": "individual_id",
        "out": None,
        "class_counts": result.class_counts,
    }
    json.dumps(summary)  # plain values
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.h5"]


def test_predict_without_labels_has_no_accuracy(student_file, tmp_path):
    result = predict(student_file, write_input(tmp_path / "input.h5", labels=False))
    assert result.accuracy is None and len(result.labels) == 12


def test_predict_refuses_an_input_of_another_shape(student_file, tmp_path):
    data = write_input(tmp_path / "input.h5", features=4)
    with pytest.raises(PateError, match=re.escape("features have shape (4,), expected (3,)")):
        predict(student_file, data, out=tmp_path / "p.h5")
    assert not (tmp_path / "p.h5").exists()


def test_predict_never_writes_over_an_input(student_file, tmp_path):
    data = write_input(tmp_path / "input.h5")
    before = data.read_bytes()
    with pytest.raises(PateError, match="`out` is the same path as `input_path`") as raised:
        predict(student_file, data, out=data, force=True)
    assert raised.value.exit_code == 2 and data.read_bytes() == before
    with pytest.raises(PateError, match="`out` is the same path as `student_path`"):
        predict(student_file, data, out=student_file, force=True)
    result = invoke("predict", student_file, data, "--out", data, "--force")
    assert result.exit_code == 2 and "--out is the same path as INPUT.h5" in result.output


def test_predict_refuses_an_existing_output_without_force(student_file, tmp_path):
    data, out = write_input(tmp_path / "input.h5"), tmp_path / "p.h5"
    predict(student_file, data, out=out)  # earlier predictions
    before = out.read_bytes()
    with pytest.raises(PateError, match="already exists; pass `force`") as raised:
        predict(student_file, data, out=out)
    assert raised.value.exit_code == 4 and out.read_bytes() == before
    result = invoke("predict", student_file, data, "--out", out)
    assert result.exit_code == 4 and "pass --force to replace it" in result.output
    predict(student_file, data, out=out, force=True)
    with h5py.File(out) as handle:
        assert handle.attrs["format"] == PREDICTIONS_FORMAT


# ----------------------------------------------------------------------------------------------------
# New rows as users have them: unknown labels, ids, empty cells, private input


#: A schema as `pate dataset csv` writes it, by hand: a numeric and a categorical feature, the label
#: column, an id column, fill values from the public split, and an import that dropped empty cells
#: (so the categorical column has no <missing> indicator; its fill is <other>).
SCHEMA = {
    "format": "pate-schema",
    "version": 1,
    "columns": [
        {"name": "age", "kind": "numeric", "fill": 40.0},
        {"name": "work", "kind": "categorical", "categories": ["desk", "road"], "fill": "<other>"},
    ],
    "feature_names": ["age", "work=desk", "work=road", "work=<other>"],
    "label_column": "y",
    "individual_column": "person",
    "classes": ["cat", "dog", "eel"],
    "num_classes": 3,
    "missing": "drop",
    "missing_tokens": ["", "?", "na", "nan"],
    "source": "public split and declared options only",
}
ROWS = [  # person, age, work, y
    ("p1", "31", "desk", "cat"),
    ("p2", "", "road", "dog"),  # empty age: filled with 40
    ("p3", "52", "", "eel"),  # empty work: <other>
    ("p4", "47", "sea", "fish"),  # a label the student does not know
    ("p5", "29", "road", ""),  # no label
]


@pytest.fixture(scope="module")
def schema_student(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema")
    model = ModelConfig("mlp", (4,), 3, hidden=(5,))
    params = model.build().init(jax.random.key(2), np.zeros((1, 4), np.float32))["params"]
    student = TrainedModel(
        params=jax.tree.map(np.asarray, params),
        model=model,
        preprocessing=Preprocessing(1.0, np.zeros(4, np.float32), np.ones(4, np.float32)),
    )
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    save_student(
        folder / "student.h5",
        student,
        class_names=CLASSES,
        privacy={},
        statement="",
        schema=(folder / "schema.json").read_text(),
    )
    return folder / "student.h5", student


def write_rows(path, rows=ROWS, header=("person", "age", "work", "y")):
    path.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")
    return path


def test_new_rows_with_unknown_or_empty_labels_are_predicted_and_left_out_of_the_accuracy(
    schema_student, tmp_path
):
    student_path, student = schema_student
    result = predict(student_path, write_rows(tmp_path / "new.csv"))
    assert len(result.labels) == 5 and result.labels_skipped == 2 and result.accuracy_records == 3
    expected = np.array(
        [[31, 1, 0, 0], [40, 0, 1, 0], [52, 0, 0, 1], [47, 0, 0, 1], [29, 0, 1, 0]], np.float32
    )
    np.testing.assert_array_equal(result.labels, student.predict(expected))
    truth = np.array([0, 1, 2])
    assert result.accuracy == pytest.approx(float((result.labels[:3] == truth).mean()))
    command = invoke("predict", student_path, tmp_path / "new.csv")
    assert command.exit_code == 0, command.output
    text = " ".join(command.output.split())
    assert "on the 3 records whose label the student knows" in text
    assert "2 records with an empty or unknown label left out of the accuracy" in text


def test_empty_cells_take_the_schemas_fill_values_whatever_the_import_policy(
    schema_student, tmp_path
):
    student_path, student = schema_student
    result = predict(student_path, write_rows(tmp_path / "new.csv"))
    assert result.filled_cells == 2
    filled = np.array([[40, 0, 1, 0], [52, 0, 0, 1]], np.float32)  # age 40; work <other>
    np.testing.assert_allclose(result.probabilities[1:3], student.probabilities(filled), rtol=1e-6)
    command = invoke("predict", student_path, tmp_path / "new.csv")
    assert "filled 2 empty cells with the schema's public fill values" in command.output


def test_predictions_carry_the_inputs_ids_and_are_owner_only(schema_student, tmp_path):
    student_path, _ = schema_student
    rows = write_rows(tmp_path / "new.csv")
    result = invoke("predict", student_path, rows, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "predicted,person,p_cat,p_dog,p_eel"
    assert [line.split(",")[1] for line in lines[1:]] == ["p1", "p2", "p3", "p4", "p5"]
    assert oct((tmp_path / "p.csv").stat().st_mode & 0o777) == "0o600"
    predict(student_path, rows, out=tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5") as handle:
        assert [v.decode() for v in handle["ids"][()]] == ["p1", "p2", "p3", "p4", "p5"]
        assert handle["ids"].attrs["id_column"] == "person"
    assert oct((tmp_path / "p.h5").stat().st_mode & 0o777) == "0o600"
    # A CSV without the schema's id column: --id-column names one; without it, no id column.
    plain = write_rows(
        tmp_path / "plain.csv", [(r[1], r[2], r[3], f"r{i}") for i, r in enumerate(ROWS)],
        header=("age", "work", "y", "row"),
    )  # fmt: skip
    assert predict(student_path, plain).id_column is None
    invoke("predict", student_path, plain, "--out", tmp_path / "q.csv", "--id-column", "row")
    lines = (tmp_path / "q.csv").read_text().splitlines()
    assert lines[0].startswith("predicted,row,") and lines[1].split(",")[1] == "r0"
    bad = invoke("predict", student_path, plain, "--id-column", "nope")
    assert bad.exit_code == 2 and bad.output.startswith("error: --id-column 'nope': not a column")


def test_dataset_predictions_carry_individual_ids(student_file, tmp_path):
    data = write_input(tmp_path / "input.h5", rows=6)
    predict(student_file, data, out=tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5") as handle:
        assert handle["ids"][()].tolist() == list(range(6))
        assert handle["ids"].attrs["id_column"] == "individual_id"
    with pytest.raises(PateError, match="`id_column` 'x': only for a CSV input"):
        predict(student_file, data, id_column="x")


def test_predict_is_importable_from_pate():
    import pate

    assert pate.predict is predict and pate.PredictionResult is PredictionResult


def test_predict_force_replaces_its_own_predictions_only(student_file, tmp_path):
    data = write_input(tmp_path / "input.h5")
    mine, theirs = tmp_path / "predictions.csv", tmp_path / "table.csv"
    predict(student_file, data, out=mine)
    predict(student_file, data, out=mine, force=True)  # its own CSV: replaced
    assert mine.read_text().startswith("predicted,")
    theirs.write_text("name,score\nada,3\n")
    with pytest.raises(PateError, match="is something else, not pate-predictions") as raised:
        predict(student_file, data, out=theirs, force=True)
    assert raised.value.exit_code == 4 and theirs.read_text() == "name,score\nada,3\n"
