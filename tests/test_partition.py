"""Partition invariants (property tests), the stage as one call, and the partition command's error
paths."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.main import app
from pate.errors import PateError
from pate.io import Dataset, read_dataset, write_dataset
from pate.partitioning import (
    PartitionConfig,
    PartitionJob,
    assign_shards,
    partition,
    partition_file,
    verify_shards_file,
)


@st.composite
def fleets(draw):
    num_individuals = draw(st.integers(min_value=1, max_value=80))
    counts = draw(st.lists(st.integers(1, 40), min_size=num_individuals, max_size=num_individuals))
    ids = np.repeat(np.arange(num_individuals) * 7 + 3, counts)
    order = np.random.default_rng(draw(st.integers(0, 1000))).permutation(len(ids))
    teachers = draw(st.integers(min_value=1, max_value=num_individuals))
    return ids[order], teachers, np.array(counts)


@settings(max_examples=150, deadline=None)
@given(fleets())
def test_assignment_invariants(fleet):
    ids, teachers, counts = fleet
    assignment = assign_shards(ids, teachers, seed=1, method="lpt")
    # Covering: every record has a shard in range.
    assert len(assignment.record_shard) == len(ids)
    assert assignment.record_shard.min() >= 0 and assignment.record_shard.max() < teachers
    # One individual -> one shard: all records of an id share a shard.
    for individual in np.unique(ids):
        assert len(np.unique(assignment.record_shard[ids == individual])) == 1
    # Disjoint and no empty shard: shards partition the records.
    sizes = np.bincount(assignment.record_shard, minlength=teachers)
    assert sizes.sum() == len(ids) and (sizes > 0).all()
    # Balance (LPT): the heaviest shard exceeds the lightest by at most the largest individual.
    assert sizes.max() - sizes.min() <= counts.max()


@settings(max_examples=150, deadline=None)
@given(fleets(), st.integers(0, 10**6), st.integers(0, 3))
def test_hash_assignment_invariants_and_stability(fleet, newcomer, seed):
    """Adding one individual moves nobody else: the add/remove neighbours differ in one shard."""
    ids, teachers, _ = fleet
    try:
        before = assign_shards(ids, teachers, seed=seed, method="hash")
    except PateError as exc:  # few individuals: a shard may get nobody, which is refused
        assert "get no individual" in str(exc)
        return
    for individual in np.unique(ids):
        assert len(np.unique(before.record_shard[ids == individual])) == 1
    sizes = np.bincount(before.record_shard, minlength=teachers)
    assert sizes.sum() == len(ids) and (sizes > 0).all()
    extra = 10**7 + newcomer  # an id not in the fleet
    after = assign_shards(np.concatenate([ids, [extra, extra]]), teachers, seed=seed)
    np.testing.assert_array_equal(after.record_shard[: len(ids)], before.record_shard)


def test_lpt_moves_others_when_an_individual_is_added_and_says_so(tmp_path):
    """Why hash is the default: LPT's placements depend on every individual's record count."""
    ids = np.repeat(np.arange(40), np.arange(1, 41))
    before = assign_shards(ids, 4, seed=0, method="lpt").record_shard
    after = assign_shards(np.concatenate([ids, [999] * 25]), 4, seed=0, method="lpt").record_shard
    assert (after[: len(ids)] != before).any()
    data = Dataset(
        features=np.zeros((len(ids), 2), np.float32),
        labels=ids % 2,
        individual_id=ids,
        num_classes=2,
    )
    write_dataset(tmp_path / "p.h5", data)
    partition_file(tmp_path / "p.h5", tmp_path / "lpt.h5", PartitionConfig(4, method="lpt"))
    partition_file(tmp_path / "p.h5", tmp_path / "hash.h5", PartitionConfig(4))
    with h5py.File(tmp_path / "lpt.h5") as lpt, h5py.File(tmp_path / "hash.h5") as hashed:
        assert lpt.attrs["unit_of_privacy"] == "individual-records"
        assert lpt.attrs["method"] == "greedy-lpt"
        assert hashed.attrs["unit_of_privacy"] == "individual"
        assert hashed.attrs["method"] == "keyed-hash"


def test_string_ids_and_determinism():
    ids = np.array([f"car-{i % 23}" for i in range(500)])
    first = assign_shards(ids, 5, seed=9)
    second = assign_shards(ids, 5, seed=9)
    assert np.array_equal(first.record_shard, second.record_shard)
    for car in np.unique(ids):
        assert len(set(first.record_shard[ids == car])) == 1


def test_fewer_individuals_than_teachers_is_refused():
    with pytest.raises(PateError, match="3 individuals for 4 teachers"):
        assign_shards(np.array([1, 1, 2, 3]), 4)


def _write(path, features, labels, ids, num_classes=3):
    write_dataset(path, Dataset(features, labels, ids, num_classes=num_classes, split="private"))


def test_partition_file_streams_and_verifies(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(40), rng.integers(1, 30, 40))
    rng.shuffle(ids)
    features = rng.normal(size=(len(ids), 4)).astype(np.float32)
    features[:, 0] = ids  # lets the test check which record went where
    labels = rng.integers(0, 3, len(ids))
    _write(tmp_path / "in.h5", features, labels, ids)
    summary = partition_file(
        tmp_path / "in.h5",
        tmp_path / "shards.h5",
        PartitionConfig(num_teachers=6, chunk_records=17),
    )
    assert summary.records == len(ids) and summary.individuals == 40 and summary.num_shards == 6
    verify_shards_file(tmp_path / "shards.h5")
    with h5py.File(tmp_path / "shards.h5") as handle:
        offsets = handle["shard_offsets"][()]
        out_ids = handle["individual_id"][()]
        out_features = handle["features"][()]
        out_labels = handle["labels"][()]
    # Rows travelled with their ids and labels (the chunked scatter kept them together).
    assert np.array_equal(out_features[:, 0], out_ids)
    assert sorted(zip(out_ids, out_labels, strict=True)) == sorted(zip(ids, labels, strict=True))
    shard_sets = [set(out_ids[offsets[t] : offsets[t + 1]]) for t in range(6)]
    for a in range(6):
        for b in range(a + 1, 6):
            assert not shard_sets[a] & shard_sets[b]
    assert summary.size_ratio == pytest.approx(np.diff(offsets).max() / np.diff(offsets).min())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda f, lab, i: (np.where(np.arange(len(f))[:, None] == 5, np.nan, f), lab, i),
            "NaN or inf in record 5",
        ),
        (
            lambda f, lab, i: (f, np.where(np.arange(len(lab)) == 2, 7, lab), i),
            "holds 7, expected labels in 0..2",
        ),
    ],
)
def test_bad_records_are_refused_without_output(tmp_path, mutate, message):
    rng = np.random.default_rng(1)
    ids = np.repeat(np.arange(10), 5)
    features, labels, ids = mutate(
        rng.normal(size=(50, 2)).astype(np.float32), rng.integers(0, 3, 50), ids
    )
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as handle:  # bypass write_dataset's own checks
        handle.attrs.update({"format": "pate-dataset", "version": 1, "num_classes": 3})
        handle["features"] = features
        handle["labels"] = labels
        handle["individual_id"] = ids
    with pytest.raises(PateError, match=message):
        partition_file(path, tmp_path / "shards.h5", PartitionConfig(num_teachers=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5"]


def test_read_dataset_errors(tmp_path):
    with pytest.raises(PateError, match="no such dataset file"):
        read_dataset(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(PateError, match="not an HDF5 file"):
        read_dataset(tmp_path / "text.h5")
    _write(tmp_path / "ok.h5", np.zeros((4, 2), np.float32), np.zeros(4, int), np.arange(4))
    with pytest.raises(PateError, match="missing id column 'driver'"):
        read_dataset(tmp_path / "ok.h5", individual_column="driver")


def test_unit_of_privacy_travels_to_the_shards(tmp_path):
    rng = np.random.default_rng(2)
    ids = np.arange(30)
    dataset = Dataset(
        rng.normal(size=(30, 2)).astype(np.float32),
        rng.integers(0, 3, 30),
        ids,
        num_classes=3,
        extra_attrs={"unit_of_privacy": "record"},
    )
    write_dataset(tmp_path / "in.h5", dataset)
    partition_file(tmp_path / "in.h5", tmp_path / "s.h5", PartitionConfig(num_teachers=3))
    with h5py.File(tmp_path / "s.h5") as handle:
        assert handle.attrs["unit_of_privacy"] == "record"
    _write(tmp_path / "plain.h5", dataset.features, dataset.labels, ids)
    partition_file(tmp_path / "plain.h5", tmp_path / "t.h5", PartitionConfig(num_teachers=3))
    with h5py.File(tmp_path / "t.h5") as handle:
        assert handle.attrs["unit_of_privacy"] == "individual"


# ----------------------------------------------------------------------------------------------------
# The stage as one call: partition(PartitionJob(...))


def _fleet(path, individuals=20, seed=3):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(individuals), rng.integers(1, 8, individuals))
    features = rng.normal(size=(len(ids), 3)).astype(np.float32)
    _write(path, features, rng.integers(0, 3, len(ids)), ids)
    return path


def _contents(path) -> dict:
    with h5py.File(path) as handle:
        arrays = {}
        handle.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
        return {"attrs": dict(handle.attrs), **arrays}


def test_partition_job_writes_what_the_command_writes(tmp_path):
    private = _fleet(tmp_path / "private.h5")
    job = PartitionJob(input=private, out=tmp_path / "lib.h5", num_teachers=4, seed=7)
    summary = partition(job)
    args = ["partition", private, "--teachers", 4, "--seed", 7, "--out", tmp_path / "cli.h5"]
    result = CliRunner().invoke(app, [*map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    library, command = _contents(tmp_path / "lib.h5"), _contents(tmp_path / "cli.h5")
    assert library.keys() == command.keys()
    for name in library:
        if name == "attrs":
            assert {k: str(v) for k, v in library[name].items()} == {
                k: str(v) for k, v in command[name].items()
            }
        else:
            np.testing.assert_array_equal(library[name], command[name])
    assert json.loads(result.output) == {
        **summary.summary(),
        "shards_file": str(tmp_path / "cli.h5"),
    }
    assert summary.path == str(tmp_path / "lib.h5") and summary.num_shards == 4


def test_partition_job_defaults_are_the_configs():
    job = PartitionJob(input="in.h5", out="out.h5", num_teachers=3)
    assert isinstance(job.input, Path) and isinstance(job.out, Path)
    assert job.config == PartitionConfig(num_teachers=3)
    assert not job.force
    command = importlib.import_module("cli.partition").command
    defaults = {param.name: param.default for param in command.params}
    for name in ("seed", "individual_column", "force"):
        assert defaults[name] == getattr(job, name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_teachers": 0}, "`num_teachers`: 0, expected >= 1"),
        ({"num_teachers": 2.5}, "`num_teachers`: 2.5, expected an integer"),
        ({"num_teachers": True}, "`num_teachers`: True, expected an integer"),
        ({"seed": -1}, "`seed`: -1, expected >= 0"),
        ({"chunk_records": 0}, "`chunk_records`: 0, expected >= 1"),
        ({"individual_column": ""}, "`individual_column`: '', expected a dataset name"),
        ({"out": ""}, "`out`: '', expected a path"),
        ({"input": None}, "`input`: None, expected a path"),
    ],
)
def test_partition_job_refuses_bad_fields(change, message):
    fields = {"input": "in.h5", "out": "out.h5", "num_teachers": 3, **change}
    with pytest.raises(PateError, match=re.escape(message)):
        PartitionJob(**fields)


def test_partition_accepts_numpy_integers(tmp_path):
    job = PartitionJob(_fleet(tmp_path / "in.h5"), tmp_path / "s.h5", num_teachers=np.int64(3))
    assert partition(job).num_shards == 3


def test_partition_refuses_its_input_as_output_even_with_force(tmp_path):
    private = _fleet(tmp_path / "private.h5")
    before = private.read_bytes()
    with pytest.raises(PateError, match="`out` is the same path as `input`") as raised:
        partition(PartitionJob(private, private, num_teachers=2, force=True))
    assert raised.value.exit_code == 2
    (tmp_path / "link.h5").symlink_to(private)
    with pytest.raises(PateError, match="`out` is the same path as `input`"):
        partition(PartitionJob(private, tmp_path / "link.h5", num_teachers=2, force=True))
    assert private.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.h5", "private.h5"]


def test_partition_refuses_an_existing_output_without_force(tmp_path):
    private, out = _fleet(tmp_path / "private.h5"), tmp_path / "shards.h5"
    partition(PartitionJob(private, out, num_teachers=3))  # another run's shards file
    before = out.read_bytes()
    with pytest.raises(PateError, match="already exists.*pass `force`") as raised:
        partition(PartitionJob(private, out, num_teachers=2))
    assert raised.value.exit_code == 4 and out.read_bytes() == before
    result = CliRunner().invoke(
        app, ["partition", str(private), "--teachers", "2", "--out", str(out)]
    )
    assert result.exit_code == 4 and "pass --force to replace it" in result.output
    partition(PartitionJob(private, out, num_teachers=2, force=True))
    verify_shards_file(out)


def test_partition_force_never_replaces_a_file_it_did_not_write(tmp_path):
    private, out = _fleet(tmp_path / "private.h5"), tmp_path / "notes.h5"
    out.write_bytes(b"someone's file")
    with pytest.raises(PateError, match="already exists and is something else, not pate-shards"):
        partition(PartitionJob(private, out, num_teachers=2, force=True))
    assert out.read_bytes() == b"someone's file"


def test_the_command_says_fields_as_flags(tmp_path):
    private = _fleet(tmp_path / "private.h5", individuals=3)
    for args, message in [
        (["--teachers", "5"], "3 individuals for 5 teachers, expected at least one individual per "
         "teacher; use fewer teachers (--teachers)"),
        (["--teachers", "2", "--seed", "-1"], "error: --seed: -1, expected >= 0"),
        (["--teachers", "2", "--individual-column", ""], "error: --individual-column: ''"),
    ]:  # fmt: skip
        result = CliRunner().invoke(
            app, ["partition", str(private), "--out", str(tmp_path / "s.h5"), *args]
        )
        assert result.exit_code == 2 and message in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.h5"]


def test_partition_is_importable_from_pate_without_jax():
    code = (
        "import sys, pate, pate.partitioning, cli.partition, cli.predict, cli.analyze, cli.plan, "
        "cli.dataset, cli.inspect\n"
        "from pate import partition, PartitionJob, PartitionSummary\n"
        "assert callable(partition) and partition is pate.partitioning.partition, partition\n"
        "assert PartitionJob.__module__ == 'pate.partitioning'\n"
        "assert 'jax' not in sys.modules, 'jax imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)


def test_help_describes_the_default_method_hash_not_lpt():
    """The help said "Shards are balanced by record count" (LPT) although `hash` is the default."""
    result = CliRunner().invoke(app, ["partition", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "By default (--method hash) an individual's shard is a keyed hash of its own id" in text
    assert "Shards are balanced by record count" not in text
    assert "--method lpt balances record counts instead" in text
