"""The voter store: every private record's features, label and individual, grouped by individual.

Private (mode 0600, never released). File (``format = "pate-voters"``)::

    features        (N, d) float32   records grouped by individual: individual u is rows
                                     offsets[u]:offsets[u+1], in the order of the source file
    labels          (N,) int64       in 0..num_classes-1
    individual_id   (N,) int64 or str
    offsets         (U+1,) int64     0 = offsets[0] < offsets[1] < ... < offsets[U] = N
    attrs: format, version, num_classes, class_names, feature_map (JSON), source, unit_of_privacy

Individuals are ordered by id (sorted), so comparing two individuals never depends on who else is in
the store: the search's tie rule "lowest individual index" is "smallest id" (docs/voters.md).

One individual, one voter: :func:`verify_groups` checks, on build and on every read, that each group's
records carry one id and that no id has two groups, so every record of an individual is in its one
group and the individual can cast at most one vote.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import h5py
import numpy as np

from pate.errors import PateError
from pate.io import (
    Dataset,
    atomic_file,
    check_labels,
    decode_ids,
    open_h5,
    require_format,
    write_ids,
)

__all__ = [
    "VOTERS_FORMAT",
    "VoterStore",
    "build_voter_store",
    "read_voter_store",
    "verify_groups",
    "write_voter_store",
]

VOTERS_FORMAT = "pate-voters"
VOTERS_VERSION = 1
_MAP_CHUNK = 65_536  # records passed to the feature map at a time


def verify_groups(individual_id: np.ndarray, offsets: np.ndarray, *, source: str = "store") -> None:
    """Refuse offsets that do not cut the records into non-empty groups of one id each, or an id
    with two groups."""
    offsets = np.asarray(offsets)
    n = len(individual_id)
    if (
        offsets.ndim != 1
        or offsets.size < 2
        or offsets.dtype.kind not in "iu"
        or offsets[0] != 0
        or offsets[-1] != n
        or np.any(np.diff(offsets) <= 0)
    ):
        raise PateError(
            f"{source}: dataset `offsets` is not increasing from 0 to {n}, expected one non-empty "
            "group per individual"
        )
    starts = offsets[:-1]
    group_of_record = np.repeat(np.arange(starts.size), np.diff(offsets))
    if not np.array_equal(individual_id, individual_id[starts][group_of_record]):
        row = int(np.argmax(individual_id != individual_id[starts][group_of_record]))
        raise PateError(
            f"{source}: record {row} of dataset `individual_id` is in another individual's group, "
            "expected one individual per group"
        )
    group_ids = individual_id[starts]
    if np.unique(group_ids).size != group_ids.size:
        raise PateError(
            f"{source}: dataset `individual_id` has an individual in two groups, expected all its "
            "records in one group"
        )
    if not np.all(group_ids[:-1] < group_ids[1:]):
        raise PateError(f"{source}: groups are not sorted by `individual_id`, expected sorted ids")


@dataclass(frozen=True, eq=False)
class VoterStore:
    """The private voters in memory (see the module docstring for the fields)."""

    features: np.ndarray
    labels: np.ndarray
    individual_id: np.ndarray
    offsets: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = ()
    feature_map: dict = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or "voter store"
        if self.features.ndim != 2 or self.features.dtype != np.float32:
            raise PateError(
                f"{where}: dataset `features` is {self.features.dtype} {self.features.shape}, "
                "expected float32 (N, d)"
            )
        if not np.all(np.isfinite(self.features)):
            raise PateError(f"{where}: dataset `features` has NaN or inf, expected finite values")
        n = len(self.features)
        for name in ("labels", "individual_id"):
            if getattr(self, name).shape != (n,):
                raise PateError(
                    f"{where}: dataset `{name}` has shape {getattr(self, name).shape}, expected ({n},)"
                )
        check_labels(self.labels, self.num_classes, where)
        verify_groups(self.individual_id, self.offsets, source=where)

    @property
    def num_individuals(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_records(self) -> int:
        return len(self.features)

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @property
    def record_individual(self) -> np.ndarray:
        """(N,) int64: each record's individual index (its group)."""
        return np.repeat(np.arange(self.num_individuals, dtype=np.int64), np.diff(self.offsets))


