"""Exact nearest-individual search in chunks, with JAX (the accelerator when there is one).

For a query ``x`` and a set ``S`` of sampled individuals:

1. each individual ``u`` has the distance ``d_u(x) = min over its records r of ||x - r||^2`` and the
   vote ``y_u(x)`` = the label of its record at that minimum, ties to the lowest record index within
   the individual;
2. the ``k`` sampled individuals of smallest ``(d_u(x), u)`` (ties to the lowest individual index,
   i.e. the smallest id, see :mod:`pate.voters.store`) cast their votes; fewer when fewer are sampled;
3. the histogram counts their votes per class.

Everything is exhaustive (no approximate index). Distances are computed in float32 as
``|x|^2 - 2 x.r + |r|^2`` (matrix products at full float32 precision), clamped at 0; the rules above
act on these computed values. The sensitivity proof needs each computed ``d_u(x)`` to depend on
``x`` and ``u``'s own records alone, not on where the record sits in its chunk: exact for integer
features small enough for exact float32 sums, in practice otherwise (docs/voters.md, "Search and memory"; :class:`pate.voters.features.Quantize`).

Chunks and memory. Step 1 does not depend on the sample, so it runs once per chunk of ``Bq`` queries
and serves every sample drawn for them (the screen's and the answer's). The records are on the device
whole (``N (d + 2)`` 4-byte values). Per chunk of queries the device holds:

* the running minimum and its vote for every individual: ``Bq x (U + Br)`` float32 and int32;
* the distances of the query chunk to one chunk of ``Br`` records and the segment minima over them:
  about six ``Bq x Br`` 4-byte arrays;
* each sample's mask, ``Bq x U`` bytes, and its ``Bq x k`` nearest.

:func:`plan_chunks` picks ``Br`` (default 4,096 records) and the largest ``Bq`` whose total fits a
byte budget (default 512 MiB): at ``U = 10^6`` individuals that is about ``10 MB`` per query, so
``Bq = 51`` and ``10^5`` queries take 1,961 chunks; nothing grows with the number of queries. An
individual's records may straddle two record chunks: its running minimum is merged across chunks
(a later chunk replaces it only when strictly nearer, which keeps the lowest record index on ties).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pate.errors import PateError
from pate.voters.store import VoterStore

__all__ = ["DEFAULT_MEMORY_BYTES", "ChunkPlan", "VoterSearch", "knn_histograms", "plan_chunks"]

DEFAULT_MEMORY_BYTES = 512 * 2**20
DEFAULT_RECORD_CHUNK = 4096
_SAMPLES_PER_CHUNK = 2  # the screen's and the answer's masks


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise PateError(f"`{name}` is {value!r}, expected a positive integer")
    return int(value)


@dataclass(frozen=True)
class ChunkPlan:
    """``query_chunk`` queries at a time against ``record_chunk`` records at a time."""

    query_chunk: int
    record_chunk: int

    def __post_init__(self) -> None:
        _positive_int("query_chunk", self.query_chunk)
        _positive_int("record_chunk", self.record_chunk)


def bytes_per_query(num_individuals: int, record_chunk: int, dim: int, k: int) -> int:
    """Device bytes one query of a chunk takes (module docstring)."""
    running = 8 * (num_individuals + record_chunk)
    distances = 6 * 4 * record_chunk
    masks = _SAMPLES_PER_CHUNK * (num_individuals + 8 * k)
    return running + distances + masks + 4 * dim


def plan_chunks(
    num_individuals: int,
    num_records: int,
    dim: int,
    *,
    k: int = 1,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    query_chunk: int | None = None,
    record_chunk: int | None = None,
) -> ChunkPlan:
    """Chunk sizes whose working memory stays within ``memory_bytes`` (given sizes are kept)."""
    memory_bytes = _positive_int("memory_bytes", memory_bytes)
    if record_chunk is None:
        record_chunk = min(DEFAULT_RECORD_CHUNK, max(1, num_records))
    record_chunk = _positive_int("record_chunk", record_chunk)
    if query_chunk is None:
        per_query = bytes_per_query(num_individuals, record_chunk, dim, k)
        query_chunk = memory_bytes // per_query
        if query_chunk < 1:
            raise PateError(
                f"`memory_bytes` is {memory_bytes}, expected at least {per_query} (one query "
                f"against {num_individuals} individuals)"
            )
    return ChunkPlan(
        query_chunk=_positive_int("query_chunk", query_chunk), record_chunk=record_chunk
    )


@functools.cache
def _kernels():
    """The jitted kernels (JAX is imported on first use only)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    @functools.partial(jax.jit, static_argnames=("width", "num_individuals"))
    def minima(
        queries,
        records,
        record_sq,
        record_individual,
        record_label,
        first,
        *,
        width,
        num_individuals,
    ):
        bq = queries.shape[0]
        q_sq = jnp.sum(queries * queries, axis=1)
        columns = num_individuals + width
        dist0 = jnp.full((bq, columns), jnp.inf, dtype=jnp.float32)
        vote0 = jnp.full((bq, columns), -1, dtype=jnp.int32)
        position = jnp.arange(width, dtype=jnp.int32)

        def body(chunk, state):
            dist, vote = state
            start = chunk * width
            rec = lax.dynamic_slice_in_dim(records, start, width)
            rec_sq = lax.dynamic_slice_in_dim(record_sq, start, width)
            local = lax.dynamic_slice_in_dim(record_individual, start, width) - first[chunk]
            labels = lax.dynamic_slice_in_dim(record_label, start, width)
            cross = jnp.dot(queries, rec.T, precision=lax.Precision.HIGHEST)
            d = jnp.maximum(q_sq[:, None] - 2.0 * cross + rec_sq[None, :], 0.0) + 0.0
            dt = d.T  # (width, bq): segments along the leading axis
            inside = local < width  # padding records point past every segment
            seg_min = jax.ops.segment_min(dt, local, num_segments=width)
            hit = (dt == seg_min[jnp.minimum(local, width - 1)]) & inside[:, None]
            candidate = jnp.where(hit, position[:, None], width)
            first_record = jax.ops.segment_min(candidate, local, num_segments=width)
            seg_vote = labels[jnp.minimum(first_record, width - 1)]
            old_d = lax.dynamic_slice_in_dim(dist, first[chunk], width, axis=1)
            old_v = lax.dynamic_slice_in_dim(vote, first[chunk], width, axis=1)
            nearer = seg_min.T < old_d  # strictly: ties keep the earlier (lower) record
            dist = lax.dynamic_update_slice_in_dim(
                dist, jnp.where(nearer, seg_min.T, old_d), first[chunk], axis=1
            )
            vote = lax.dynamic_update_slice_in_dim(
                vote, jnp.where(nearer, seg_vote.T, old_v), first[chunk], axis=1
            )
            return dist, vote

        dist, vote = lax.fori_loop(0, first.shape[0], body, (dist0, vote0))
        return dist[:, :num_individuals], vote[:, :num_individuals]

    @functools.partial(jax.jit, static_argnames=("k", "num_classes"))
    def histogram(dist, vote, mask, *, k, num_classes):
        # Non-negative float32 values order like their bit patterns: an exact integer key, nearest
        # first, and top_k puts equal keys in index order (ties to the lowest individual index).
        bits = lax.bitcast_convert_type(dist, jnp.int32)
        key = jnp.where(mask, -bits, jnp.iinfo(jnp.int32).min)
        _, nearest = lax.top_k(key, k)
        counted = jnp.take_along_axis(mask, nearest, axis=1)
        votes = jnp.take_along_axis(vote, nearest, axis=1)
        onehot = jax.nn.one_hot(votes, num_classes, dtype=jnp.int32) * counted[..., None]
        return onehot.sum(axis=1)

    return jnp, minima, histogram


