"""The private voter store: grouping by individual, verification, HDF5 round trip, feature maps."""

from __future__ import annotations

import os
import stat

import h5py
import numpy as np
import pytest

from pate.errors import PateError
from pate.io import Dataset
from pate.voters import store as store_module
from pate.voters.features import PublicPCA, Standardize
from pate.voters.store import (
    VOTERS_FORMAT,
    VoterStore,
    build_voter_store,
    read_voter_store,
    verify_groups,
    write_voter_store,
)


def _dataset(ids, seed=0, shape=(2, 3)) -> Dataset:
    rng = np.random.default_rng(seed)
    n = len(ids)
    return Dataset(
        features=rng.normal(size=(n, *shape)).astype(np.float32),
        labels=rng.integers(0, 3, n),
        individual_id=np.asarray(ids),
        num_classes=3,
        class_names=("a", "b", "c"),
        path="private.h5",
    )


@pytest.mark.parametrize("ids", [[7, 3, 7, 9, 3, 7], ["zoe", "al", "zoe", "bo", "al", "zoe"]])
def test_records_are_grouped_by_individual_in_file_order(ids):
    data = _dataset(ids)
    scale = Standardize.fit(data.features)
    store = build_voter_store(data, scale)
    sorted_ids = sorted(set(ids))
    assert store.num_individuals == 3 and store.num_records == 6
    counts = [ids.count(who) for who in sorted_ids]
    np.testing.assert_array_equal(store.offsets, np.concatenate(([0], np.cumsum(counts))))
    for u, who in enumerate(sorted_ids):
        rows = [i for i, x in enumerate(ids) if x == who]  # file order within the individual
        group = slice(store.offsets[u], store.offsets[u + 1])
        assert list(store.individual_id[group]) == [who] * len(rows)
        np.testing.assert_array_equal(store.labels[group], data.labels[rows])
        np.testing.assert_allclose(store.features[group], scale(data.features[rows]), rtol=1e-6)
    np.testing.assert_array_equal(store.record_individual, np.repeat([0, 1, 2], counts))
    assert store.features.dtype == np.float32 and store.feature_map["kind"] == "standardize"


def test_round_trip_is_owner_only_and_verified(tmp_path):
    data = _dataset(["b", "a", "b", "c"])
    store = build_voter_store(data, Standardize.fit(data.features))
    path = tmp_path / "voters.h5"
    write_voter_store(path, store)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with h5py.File(path) as handle:
        assert handle.attrs["format"] == VOTERS_FORMAT
    again = read_voter_store(path)
    for name in ("features", "labels", "individual_id", "offsets"):
        np.testing.assert_array_equal(getattr(again, name), getattr(store, name))
    assert again.num_classes == 3 and again.class_names == ("a", "b", "c")
    assert again.feature_map == store.feature_map


def test_a_tampered_file_is_refused(tmp_path):
    data = _dataset([1, 2, 1, 3, 2])
    path = tmp_path / "voters.h5"
    write_voter_store(path, build_voter_store(data, Standardize.fit(data.features)))
    with h5py.File(path, "r+") as handle:
        handle["offsets"][1] = 1  # group 0 now ends early: group 1 holds ids 1, 2, 2
    with pytest.raises(PateError, match=r"voters.h5: record 2 of dataset `individual_id`"):
        read_voter_store(path)
    with h5py.File(path, "r+") as handle:
        handle.attrs["format"] = "pate-dataset"
    with pytest.raises(PateError, match="expected 'pate-voters'"):
        read_voter_store(path)


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    data = _dataset([1, 2, 3])
    store = build_voter_store(data, Standardize.fit(data.features))
    path = tmp_path / "voters.h5"
    write_voter_store(path, store)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "write_ids", broken)
    with pytest.raises(PateError, match=r"voters\.h5: cannot write \(disk full\)"):
        write_voter_store(path, store)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voters.h5"]


@pytest.mark.parametrize(
    "ids,offsets,message",
    [
        ([1, 1, 2], [0, 1, 3], "record 2 of dataset `individual_id` is in another"),
        ([1, 2, 1], [0, 1, 2, 3], "an individual in two groups"),
        ([1, 2, 3], [0, 2, 2, 3], "`offsets` is not increasing"),
        ([1, 2, 3], [0, 1, 2], "`offsets` is not increasing"),
        ([2, 1], [0, 1, 2], "not sorted by `individual_id`"),
    ],
)
def test_one_individual_per_voter_is_verified(ids, offsets, message):
    with pytest.raises(PateError, match=message):
        verify_groups(np.asarray(ids), np.asarray(offsets))


def test_a_store_needs_labels_and_finite_float32_features():
    data = _dataset([1, 2])
    unlabeled = Dataset(data.features, None, data.individual_id, num_classes=3, path="p.h5")
    with pytest.raises(PateError, match="p.h5: missing dataset `labels`"):
        build_voter_store(unlabeled, Standardize.fit(data.features))
    with pytest.raises(PateError, match="`feature_map` returned"):
        build_voter_store(data, lambda x: np.zeros(len(x)))
    bad = np.array([[np.nan], [0.0]], dtype=np.float32)
    with pytest.raises(PateError, match="`features` has NaN"):
        VoterStore(bad, np.array([0, 1]), np.array([1, 2]), np.array([0, 1, 2]), 2)


def test_feature_maps_are_fitted_on_the_public_set_only():
    rng = np.random.default_rng(1)
    public = rng.normal(loc=3.0, scale=[1.0, 5.0, 0.1, 2.0], size=(400, 4)).astype(np.float32)
    public[:, 3] = 7.0  # a constant coordinate is centred, not divided by zero
    scale = Standardize.fit(public)
    mapped = scale(public)
    np.testing.assert_allclose(mapped.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(mapped.std(axis=0), [1, 1, 1, 0], atol=1e-5)
    pca = PublicPCA.fit(public, dims=2)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(2), atol=1e-10)
    projected = pca(public)
    assert projected.shape == (400, 2) and projected.dtype == np.float32
    variances = projected.var(axis=0)
    assert variances[0] >= variances[1] > 0.9  # the leading directions of the public set
    private = rng.normal(size=(5, 2, 2)).astype(np.float32)  # any shape that flattens to 4
    assert pca(private).shape == (5, 2)
    with pytest.raises(PateError, match="`dims` is 5, expected at most 4"):
        PublicPCA.fit(public, dims=5)
    with pytest.raises(PateError, match="expected 4"):
        scale(np.zeros((2, 3), np.float32))
