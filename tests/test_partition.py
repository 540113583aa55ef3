"""Partition invariants (property tests) and the partition command's error paths."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pate.errors import PateError
from pate.io import Dataset, read_dataset, write_dataset
from pate.partition import PartitionConfig, assign_shards, partition_file, verify_shards_file


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
    assignment = assign_shards(ids, teachers, seed=1)
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
