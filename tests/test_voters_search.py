"""The chunked JAX search against a plain NumPy brute force, and its memory plan."""

from __future__ import annotations

import numpy as np
import pytest
from voters_reference import groups_of, reference_histogram

from pate.errors import PateError
from pate.voters.features import PublicPCA, Quantize, exact_limit
from pate.voters.search import VoterSearch, bytes_per_query, knn_histograms, plan_chunks
from pate.voters.store import VoterStore


def _store(rng, individuals, dim, classes, *, grid: bool, max_records=4) -> VoterStore:
    sizes = rng.integers(1, max_records + 1, individuals)
    n = int(sizes.sum())
    if grid:  # quarter steps: float32 arithmetic is exact and distances tie often
        features = (rng.integers(-4, 5, (n, dim)) / 4).astype(np.float32)
    else:
        features = rng.normal(size=(n, dim)).astype(np.float32)
    return VoterStore(
        features=features,
        labels=rng.integers(0, classes, n),
        individual_id=np.repeat(np.arange(individuals) * 10 + 3, sizes),
        offsets=np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
        num_classes=classes,
    )


@pytest.mark.parametrize("grid", [True, False], ids=["ties", "continuous"])
def test_chunked_search_equals_brute_force(grid):
    rng = np.random.default_rng(11 if grid else 12)
    store = _store(rng, individuals=23, dim=3, classes=4, grid=grid)
    assert np.diff(store.offsets).max() >= 3  # chunks of 2 and 5 records split individuals
    queries = store.features[rng.integers(0, store.num_records, 9)].copy()  # exact-zero distances
    queries[::2] = ((rng.integers(-4, 5, (5, 3)) / 4) if grid else rng.normal(size=(5, 3))).astype(
        np.float32
    )
    masks = rng.random((9, 23)) < 0.5
    masks[0] = True
    masks[1] = False
    groups = groups_of(store)
    ks = (1, 4, 30)
    expected = {
        k: np.array(
            [
                reference_histogram(groups, list(np.flatnonzero(m)), q, k, 4)
                for q, m in zip(queries, masks, strict=True)
            ]
        )
        for k in ks
    }
    assert expected[30][1].sum() == 0 and expected[30][0].sum() == 23
    # record chunks of 1 and 2 split individuals of 2-4 records; query chunks of 4 leave a padded tail
    for record_chunk, query_chunk in ((1, 9), (2, 4)) if grid else ((3, 9),):
        search = VoterSearch(store, record_chunk=record_chunk, query_chunk=query_chunk)
        got = {k: np.zeros((9, 4), np.int64) for k in ks}
        for start, stop, dist, vote in search.minima(queries):
            for k in ks:
                got[k][start:stop] = search.histograms(dist, vote, masks[start:stop], k)
        for k in ks:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{k} {record_chunk}")


def test_ties_go_to_the_first_record_and_the_lowest_individual():
    # individual 0: two records at the same place with labels 1 then 0; individuals 1 and 2 tie.
    store = VoterStore(
        features=np.array([[1.0], [1.0], [2.0], [2.0], [0.0]], dtype=np.float32),
        labels=np.array([1, 0, 2, 0, 0]),
        individual_id=np.array([5, 5, 6, 7, 8]),
        offsets=np.array([0, 2, 3, 4, 5]),
        num_classes=3,
    )
    queries = np.array([[1.0], [2.0]], dtype=np.float32)
    everyone = np.ones((2, 4), dtype=bool)
    for record_chunk in (1, 2, 5):
        got = knn_histograms(store, queries, everyone, 1, record_chunk=record_chunk)
        np.testing.assert_array_equal(got, [[0, 1, 0], [0, 0, 1]])  # record 0; individual 1
        got = knn_histograms(store, queries, everyone, 3, record_chunk=record_chunk)
        # query 2.0: individuals 1 (label 2) and 2 (label 0) at distance 0, then 0 (its first
        # record, label 1) at 1; individual 3 at 4 is left out
        np.testing.assert_array_equal(got[1], [1, 1, 1])


def test_memory_plan_fits_the_budget_at_a_million_individuals():
    budget = 512 * 2**20
    plan = plan_chunks(10**6, 3 * 10**7, 100, k=300, memory_bytes=budget)
    per_query = bytes_per_query(10**6, plan.record_chunk, 100, 300)
    assert plan.query_chunk >= 8
    assert plan.query_chunk * per_query <= budget < (plan.query_chunk + 1) * per_query
    with pytest.raises(PateError, match="`memory_bytes` is 1000, expected at least"):
        plan_chunks(10**6, 10**7, 100, memory_bytes=1000)
    with pytest.raises(PateError, match="`record_chunk`"):
        plan_chunks(10, 10, 2, record_chunk=0)


def test_queries_must_match_the_store():
    store = _store(np.random.default_rng(0), individuals=4, dim=3, classes=2, grid=True)
    search = VoterSearch(store)
    with pytest.raises(PateError, match=r"`queries` is float32 \(2, 2\), expected floats \(Q, 3\)"):
        list(search.minima(np.zeros((2, 2), np.float32)))
    with pytest.raises(PateError, match="`queries` holds NaN"):
        list(search.minima(np.full((1, 3), np.nan, np.float32)))
    ((_, _, dist, vote),) = list(search.minima(np.zeros((2, 3), np.float32)))
    with pytest.raises(PateError, match=r"`mask` has shape \(3, 4\), expected \(rows, 4\)"):
        search.histograms(dist, vote, np.ones((3, 4), bool), 1)  # more rows than queries
    with pytest.raises(PateError, match="`masks` has shape"):
        knn_histograms(store, np.zeros((2, 3), np.float32), np.ones((2, 5), bool), 1)


def test_quantized_features_make_every_distance_exact():
    """With Quantize, the search's per-individual minimum distances are the exact integers, whatever
    the chunking (so no rounding can depend on where a record sits)."""
    rng = np.random.default_rng(4)
    public = rng.normal(size=(300, 12)).astype(np.float32)
    feature_map = Quantize.fit(PublicPCA.fit(public, 6), public)
    assert feature_map.limit == exact_limit(6)
    private = rng.normal(scale=1.5, size=(80, 12)).astype(np.float32)  # some values get clipped
    features = feature_map(private)
    assert np.all(features == np.rint(features)) and np.abs(features).max() == feature_map.limit
    sizes = np.array([1, 3, 2, 4] * 8)
    store = VoterStore(
        features=features,
        labels=rng.integers(0, 3, 80),
        individual_id=np.repeat(np.arange(32), sizes),
        offsets=np.concatenate(([0], np.cumsum(sizes))),
        num_classes=3,
    )
    queries = feature_map(rng.normal(size=(5, 12)).astype(np.float32))
    exact = ((queries.astype(np.int64)[:, None, :] - features.astype(np.int64)[None]) ** 2).sum(-1)
    per_individual = np.minimum.reduceat(exact, store.offsets[:-1], axis=1)
    for record_chunk in (3, 80):
        search = VoterSearch(store, record_chunk=record_chunk)
        ((_, _, dist, _),) = list(search.minima(queries))
        np.testing.assert_array_equal(np.asarray(dist).astype(np.int64), per_individual)
