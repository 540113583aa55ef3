"""Where a chunk's teacher axis lives: one device, or a 1-D mesh over every process's devices.

With ``devices > 1``, or several processes (:func:`initialize_distributed`), each chunk's teacher axis
is laid over a 1-D ``jax.sharding.Mesh`` named ``teachers``; each process reads only the shards of the
teachers that sit on its own devices, and gets every teacher's results back (:meth:`Layout.to_host`).
No operation reduces over the teacher axis, so the layout changes nothing but float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pate.errors import PateError
from pate.teachers.config import CHUNK_MEMORY_BYTES, VECTORISED, TrainConfig


def initialize_distributed(coordinator: str | None, num_processes: int, process_id: int) -> None:
    """Join a multi-host run (``jax.distributed.initialize``); call before any JAX computation."""
    if not coordinator:
        raise PateError(
            f"`coordinator`: none, expected HOST:PORT of process 0 for `num_processes` {num_processes}"
        )
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise PateError(
            f"`process_id`: {process_id}, expected 0..{num_processes - 1} for "
            f"`num_processes` {num_processes}"
        )
    if not jax.distributed.is_initialized():
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )


@dataclass
class Layout:
    """A chunk of ``chunk`` teachers (a multiple of ``len(devices)``) over ``devices``."""

    devices: list
    chunk: int

    def __post_init__(self) -> None:
        self.sharding = None
        if len(self.devices) > 1:
            mesh = jax.sharding.Mesh(np.array(self.devices), ("teachers",))
            self.sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("teachers"))

    @property
    def local_positions(self) -> range:
        """Positions in a chunk held by this process's devices (all of them in one process)."""
        if self.sharding is None:
            return range(self.chunk)
        index_map = self.sharding.addressable_devices_indices_map((self.chunk,))
        starts = [index[0].start or 0 for index in index_map.values()]
        stops = [index[0].stop or self.chunk for index in index_map.values()]
        return range(min(starts), max(stops))

    def put(self, local: Any) -> Any:
        """A pytree of this process's rows (leading axis) -> arrays over the whole chunk."""
        if self.sharding is None:
            return jax.tree_util.tree_map(jnp.asarray, local)
        return jax.tree_util.tree_map(
            lambda leaf: jax.make_array_from_process_local_data(
                self.sharding, np.asarray(leaf), (self.chunk, *np.shape(leaf)[1:])
            ),
            local,
        )

    def to_host(self, tree: Any) -> Any:
        """Every teacher's values as NumPy on every process."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(tree, tiled=True)
        return jax.tree_util.tree_map(np.asarray, tree)


def plan_layout(
    config: TrainConfig, strategy: str, per_teacher_bytes: int, num_teachers: int
) -> Layout:
    """``config.devices`` devices of every process, and the chunk size: ``config.teacher_chunk``, or
    as many teachers of ``per_teacher_bytes`` as fit in :data:`CHUNK_MEMORY_BYTES`; at most the
    teachers there are, rounded to a multiple of the devices."""
    processes = jax.process_count()
    if strategy not in VECTORISED and (config.devices > 1 or processes > 1):
        raise PateError(
            f"`strategy` {strategy}: trains teachers one at a time on one device; use vmap, fold "
            "or public with `devices` or several processes"
        )
    local = jax.local_devices()
    if config.devices > len(local):
        raise PateError(f"`devices`: {config.devices}, expected at most {len(local)} local devices")
    devices = [
        device
        for process in range(processes)
        for device in jax.local_devices(process_index=process)[: config.devices]
    ]
    width = len(devices)
    if config.teacher_chunk:
        chunk = config.teacher_chunk
    else:
        chunk = max(1, CHUNK_MEMORY_BYTES // max(per_teacher_bytes, 1))
    chunk = min(chunk, -(-num_teachers // width) * width)
    chunk = max(width, chunk // width * width)
    return Layout(devices=devices, chunk=chunk)
