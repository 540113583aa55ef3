"""Partition private data into teacher shards so that each individual lands in exactly one shard.

The guarantee the privacy proof needs (design rule 1): adding or removing all records of one individual
changes exactly one shard, hence trains exactly one teacher differently, hence moves at most one vote of
any query from one class to another. Every PATE bound assumes this sensitivity. The partitioner
therefore assigns *individuals* (not records) to shards, verifies the assignment before anything is
written, and re-verifies the written file before it is renamed into place.

Methods (``method``):

* ``hash`` (default): an individual's shard is a keyed hash of its id alone (SHA-256 of the seed and the
  id, modulo the number of teachers). So adding or removing one individual leaves every other
  individual where it was: the neighbouring datasets of the add/remove relation differ in one shard.
  Shards are balanced by individuals in expectation, not by records.
* ``lpt``: individuals are placed greedily, largest first, on the currently lightest shard (longest
  processing time first; within 4/3 of the optimal makespan, Graham 1969); ties are broken by a seeded
  permutation. The record counts balance tightly, but the placement of each individual depends on every
  other individual's record count: adding or removing one individual can move others to other shards,
  so one individual can change many teachers. The guarantee then covers only a change of one
  individual's records that keeps their number; the shards file says so in ``unit_of_privacy``
  (``individual-records`` / ``record-values``), and the privacy statement repeats it.

Shards file (``format = "pate-shards"``)::

    features        (N, ...) records grouped by shard: shard t is rows shard_offsets[t]:shard_offsets[t+1]
    labels          (N,) int64
    individual_id   (N,)
    shard_offsets   (T+1,) int64
    shard_sizes     (T,) int64
    assignment/individual  (U,) every individual, sorted
    assignment/shard       (U,) its shard
    attrs: format, version, num_teachers, num_classes, class_names, feature_names, seed, method,
           source (input path), source_sha256, individual_column, unit_of_privacy

The features are copied in chunks (``chunk_records``), so the input may be larger than memory; only the
id and label columns are held whole.

The stage as one call: ``partition(PartitionJob(input=..., out=..., num_teachers=...))`` refuses an
output that is an input (always) or that exists (unless ``force``), then runs :func:`partition_file`.
Errors name the field they are about in backquotes, as `num_teachers`; the command maps each field to
its flag. This module imports no JAX.
"""

from __future__ import annotations

import hashlib
import heapq
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pate.errors import PateError
from pate.io import (
    atomic_file,
    check_features,
    check_fits_in_memory,
    check_labels,
    check_rows,
    declared_bytes,
    decode_ids,
    file_fingerprint,
    h5_create,
    open_h5,
    read_dataset_attrs,
    read_ids,
    require_format,
    write_ids,
)
from pate.outputs import check_free_space, check_output

SHARDS_FORMAT = "pate-shards"
SHARDS_VERSION = 1
METHODS = ("hash", "lpt")
METHOD_NAMES = {"hash": "keyed-hash", "lpt": "greedy-lpt"}  # as the shards file records them
# The unit of privacy a partition method supports, per unit the dataset declares.
_LPT_UNITS = {"individual": "individual-records", "record": "record-values"}


@dataclass(frozen=True)
class PartitionConfig:
    """How to partition: number of teachers, seed of the tie-breaking, id column, chunk size."""

    num_teachers: int
    seed: int = 0
    individual_column: str = "individual_id"
    chunk_records: int = 65536
    method: str = "hash"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PateError(f"`method`: {self.method!r}, expected one of {', '.join(METHODS)}")
        _check_integer("num_teachers", self.num_teachers, 1)
        _check_integer("seed", self.seed, 0)
        _check_integer("chunk_records", self.chunk_records, 1)
        if not isinstance(self.individual_column, str) or not self.individual_column:
            raise PateError(
                f"`individual_column`: {self.individual_column!r}, expected a dataset name"
            )


