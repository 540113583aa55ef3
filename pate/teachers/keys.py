"""The key tree, and each teacher's batch order drawn from it.

Everything random in training derives from one ``seed``::

    root = key(seed)
    k_t  = fold_in(fold_in(root, 1), t)      teacher t, by its global index (so independent of the
                                             number of teachers, of chunks and of devices)
    fold_in(k_t, 0)                          its initial parameters
    fold_in(fold_in(k_t, 1), e)              its batch order in epoch e (:func:`shuffle_rows`, whose
                                             round r uses fold_in(<that key>, r))

Nothing depends on wall time, so a run resumed from checkpoints ends with the same parameters as an
uninterrupted one. Isolation (Papernot et al. 2017, Theorem 2; 2018, §3): teacher ``t``'s keys are a
function of ``seed`` and ``t`` only, and its order a function of its key and its own shard size only.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

#: Sorting rounds of :func:`shuffle_rows`.
SHUFFLE_ROUNDS = 2


def teacher_keys(seed: int, teachers: int | Sequence[int]) -> jax.Array:
    """The keys ``k_t`` of the key tree for ``teachers`` (a count, or global teacher indices)."""
    ids = np.arange(teachers) if isinstance(teachers, int) else np.asarray(list(teachers))
    return keys_of(jnp.asarray(ids, jnp.int32), seed)


def keys_of(ids: jax.Array, seed: int) -> jax.Array:
    """``k_t`` for each teacher index in ``ids`` (traceable)."""
    base = jax.random.fold_in(jax.random.key(seed), 1)
    return jax.vmap(lambda t: jax.random.fold_in(base, t))(ids)


def init_key(seed: int, teacher_id: jax.Array) -> jax.Array:
    """The key of teacher ``teacher_id``'s initial parameters: ``fold_in(k_t, 0)``."""
    return jax.random.fold_in(keys_of(teacher_id[None], seed)[0], 0)


def epoch_key(seed: int, teacher_id: jax.Array, epoch: jax.Array | int) -> jax.Array:
    """The key of teacher ``teacher_id``'s batch order in ``epoch``: ``fold_in(fold_in(k_t, 1), e)``."""
    key = keys_of(teacher_id[None], seed)[0]
    return jax.random.fold_in(jax.random.fold_in(key, 1), epoch)


def shuffle_rows(key: jax.Array, n: jax.Array, max_n: int) -> jax.Array:
    """A uniformly random order of rows ``0..n-1``, then the padded rows ``n..max_n-1`` in order.

    Each of :data:`SHUFFLE_ROUNDS` rounds sorts single ``uint32`` keys: a padding flag (bit 31), then
    ``31 - b`` random bits, then the current position in the low ``b`` bits, where ``b`` is the bit
    length of ``n - 1``; the sorted keys' low bits give the new arrangement (XLA sorts one integer
    operand faster than a float key with an index; BENCHMARKS.md). Ties in the random bits keep the
    previous round's order, so a pair of rows stays in index order only if it ties in every round:
    about ``n**2 / 2 * 2**(-2 * (31 - b))`` such pairs per epoch, below 1/8 for shards of up to
    32,768 rows.

    Isolation: the random value at position ``p`` depends on ``key`` and ``p`` only (JAX's
    partitionable threefry; else each position gets its own ``fold_in`` key), and ``b`` on the
    teacher's own ``n``; so the order does not change when other shards pad ``max_n`` further.
    """
    positions = jnp.arange(max_n, dtype=jnp.uint32)
    n = jnp.asarray(n, jnp.uint32)
    valid = positions < n
    width = 32 - jax.lax.clz(jnp.maximum(n, 2) - 1)  # bit length of n - 1 (at least 1)
    low = (jnp.uint32(1) << width) - 1
    arrangement = jnp.arange(max_n, dtype=jnp.int32)
    for round_index in range(SHUFFLE_ROUNDS):
        round_key = jax.random.fold_in(key, round_index)
        if jax.config.jax_threefry_partitionable:
            bits = jax.random.bits(round_key, (max_n,), jnp.uint32)
        else:
            bits = jax.vmap(lambda p, k=round_key: jax.random.bits(jax.random.fold_in(k, p)))(
                positions
            )
        random = (bits >> (width + 1)) << width
        keys = jnp.where(valid, random | positions, jnp.uint32(1 << 31) | positions)
        ordered = jnp.sort(keys)
        source = jnp.where(valid, ordered & low, ordered & jnp.uint32(0x7FFFFFFF))
        arrangement = arrangement[source.astype(jnp.int32)]
    return arrangement