class VoterSearch:
    """The store on the device, ready to answer chunks of queries (module docstring)."""

    def __init__(
        self,
        store: VoterStore,
        *,
        k: int = 1,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        query_chunk: int | None = None,
        record_chunk: int | None = None,
    ) -> None:
        jnp, self._minima, self._histogram = _kernels()
        self.store = store
        self.plan = plan_chunks(
            store.num_individuals,
            store.num_records,
            store.dim,
            k=k,
            memory_bytes=memory_bytes,
            query_chunk=query_chunk,
            record_chunk=record_chunk,
        )
        width = self.plan.record_chunk
        n = store.num_records
        chunks = max(1, math.ceil(n / width))
        padded = chunks * width
        records = np.zeros((padded, store.dim), dtype=np.float32)
        records[:n] = store.features
        individual = np.full(padded, store.num_individuals + 2 * width, dtype=np.int64)
        individual[:n] = store.record_individual
        if store.num_individuals + 2 * width >= 2**31 or n >= 2**31:
            raise PateError(f"{store.source}: store too large, expected fewer than 2^31 records")
        labels = np.zeros(padded, dtype=np.int32)
        labels[:n] = store.labels
        self._records = jnp.asarray(records)
        self._record_sq = jnp.sum(self._records * self._records, axis=1)
        self._individual = jnp.asarray(individual.astype(np.int32))
        self._labels = jnp.asarray(labels)
        self._first = jnp.asarray(individual[::width].astype(np.int32))

    def check_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.store.dim or queries.dtype.kind != "f":
            raise PateError(
                f"`queries` is {queries.dtype} {queries.shape}, expected floats (Q, {self.store.dim}) "
                "mapped by the store's feature map"
            )
        if not np.all(np.isfinite(queries)):
            raise PateError("`queries` holds NaN or inf, expected finite features")
        return queries.astype(np.float32)

    def minima(self, queries: np.ndarray) -> Iterator[tuple[int, int, object, object]]:
        """``(start, stop, dist, vote)`` per chunk of queries: every individual's distance to each
        query of ``queries[start:stop]`` and its vote, as device arrays ``(Bq, U)`` (rows past
        ``stop - start`` are padding)."""
        queries = self.check_queries(queries)
        size = self.plan.query_chunk
        for start in range(0, len(queries), size):
            block = queries[start : start + size]
            if len(block) < size and len(queries) > size:  # one compiled shape for every chunk
                block = np.concatenate(
                    (block, np.zeros((size - len(block), block.shape[1]), np.float32))
                )
            dist, vote = self._minima(
                block,
                self._records,
                self._record_sq,
                self._individual,
                self._labels,
                self._first,
                width=self.plan.record_chunk,
                num_individuals=self.store.num_individuals,
            )
            yield start, min(start + size, len(queries)), dist, vote

    def histograms(self, dist, vote, mask: np.ndarray, k: int) -> np.ndarray:
        """(rows, C) int64 histograms of the ``k`` nearest individuals of ``mask`` (rows, U) per row."""
        k = _positive_int("k", k)
        mask = np.asarray(mask, dtype=bool)
        rows = mask.shape[0] if mask.ndim else 0
        if mask.ndim != 2 or mask.shape[1] != self.store.num_individuals or rows > dist.shape[0]:
            raise PateError(
                f"`mask` has shape {mask.shape}, expected (rows, {self.store.num_individuals})"
            )
        if rows < dist.shape[0]:
            mask = np.concatenate((mask, np.zeros((dist.shape[0] - rows, mask.shape[1]), bool)))
        counts = self._histogram(
            dist,
            vote,
            mask,
            k=min(k, self.store.num_individuals),
            num_classes=self.store.num_classes,
        )
        return np.asarray(counts, dtype=np.int64)[:rows]


def knn_histograms(
    store: VoterStore,
    queries: np.ndarray,
    masks: np.ndarray,
    k: int,
    *,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    query_chunk: int | None = None,
    record_chunk: int | None = None,
) -> np.ndarray:
    """(Q, C) histograms of the ``k`` nearest individuals among those of ``masks[i]`` for each query."""
    search = VoterSearch(
        store, k=k, memory_bytes=memory_bytes, query_chunk=query_chunk, record_chunk=record_chunk
    )
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != (len(queries), store.num_individuals):
        raise PateError(
            f"`masks` has shape {masks.shape}, expected ({len(queries)}, {store.num_individuals})"
        )
    out = np.zeros((len(queries), store.num_classes), dtype=np.int64)
    for start, stop, dist, vote in search.minima(queries):
        out[start:stop] = search.histograms(dist, vote, masks[start:stop], k)
    return out
