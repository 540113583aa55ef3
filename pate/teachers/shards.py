"""Reading a ``pate-shards`` file (:mod:`pate.partitioning` writes it) chunk by chunk.

:func:`open_shards` checks the layout and re-verifies, from the records themselves, that every
individual's records sit in one shard: the sensitivity every PATE bound assumes (design rule 1;
:mod:`pate.partitioning` checks it against its assignment before the file is renamed into place, this
check holds for whatever file is read). Records are read only when a chunk asks for them
(:meth:`ShardsFile.read`), so memory is bounded by the chunk, not by the dataset.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pate.errors import PateError
from pate.io import decode_ids, file_fingerprint, open_h5, require_format
from pate.models import Preprocessing
from pate.partitioning import SHARDS_FORMAT


@dataclass(frozen=True)
class Shards:
    """The shards of a set of teachers, in memory, padded to a common length."""

    features: np.ndarray  # (T, max_n, ...)
    labels: np.ndarray  # (T, max_n)
    sizes: np.ndarray  # (T,)
    num_classes: int
    class_names: tuple[str, ...]
    individual_ids: tuple[np.ndarray, ...]  # per teacher, for the public/private overlap check
    sha256: str
    path: str

    @property
    def num_teachers(self) -> int:
        return len(self.sizes)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[2:])

    @property
    def feature_dtype(self) -> np.dtype:
        return self.features.dtype

    @property
    def max_size(self) -> int:
        return int(self.features.shape[1])

    def read(self, teachers: Sequence[int], *, max_n: int | None = None) -> Shards:
        """The shards of ``teachers`` (``max_n`` must be None or this set's padded length)."""
        if max_n is not None and max_n != self.max_size:
            raise PateError(f"`max_n`: {max_n}, expected {self.max_size} for shards in memory")
        rows = np.asarray(list(teachers), dtype=np.int64)
        return dataclasses.replace(
            self,
            features=self.features[rows],
            labels=self.labels[rows],
            sizes=self.sizes[rows],
            individual_ids=tuple(self.individual_ids[t] for t in rows),
        )

    def individuals(self) -> np.ndarray:
        return np.concatenate(self.individual_ids)


@dataclass(frozen=True)
class ShardsFile:
    """A ``pate-shards`` file opened lazily: sizes and attributes now, records per chunk on demand."""

    path: str
    offsets: np.ndarray  # (T+1,)
    feature_shape: tuple[int, ...]
    feature_dtype: np.dtype
    num_classes: int
    class_names: tuple[str, ...]
    sha256: str

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int64)

    @property
    def num_teachers(self) -> int:
        return len(self.offsets) - 1

    @property
    def max_size(self) -> int:
        return int(self.sizes.max())

    def read(self, teachers: Sequence[int], *, max_n: int | None = None) -> Shards:
        """The shards of ``teachers``, padded to ``max_n`` rows (default: the file's largest shard)."""
        teachers = [int(t) for t in teachers]
        max_n = self.max_size if max_n is None else max_n
        features = np.zeros((len(teachers), max_n, *self.feature_shape), self.feature_dtype)
        labels = np.zeros((len(teachers), max_n), np.int64)
        ids = []
        with open_h5(self.path, "shards file") as handle:
            # Consecutive teachers are read as one contiguous slice.
            first, last = min(teachers), max(teachers)
            block_start, block_stop = int(self.offsets[first]), int(self.offsets[last + 1])
            contiguous = teachers == list(range(first, last + 1))
            if contiguous:
                block_x = handle["features"][block_start:block_stop]
                block_y = handle["labels"][block_start:block_stop]
                block_id = handle["individual_id"][block_start:block_stop]
            for row, teacher in enumerate(teachers):
                start, stop = int(self.offsets[teacher]), int(self.offsets[teacher + 1])
                if contiguous:
                    a, b = start - block_start, stop - block_start
                    x, y, i = block_x[a:b], block_y[a:b], block_id[a:b]
                else:
                    x = handle["features"][start:stop]
                    y = handle["labels"][start:stop]
                    i = handle["individual_id"][start:stop]
                features[row, : stop - start] = x
                labels[row, : stop - start] = y
                ids.append(decode_ids(i))
        if features.dtype.kind == "f" and not np.isfinite(features).all():
            raise PateError(
                f"{self.path}: dataset 'features' has NaN or inf, expected finite values"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise PateError(
                f"{self.path}: dataset 'labels' has values outside 0..{self.num_classes - 1}"
            )
        return Shards(
            features=features,
            labels=labels,
            sizes=self.sizes[teachers],
            num_classes=self.num_classes,
            class_names=self.class_names,
            individual_ids=tuple(ids),
            sha256=self.sha256,
            path=self.path,
        )

    def individuals(self) -> np.ndarray:
        with open_h5(self.path, "shards file") as handle:
            return decode_ids(handle["individual_id"][()])


def open_shards(path: str | os.PathLike) -> ShardsFile:
    """Open a ``pate-shards`` file, check its layout and that every individual's records sit in one
    shard; no feature or label is read yet."""
    with open_h5(path, "shards file") as handle:
        require_format(handle, path, SHARDS_FORMAT)
        for name in ("features", "labels", "individual_id", "shard_offsets"):
            if name not in handle:
                raise PateError(f"{path}: missing dataset {name!r}, expected a pate-shards file")
        offsets = handle["shard_offsets"][()].astype(np.int64)
        total = handle["features"].shape[0]
        if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != total:
            raise PateError(
                f"{path}: 'shard_offsets' runs {offsets[:1]}..{offsets[-1:]}, expected 0..{total}"
            )
        sizes = np.diff(offsets)
        if (sizes < 0).any():
            raise PateError(f"{path}: 'shard_offsets' decreases, expected non-decreasing offsets")
        if (sizes == 0).any():
            empty = int(np.flatnonzero(sizes == 0)[0])
            raise PateError(f"{path}: shard {empty} has no records, expected at least one")
        verify_one_shard_per_individual(path, decode_ids(handle["individual_id"][()]), offsets)
        class_names = tuple(
            v.decode() if isinstance(v, bytes) else str(v)
            for v in handle.attrs.get("class_names", [])
        )
        return ShardsFile(
            path=str(path),
            offsets=offsets,
            feature_shape=tuple(handle["features"].shape[1:]),
            feature_dtype=handle["features"].dtype,
            num_classes=int(handle.attrs["num_classes"]),
            class_names=class_names,
            sha256=file_fingerprint(path),
        )


def verify_one_shard_per_individual(
    path: str | os.PathLike, ids: np.ndarray, offsets: np.ndarray
) -> None:
    """Refuse records of one individual in two shards (``ids`` per record, ``offsets`` (T+1,))."""
    if len(ids) != offsets[-1]:
        raise PateError(f"{path}: 'individual_id' has {len(ids)} rows, expected {offsets[-1]}")
    record_shard = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    order = np.argsort(ids, kind="stable")
    ids, record_shard = ids[order], record_shard[order]
    split = (ids[1:] == ids[:-1]) & (record_shard[1:] != record_shard[:-1])
    if split.any():
        first = int(np.flatnonzero(split)[0])
        raise PateError(
            f"{path}: individual {ids[first].item()!r} has records in shards {record_shard[first]} and "
            f"{record_shard[first + 1]}, expected every individual's records in one shard"
        )


def load_shards(path: str | os.PathLike, teachers: Sequence[int] | None = None) -> Shards:
    """Read the shards of ``teachers`` (all by default) from a ``pate-shards`` file into memory.

    Only the rows of the requested teachers are read. For large files prefer :func:`open_shards`,
    which :func:`pate.teachers.train_ensemble` reads chunk by chunk.
    """
    source = open_shards(path)
    teachers = range(source.num_teachers) if teachers is None else teachers
    return source.read(teachers, max_n=int(source.sizes[list(teachers)].max()))


def fit_teacher_preprocessing(shards: Shards) -> tuple[float, np.ndarray, np.ndarray]:
    """Per-teacher normalisation fitted on each teacher's own rows only: (scale, mean (T,...), std)."""
    return Preprocessing.fit_stacked(shards.features, shards.sizes)