def _check_integer(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PateError(f"`{name}`: {value!r}, expected an integer >= {minimum}")
    if value < minimum:
        raise PateError(f"`{name}`: {value}, expected >= {minimum}")


@dataclass(frozen=True)
class PartitionJob:
    """One run of the partition stage (:func:`partition`); defaults as :class:`PartitionConfig`'s.

    ``input``: the private ``pate-dataset`` file; ``out``: the ``pate-shards`` file to write (private),
    refused if it exists unless ``force``, and always if it is the input (or a link to it).
    """

    input: Path
    out: Path
    num_teachers: int
    seed: int = PartitionConfig.seed
    individual_column: str = PartitionConfig.individual_column
    chunk_records: int = PartitionConfig.chunk_records
    method: str = PartitionConfig.method
    force: bool = False

    def __post_init__(self) -> None:
        for name in ("input", "out"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise PateError(f"`{name}`: {value!r}, expected a path")
            object.__setattr__(self, name, Path(value))
        _ = self.config  # validates num_teachers, seed, individual_column and chunk_records

    @property
    def config(self) -> PartitionConfig:
        """How to partition, without the paths."""
        return PartitionConfig(
            num_teachers=self.num_teachers,
            seed=self.seed,
            individual_column=self.individual_column,
            chunk_records=self.chunk_records,
            method=self.method,
        )


@dataclass(frozen=True)
class Assignment:
    """Individual -> shard assignment and the resulting per-record shard index."""

    individuals: np.ndarray  # (U,) sorted unique ids
    individual_shard: np.ndarray  # (U,) shard of each individual
    record_shard: np.ndarray  # (N,) shard of each record
    shard_sizes: np.ndarray  # (T,) records per shard
    shard_individuals: np.ndarray  # (T,) individuals per shard

    @property
    def num_shards(self) -> int:
        return len(self.shard_sizes)


@dataclass(frozen=True)
class PartitionSummary:
    """What ``pate partition`` reports."""

    path: str
    num_shards: int
    records: int
    individuals: int
    min_shard: int
    median_shard: float
    max_shard: int
    min_individuals: int
    max_individuals: int

    @property
    def size_ratio(self) -> float:
        """max/min shard size (1.0 is perfect balance)."""
        return self.max_shard / self.min_shard

    def summary(self) -> dict:
        """The run in plain values (the command's ``--json`` report)."""
        return self.to_dict()

    def to_dict(self) -> dict:
        return {
            "shards_file": self.path,
            "shards": self.num_shards,
            "records": self.records,
            "individuals": self.individuals,
            "shard_size_min": self.min_shard,
            "shard_size_median": self.median_shard,
            "shard_size_max": self.max_shard,
            "shard_size_ratio": self.size_ratio,
            "individuals_per_shard_min": self.min_individuals,
            "individuals_per_shard_max": self.max_individuals,
        }


def assign_shards(
    ids: np.ndarray,
    num_teachers: int,
    *,
    seed: int = 0,
    source: str = "input",
    method: str = "hash",
) -> Assignment:
    """Assign each individual to one of ``num_teachers`` shards (see the module docstring's methods).

    Refuses when there are fewer individuals than teachers, or when a shard gets no individual (a
    teacher would get no data; an individual is never split).
    """
    individuals, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    if len(individuals) < num_teachers:
        raise PateError(
            f"{source}: {len(individuals)} individuals for {num_teachers} teachers, expected at least one "
            "individual per teacher; use fewer teachers (`num_teachers`)"
        )
    if method == "hash":
        individual_shard = hash_shards(individuals, num_teachers, seed)
        empty = np.flatnonzero(np.bincount(individual_shard, minlength=num_teachers) == 0)
        if len(empty):
            raise PateError(
                f"{source}: {len(empty)} of {num_teachers} shards get no individual by the keyed hash "
                f"of {len(individuals)} individuals, expected every shard to get one; use fewer "
                "teachers (`num_teachers`)"
            )
    elif method == "lpt":
        individual_shard = _lpt_shards(counts, num_teachers, seed)
    else:
        raise PateError(f"`method`: {method!r}, expected one of {', '.join(METHODS)}")
    record_shard = individual_shard[inverse.reshape(-1)]
    assignment = Assignment(
        individuals=individuals,
        individual_shard=individual_shard,
        record_shard=record_shard,
        shard_sizes=np.bincount(record_shard, minlength=num_teachers),
        shard_individuals=np.bincount(individual_shard, minlength=num_teachers),
    )
    verify_assignment(ids, assignment, source=source)
    return assignment


def hash_shards(individuals: np.ndarray, num_teachers: int, seed: int) -> np.ndarray:
    """Each individual's shard from its id and the seed alone: ``SHA-256("seed:id") mod T``.

    A function of the one individual, so adding or removing another individual moves nobody.

    >>> both = hash_shards(np.array([7, 9]), 4, seed=0)
    >>> bool(both[1] == hash_shards(np.array([9]), 4, seed=0)[0])  # 7's presence does not move 9
    True
    """
    return (keyed_hash(individuals, str(int(seed))) % np.uint64(int(num_teachers))).astype(np.int64)


def keyed_hash(individuals, key: str) -> np.ndarray:
    """``uint64`` of each individual id: the first 8 bytes (big-endian) of ``SHA-256("key:id")``,
    where ``id`` is the id as Python writes it (``7``, ``car-7``). A function of the key and the one
    id; the shard assignment (key: the seed) and the import's split (:mod:`pate.data.splits`, key:
    ``split-<seed>``) both use it."""
    values = individuals.tolist() if hasattr(individuals, "tolist") else list(individuals)
    hashes = np.empty(len(values), dtype=np.uint64)
    for index, individual in enumerate(values):
        digest = hashlib.sha256(f"{key}:{individual}".encode()).digest()
        hashes[index] = int.from_bytes(digest[:8], "big")
    return hashes


def _lpt_shards(counts: np.ndarray, num_teachers: int, seed: int) -> np.ndarray:
    tiebreak = np.random.default_rng(seed).permutation(len(counts))
    order = np.lexsort((tiebreak, -counts))
    heap = [(0, shard) for shard in range(num_teachers)]
    individual_shard = np.empty(len(counts), dtype=np.int64)
    for index in order:
        load, shard = heapq.heappop(heap)
        individual_shard[index] = shard
        heapq.heappush(heap, (load + int(counts[index]), shard))
    return individual_shard


def verify_assignment(ids: np.ndarray, assignment: Assignment, *, source: str = "input") -> None:
    """Check the invariants: covering, disjoint by individual, no empty shard, consistent counts."""
    num_shards = assignment.num_shards
    record_shard = assignment.record_shard
    if len(record_shard) != len(ids):
        raise PateError(
            f"{source}: assignment covers {len(record_shard)} records, expected {len(ids)}"
        )
    if len(ids) and (record_shard.min() < 0 or record_shard.max() >= num_shards):
        raise PateError(f"{source}: a record was assigned outside shards 0..{num_shards - 1}")
    position = np.searchsorted(assignment.individuals, ids)
    if not np.array_equal(assignment.individuals[position], ids):
        raise PateError(f"{source}: a record's individual is missing from the assignment")
    if not np.array_equal(assignment.individual_shard[position], record_shard):
        raise PateError(f"{source}: an individual's records are split across shards")
    sizes = np.bincount(record_shard, minlength=num_shards)
    if not np.array_equal(sizes, assignment.shard_sizes) or (sizes == 0).any():
        raise PateError(f"{source}: shard sizes are inconsistent or a shard is empty")


def partition(job: PartitionJob) -> PartitionSummary:
    """Partition ``job.input`` into ``job.out``: the output policy first
    (:func:`pate.outputs.check_output`: an output apart from the input and outside every run folder,
    an existing one replaced only with ``force`` and only if it is a shards file, missing parents
    created with mode 0700), then :func:`partition_file`."""
    check_output(
        job.out,
        kinds=(SHARDS_FORMAT,),
        folder=False,
        inputs={"input": job.input},
        force=job.force,
        private=True,
    )
    return partition_file(job.input, job.out, job.config)


def partition_file(
    input_path: str | os.PathLike, out_path: str | os.PathLike, config: PartitionConfig
) -> PartitionSummary:
    """Partition a ``pate-dataset`` file into a ``pate-shards`` file, streaming the features."""
    input_path, out_path = Path(input_path), Path(out_path)
    with open_h5(input_path, "dataset file") as source:
        attrs = read_dataset_attrs(source, input_path)
        if "labels" not in source:
            raise PateError(
                f"{input_path}: missing dataset 'labels', expected labels in 0..{attrs['num_classes'] - 1}"
            )
        # The id and label columns are read whole; the features are streamed in chunks.
        check_fits_in_memory(source, input_path, ["labels", config.individual_column])
        check_rows(source, input_path, "labels")
        labels = check_labels(source["labels"][()], attrs["num_classes"], input_path)
        ids = read_ids(source, input_path, config.individual_column)
        features_in = source["features"]
        assignment = assign_shards(
            ids,
            config.num_teachers,
            seed=config.seed,
            source=str(input_path),
            method=config.method,
        )

        offsets = np.concatenate([[0], np.cumsum(assignment.shard_sizes)])
        # Destination row of each record: its shard's offset plus its rank within the shard, ranks in input
        # order. Records of one shard inside one input chunk then form one contiguous destination block.
        order = np.argsort(assignment.record_shard, kind="stable")
        destination = np.empty(len(ids), dtype=np.int64)
        destination[order] = np.arange(len(ids))

        need = declared_bytes(features_in) + 8 * 3 * len(ids)  # + labels, ids, shard index
        check_free_space(out_path, need)
        with atomic_file(out_path, private=True) as tmp:
            with h5_create(tmp, in_memory=False) as out:
                out.attrs.update(
                    {
                        "format": SHARDS_FORMAT,
                        "version": SHARDS_VERSION,
                        "num_teachers": config.num_teachers,
                        "num_classes": attrs["num_classes"],
                        "seed": config.seed,
                        "method": METHOD_NAMES[config.method],
                        "source": str(input_path),
                        "source_sha256": file_fingerprint(input_path),
                        "individual_column": config.individual_column,
                        "name": attrs["name"],
                    }
                )
                # Whose privacy the guarantee protects: an individual (default) or a record.
                unit = str(source.attrs.get("unit_of_privacy", "individual"))
                if config.method == "lpt":  # see the module docstring: not add/remove-stable
                    unit = _LPT_UNITS.get(unit, unit)
                out.attrs["unit_of_privacy"] = unit
                if attrs["class_names"]:
                    out.attrs["class_names"] = list(attrs["class_names"])
                if attrs["feature_names"]:
                    out.attrs["feature_names"] = list(attrs["feature_names"])
                chunk_rows = max(1, min(config.chunk_records, len(ids)))
                features_out = out.create_dataset(
                    "features",
                    shape=features_in.shape,
                    dtype=features_in.dtype,
                    chunks=(min(chunk_rows, 4096), *features_in.shape[1:]),
                )
                for start in range(0, len(ids), config.chunk_records):
                    stop = min(start + config.chunk_records, len(ids))
                    block = features_in[start:stop]
                    check_features(block, input_path, start=start)
                    _scatter_block(features_out, block, destination[start:stop])
                out.create_dataset("labels", data=_gather(labels, destination))
                write_ids(out, "individual_id", _gather(ids, destination))
                out.create_dataset("shard_offsets", data=offsets.astype(np.int64))
                out.create_dataset("shard_sizes", data=assignment.shard_sizes.astype(np.int64))
                group = out.create_group("assignment")
                write_ids(group, "individual", assignment.individuals)
                group.create_dataset("shard", data=assignment.individual_shard)
            verify_shards_file(tmp, source_name=str(out_path))

    return PartitionSummary(
        path=str(out_path),
        num_shards=config.num_teachers,
        records=len(ids),
        individuals=len(assignment.individuals),
        min_shard=int(assignment.shard_sizes.min()),
        median_shard=float(np.median(assignment.shard_sizes)),
        max_shard=int(assignment.shard_sizes.max()),
        min_individuals=int(assignment.shard_individuals.min()),
        max_individuals=int(assignment.shard_individuals.max()),
    )


def _gather(values: np.ndarray, destination: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[destination] = values
    return out


def _scatter_block(dataset: h5py.Dataset, block: np.ndarray, destination: np.ndarray) -> None:
    """Write ``block`` rows to ``destination`` rows, one contiguous slice per run of destinations."""
    order = np.argsort(destination, kind="stable")
    sorted_destination = destination[order]
    breaks = np.flatnonzero(np.diff(sorted_destination) != 1) + 1
    for run in np.split(np.arange(len(order)), breaks):
        if len(run) == 0:
            continue
        first = int(sorted_destination[run[0]])
        dataset[first : first + len(run)] = block[order[run]]


def verify_shards_file(path: str | os.PathLike, *, source_name: str | None = None) -> None:
    """Re-read a shards file and check that every individual's records sit in its one shard."""
    name = source_name or str(path)
    with open_h5(path, "shards file") as handle:
        require_format(handle, name, SHARDS_FORMAT)
        offsets = handle["shard_offsets"][()]
        ids = read_ids(handle, name, "individual_id")
        individuals = decode_ids(handle["assignment/individual"][()])
        individual_shard = handle["assignment/shard"][()]
    if offsets[0] != 0 or offsets[-1] != len(ids) or np.any(np.diff(offsets) <= 0):
        raise PateError(f"{name}: shard_offsets are not increasing from 0 to {len(ids)}")
    record_shard = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    position = np.searchsorted(individuals, ids)
    position = np.clip(position, 0, len(individuals) - 1)
    if not np.array_equal(individuals[position], ids):
        raise PateError(f"{name}: a record's individual is missing from the assignment")
    if not np.array_equal(individual_shard[position], record_shard):
        raise PateError(f"{name}: an individual's records are split across shards")
