"""Importing users' tables (issues 20 and 22): a split that is a function of each individual's own
id, ids normalised one way, streaming through pyarrow (CSV and Parquet), hostile cells as one-line
errors, and panel tables as users have them (empty labels, ``0.0``/``1.0`` labels, row numbers)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.data import tables
from pate.data.generic import build_csv, build_npz, build_parquet, content_ids, normalise_ids
from pate.data.splits import split_codes
from pate.errors import PateError
from pate.io import read_dataset


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _people(n: int, seed: int = 0) -> list[dict]:
    """Records of n people, 1 to 4 each, with a numeric, a text and a label column."""
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(n):
        for _ in range(int(rng.integers(1, 5))):
            x = round(float(rng.normal()), 3)
            rows.append(
                {
                    "pid": str(person),
                    "x": str(x),
                    "town": str(rng.choice(["oslo", "rome", "lima"])),
                    "y": str(int(x > 0)),
                }
            )
    return rows


def _write_csv(path: Path, rows: list[dict], columns=("pid", "x", "town", "y")) -> Path:
    lines = [",".join(columns)] + [",".join(r[c] for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _split_of(person: str, seed: int = 0) -> int:
    return int(split_codes([person], public_fraction=0.1, test_fraction=0.1, seed=seed)[0])


def _h5_contents(path: Path) -> dict:
    with h5py.File(path, "r") as handle:
        values = {f"@{k}": repr(np.asarray(v).tolist()) for k, v in handle.attrs.items()}
        values.update({k: repr(handle[k][()].tolist()) for k in handle})
    return values


# -- issue 20 P0: neighbouring inputs give the same public and test files --------------------------


@pytest.mark.parametrize("change", ["remove", "add"])
def test_neighbouring_one_file_imports_give_byte_identical_public_test_and_schema(tmp_path, change):
    rows = _people(300)
    private_people = [p for p in dict.fromkeys(r["pid"] for r in rows) if _split_of(p) == 0]
    if change == "remove":  # one person of the private split removed (their records)
        gone = private_people[1]
        neighbour = [r for r in rows if r["pid"] != gone]
    else:  # one person added, who lands in the private split
        newcomer = next(str(i) for i in range(1000, 2000) if _split_of(str(i)) == 0)
        neighbour = rows[:50] + [dict(rows[0], pid=newcomer), dict(rows[1], pid=newcomer)]
        neighbour += rows[50:]
    outs = []
    for name, table in (("a", rows), ("b", neighbour)):
        (tmp_path / name).mkdir()  # the file's name is in the attributes: the same in both
        path = _write_csv(tmp_path / name / "all.csv", table)
        out = tmp_path / f"out-{name}"
        result = _cli(
            "dataset", "csv", "--input", path, "--label-column", "y", "--individual-column",
            "pid", "--out", out,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "get no privacy protection" in result.stderr
        outs.append(out)
    for filename in ("public.h5", "test.h5", "schema.json"):
        assert (outs[0] / filename).read_bytes() == (outs[1] / filename).read_bytes(), filename
    assert (outs[0] / "private.h5").read_bytes() != (outs[1] / "private.h5").read_bytes()
    with h5py.File(outs[0] / "public.h5", "r") as handle:
        note = handle.attrs["split_note"]
    private_records = len(read_dataset(outs[0] / "private.h5"))
    assert "keyed hash" in note and str(private_records) not in note.split("records:")[1]


def test_neighbouring_imports_without_an_id_column_give_identical_public_and_test_files(tmp_path):
    rows = _people(200, 14)
    for i, row in enumerate(rows):
        row["x"] = f"{i}.5"  # every record distinct
    outs = []
    for name, table in (("a", rows), ("b", rows[:3] + rows[4:])):
        (tmp_path / name).mkdir()
        path = _write_csv(tmp_path / name / "all.csv", table, ("x", "town", "y"))
        build_csv(
            tmp_path / f"out-{name}", input=path, label_column="y", records_are_individuals=True
        )
        outs.append(tmp_path / f"out-{name}")
    for filename in ("public.h5", "test.h5", "schema.json"):
        assert (outs[0] / filename).read_bytes() == (outs[1] / filename).read_bytes(), filename
    features, labels = np.arange(60, dtype=np.float32).reshape(30, 2), np.arange(30) % 2
    ids = content_ids([features[i].tobytes() + repr(labels[i].item()).encode() for i in range(30)])
    codes = split_codes(ids, public_fraction=0.3, test_fraction=0.3, seed=0)
    gone = int(np.flatnonzero(codes == 0)[0])  # a record of the private split
    np.savez(tmp_path / "a" / "all.npz", features=features, y=labels)
    np.savez(
        tmp_path / "b" / "all.npz",
        features=np.delete(features, gone, axis=0),
        y=np.delete(labels, gone),
    )
    for name in ("a", "b"):
        build_npz(
            tmp_path / f"npz-{name}",
            input=tmp_path / name / "all.npz",
            label_column="y",
            records_are_individuals=True,
            public_fraction=0.3,
            test_fraction=0.3,
        )
    for split in ("public", "test"):
        first, second = (tmp_path / f"npz-{n}" / f"{split}.h5" for n in "ab")
        assert first.read_bytes() == second.read_bytes()


def test_neighbouring_npz_imports_give_identical_public_and_test_files(tmp_path):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 200, 900)
    features = rng.normal(size=(900, 3))
    labels = rng.integers(0, 3, 900)
    gone = next(i for i in np.unique(ids).tolist() if _split_of(str(i)) == 0)
    keep = ids != gone
    for name, mask in (("a", np.ones(900, dtype=bool)), ("b", keep)):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "all.npz"
        np.savez(path, features=features[mask], y=labels[mask], id=ids[mask])
        build_npz(
            tmp_path / f"out-{name}",
            input=path,
            label_column="y",
            individual_column="id",
        )
    for split in ("public", "test"):
        first, second = (tmp_path / f"out-{n}" / f"{split}.h5" for n in "ab")
        assert _h5_contents(first) == _h5_contents(second)
        assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "out-a" / "schema.json").read_bytes() == (
        tmp_path / "out-b" / "schema.json"
    ).read_bytes()


# -- issue 20 P1: ids normalised one way ----------------------------------------------------------


def test_ids_are_normalised_one_way():
    assert normalise_ids(np.array([" 0.0", "7", "007", "1e3"]), "f", "id").tolist() == [
        0,
        7,
        7,
        1000,
    ]
    assert normalise_ids(np.array(["0.0", "car-1"]), "f", "id").tolist() == ["0", "car-1"]
    assert normalise_ids(np.array([0.0, 2.0]), "f", "id").tolist() == [0, 2]
    assert tables.canonical_id("1.5") == ("1.5", False)


def test_an_id_written_0_0_in_one_file_and_0_in_another_is_refused(tmp_path):
    private = [{"pid": "0.0", "x": "1", "town": "oslo", "y": "1"}] + _people(20, 1)[1:]
    public = [dict(r, pid=str(100 + i)) for i, r in enumerate(_people(10, 2))]
    public[0]["pid"] = "0"
    test = [dict(r, pid=str(500 + i)) for i, r in enumerate(_people(10, 3))]
    files = {
        "private": _write_csv(tmp_path / "private.csv", private),
        "public": _write_csv(tmp_path / "public.csv", public),
        "test": _write_csv(tmp_path / "test.csv", test),
    }
    with pytest.raises(PateError, match=r"individual '0' is in both public and private"):
        build_csv(tmp_path / "out", **files, label_column="y", individual_column="pid")
    assert not (tmp_path / "out" / "public.h5").exists()


def test_one_person_written_two_ways_stays_in_one_split(tmp_path):
    rows = _people(120, 4)
    for i, row in enumerate(rows):  # every other record of each person writes the id as a float
        if i % 2:
            row["pid"] = f"{row['pid']}.0"
    build_csv(
        tmp_path / "out",
        input=_write_csv(tmp_path / "t.csv", rows),
        label_column="y",
        individual_column="pid",
    )
    owners: dict = {}
    for split in ("private", "public", "test"):
        data = read_dataset(tmp_path / "out" / f"{split}.h5")
        assert data.individual_id.dtype == np.int64
        for person in set(data.individual_id.tolist()):
            assert owners.setdefault(person, split) == split
            assert ("private", "public", "test")[_split_of(str(person))] == split


# -- issue 20 item 5: streaming; Parquet ------------------------------------------------------------


def test_chunks_do_not_change_the_files(tmp_path, monkeypatch):
    path = _write_csv(tmp_path / "t.csv", _people(400, 5))
    build_csv(tmp_path / "big", input=path, label_column="y", individual_column="pid")
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 512)  # about 25 records per chunk
    sizes = []
    chunks = tables.Source.chunks

    def counted(self):
        for cells, start in chunks(self):
            sizes.append(len(cells))
            yield cells, start

    monkeypatch.setattr(tables.Source, "chunks", counted)
    build_csv(tmp_path / "small", input=path, label_column="y", individual_column="pid")
    records = len(path.read_text().splitlines()) - 1
    assert sum(sizes) == 2 * records and max(sizes) < 40  # two passes, each chunk by chunk
    for filename in ("private.h5", "public.h5", "test.h5", "schema.json"):
        assert (tmp_path / "big" / filename).read_bytes() == (
            tmp_path / "small" / filename
        ).read_bytes()


def test_errors_name_the_record_in_a_later_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 256)
    rows = _people(200, 6)
    path = _write_csv(tmp_path / "t.csv", rows)
    lines = path.read_text().splitlines()
    lines[151] = lines[151].rsplit(",", 1)[0]  # record 151 loses a field
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PateError, match=r"t\.csv: record 151 has 3 fields, expected 4"):
        build_csv(tmp_path / "out", input=path, label_column="y", individual_column="pid")
    rows[170]["x"] = "abc"
    rows[170]["pid"] = next(  # a private person, so the schema still says 'x' is numeric
        str(i) for i in range(5000, 6000) if _split_of(str(i)) == 0
    )
    path = _write_csv(tmp_path / "u.csv", rows)
    with pytest.raises(PateError, match=r"u\.csv: column 'x' record 171 holds 'abc', expected"):
        build_csv(tmp_path / "out", input=path, label_column="y", individual_column="pid")


def test_parquet_import_matches_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _people(150, 7)
    rows[3]["x"] = ""
    csv_path = _write_csv(tmp_path / "t.csv", rows)
    table = pa.table(
        {
            "pid": pa.array([int(r["pid"]) for r in rows]),
            "x": pa.array([float(r["x"]) if r["x"] else None for r in rows]),
            "town": pa.array([r["town"] for r in rows]),
            "y": pa.array([float(r["y"]) for r in rows]),  # labels as doubles: 0.0 / 1.0
        }
    )
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=40)
    options = dict(label_column="y", individual_column="pid", missing="fill")
    build_csv(tmp_path / "from-csv", input=csv_path, **options)
    build_parquet(tmp_path / "from-parquet", input=tmp_path / "t.parquet", **options)
    for split in ("private", "public", "test"):
        a = read_dataset(tmp_path / "from-csv" / f"{split}.h5")
        b = read_dataset(tmp_path / "from-parquet" / f"{split}.h5")
        assert np.array_equal(a.features, b.features)
        assert np.array_equal(a.individual_id, b.individual_id)
        assert (a.labels is None and b.labels is None) or np.array_equal(a.labels, b.labels)
    schema_csv = json.loads((tmp_path / "from-csv" / "schema.json").read_text())
    schema_parquet = json.loads((tmp_path / "from-parquet" / "schema.json").read_text())
    assert schema_csv["columns"] == schema_parquet["columns"]
    assert schema_parquet["num_classes"] == 2


def test_cli_parquet_errors_are_one_line(tmp_path):
    (tmp_path / "t.parquet").write_text("not parquet")
    result = _cli(
        "dataset", "parquet", "--input", tmp_path / "t.parquet", "--label-column", "y",
        "--individual-column", "pid", "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "t.parquet: cannot be read as Parquet" in result.output
    assert result.output.count("\n") == 1 and not (tmp_path / "out").exists()


# -- issue 20 P2: hostile cells ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("town", "ro\x00me", r"t\.csv: column 'town' record 8 holds a NUL byte"),
        ("pid", "4\x002", r"t\.csv: column 'pid' record 8 holds a NUL byte"),
        ("x", "1e39", r"t\.csv: column 'x' record 8 holds '1e39', expected a finite number"),
    ],
)
def test_hostile_cells_are_one_line_errors(tmp_path, column, value, message):
    rows = _people(60, 8)
    rows[7][column] = value
    path = _write_csv(tmp_path / "t.csv", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning before the error
        result = _cli(
            "dataset", "csv", "--input", path, "--label-column", "y", "--individual-column",
            "pid", "--out", tmp_path / "out",
        )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "Traceback" not in result.output and "Warning" not in result.output
    import re

    assert re.search(message, result.output), result.output


def test_a_far_class_id_is_refused_not_a_million_classes(tmp_path):
    rows = _people(200, 9)
    tested = next(r for r in rows if _split_of(r["pid"]) == 2)
    tested["y"] = "1000000"
    path = _write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(
        PateError, match=r"class ids up to 1000000 but only 3 distinct ones.*--classes"
    ):
        build_csv(tmp_path / "out", input=path, label_column="y", individual_column="pid")
    # Declared, the same labels import (the private labels are checked against the classes).
    rows = [r for r in rows if r["y"] != "1000000" or _split_of(r["pid"]) != 0]
    build_csv(
        tmp_path / "declared",
        input=_write_csv(tmp_path / "u.csv", rows),
        label_column="y",
        individual_column="pid",
        classes=("0", "1", "1000000"),
    )
    assert read_dataset(tmp_path / "declared" / "test.h5").num_classes == 3


def test_a_sparse_but_small_class_space_is_accepted(tmp_path):
    rows = _people(200, 10)
    for row in rows:  # classes 0 and 5: a few absent class ids are normal in a small split
        row["y"] = "5" if row["y"] == "1" else "0"
    build_csv(
        tmp_path / "out",
        input=_write_csv(tmp_path / "t.csv", rows),
        label_column="y",
        individual_column="pid",
    )
    assert read_dataset(tmp_path / "out" / "test.h5").num_classes == 6


# -- issue 22 item 3: a panel table as users have it -----------------------------------------------


def _panel(tmp_path: Path) -> Path:
    """Several records per person over years, empty cells in features and labels, labels written
    0.0/1.0, and a row-number column exported by pandas."""
    rng = np.random.default_rng(11)
    lines = [",person,year,hours,sector,employed"]
    record = 0
    for person in range(150):
        for year in range(1990, 1990 + int(rng.integers(2, 7))):
            hours = "" if rng.random() < 0.1 else f"{rng.normal(38, 6):.1f}"
            sector = "" if rng.random() < 0.1 else str(rng.choice(["farm", "shop", "plant"]))
            label = "" if rng.random() < 0.1 else f"{float(rng.integers(0, 2)):.1f}"
            lines.append(f"{record},{person},{year},{hours},{sector},{label}")
            record += 1
    path = tmp_path / "panel.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_panel_with_empty_labels_imports_with_missing_fill_and_no_other_flag(tmp_path):
    path = _panel(tmp_path)
    out = tmp_path / "data"
    result = _cli(
        "dataset", "csv", "--input", path, "--label-column", "employed", "--individual-column",
        "person", "--missing", "fill", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    notes = result.stderr
    assert "8 feature columns from 4 columns: '' (numeric), 'year' (numeric)" in notes
    assert "column '' looks like a row number or an id" in notes
    assert "records without a label left out" in notes and "of the private split" in notes
    assert "get no privacy protection" in notes
    schema = json.loads((out / "schema.json").read_text())
    assert schema["num_classes"] == 2 and schema["classes"] == []
    numeric = [c for c in schema["columns"] if c["kind"] == "numeric"]
    assert {c["name"] for c in numeric} == {"", "year", "hours"}
    assert all(isinstance(c["fill"], float) for c in numeric)
    assert all("fill" in c for c in schema["columns"])
    for split in ("private", "test"):
        data = read_dataset(out / f"{split}.h5")
        assert set(np.unique(data.labels).tolist()) <= {0, 1} and len(data) > 0
    public = read_dataset(out / "public.h5")
    with h5py.File(out / "public.h5", "r") as handle:
        assert "evaluation_labels" not in handle  # some public records have no label
    raw = path.read_text().splitlines()[1:]
    labelled_or_public = [
        line for line in raw if line.rsplit(",", 1)[1] or _split_of(line.split(",")[1]) == 1
    ]
    total = sum(len(read_dataset(out / f"{s}.h5")) for s in ("private", "public", "test"))
    assert total == len(labelled_or_public) and len(public) > 0


def test_fill_values_are_stored_whatever_the_policy(tmp_path):
    rows = _people(120, 12)
    build_csv(
        tmp_path / "out",
        input=_write_csv(tmp_path / "t.csv", rows),
        label_column="y",
        individual_column="pid",
    )
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    assert schema["missing"] == "error"
    entries = {c["name"]: c for c in schema["columns"]}
    public = read_dataset(tmp_path / "out" / "public.h5")
    assert entries["x"]["fill"] == pytest.approx(float(np.median(public.features[:, 0])), abs=1e-3)
    assert entries["town"]["fill"] == "<other>"


def test_labels_written_as_floats_are_class_ids_and_the_message_agrees(tmp_path):
    rows = _people(150, 13)
    for row in rows:
        row["y"] = f"{float(row['y']):.1f}"
    path = _write_csv(tmp_path / "t.csv", rows)
    build_csv(tmp_path / "out", input=path, label_column="y", individual_column="pid")
    assert read_dataset(tmp_path / "out" / "private.h5").num_classes == 2
    bad = next(r for r in rows if _split_of(r["pid"]) == 0)
    bad["y"] = "2.0"
    path = _write_csv(tmp_path / "u.csv", rows)
    with pytest.raises(PateError) as raised:
        build_csv(tmp_path / "bad", input=path, label_column="y", individual_column="pid")
    assert "holds '2.0' (read as '2'), outside the classes class ids 0..1" in str(raised.value)