def _map_features(
    features: np.ndarray, feature_map: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    parts = []
    dim = None
    for start in range(0, len(features), _MAP_CHUNK):
        block = features[start : start + _MAP_CHUNK]
        mapped = np.asarray(feature_map(block))
        if mapped.ndim != 2 or len(mapped) != len(block) or mapped.dtype.kind != "f":
            raise PateError(
                f"`feature_map` returned {mapped.dtype} {mapped.shape} for {len(block)} records, "
                "expected floats (n, d)"
            )
        if dim is not None and mapped.shape[1] != dim:
            raise PateError(f"`feature_map` returned {mapped.shape[1]} columns, expected {dim}")
        dim = mapped.shape[1]
        parts.append(mapped.astype(np.float32))
    return np.concatenate(parts)


def build_voter_store(
    dataset: Dataset, feature_map: Callable[[np.ndarray], np.ndarray]
) -> VoterStore:
    """Group the private ``dataset``'s records by individual (ids sorted; records of an individual in
    file order) and map their features with ``feature_map``, a function of public data only."""
    if dataset.labels is None:
        raise PateError(
            f"{dataset.path or 'dataset'}: missing dataset `labels`, expected a labelled private set"
        )
    ids = np.asarray(dataset.individual_id)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    change = np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1
    offsets = np.concatenate(([0], change, [len(ids)])).astype(np.int64)
    features = _map_features(dataset.features[order], feature_map)
    describe = getattr(feature_map, "describe", None)
    return VoterStore(
        features=features,
        labels=np.asarray(dataset.labels, dtype=np.int64)[order],
        individual_id=sorted_ids,
        offsets=offsets,
        num_classes=dataset.num_classes,
        class_names=tuple(dataset.class_names),
        feature_map=describe() if callable(describe) else {"kind": "callable"},
        source=dataset.path,
    )


def write_voter_store(path: str | os.PathLike, store: VoterStore) -> None:
    """Write ``store`` atomically, owner-only (mode 0600)."""
    with atomic_file(path, private=True) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["format"] = VOTERS_FORMAT
            handle.attrs["version"] = VOTERS_VERSION
            handle.attrs["num_classes"] = store.num_classes
            if store.class_names:
                handle.attrs["class_names"] = list(store.class_names)
            handle.attrs["feature_map"] = json.dumps(store.feature_map, sort_keys=True)
            handle.attrs["source"] = store.source
            handle.attrs["unit_of_privacy"] = "individual"
            handle.create_dataset("features", data=store.features, chunks=True)
            handle.create_dataset("labels", data=store.labels)
            write_ids(handle, "individual_id", store.individual_id)
            handle.create_dataset("offsets", data=store.offsets)


def read_voter_store(path: str | os.PathLike) -> VoterStore:
    """Read and verify a ``pate-voters`` file (one individual per group, labels in range)."""
    with open_h5(path, "voter store") as handle:
        require_format(handle, path, VOTERS_FORMAT)
        for name in ("features", "labels", "individual_id", "offsets"):
            if not isinstance(handle.get(name), h5py.Dataset):
                raise PateError(f"{path}: missing dataset `{name}`, expected a voter store")
        num_classes = handle.attrs.get("num_classes")
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise PateError(f"{path}: attribute `num_classes` is {num_classes!r}, expected >= 2")
        features = handle["features"][()]
        labels = handle["labels"][()]
        ids = decode_ids(handle["individual_id"][()], path=path)
        offsets = handle["offsets"][()]
        names = tuple(
            v.decode() if isinstance(v, bytes) else str(v)
            for v in np.atleast_1d(handle.attrs.get("class_names", []))
        )
        try:
            feature_map = json.loads(handle.attrs.get("feature_map", "{}"))
        except (TypeError, ValueError):
            raise PateError(f"{path}: attribute `feature_map` is not JSON, expected JSON") from None
    if labels.dtype.kind not in "iu":
        raise PateError(f"{path}: dataset `labels` has dtype {labels.dtype}, expected integers")
    return VoterStore(
        features=features,
        labels=labels.astype(np.int64),
        individual_id=ids,
        offsets=offsets,
        num_classes=int(num_classes),
        class_names=names,
        feature_map=feature_map,
        source=str(path),
    )
