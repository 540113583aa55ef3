"""Writing an importer's three files, and splitting records into them by individual.

Every importer ends with :func:`write_splits`, which writes ``private.h5`` (mode 0600), ``public.h5``
and ``test.h5`` in the ``pate-dataset`` schema. The public file is **unlabeled**: its true labels, when
known, are kept only as the dataset ``evaluation_labels`` (to measure the aggregator's label accuracy in
experiments), which the pipeline never reads.

Privacy rule 8 of the design: the public set shares no individual with the private data. The importers
guarantee it by construction (disjoint id ranges or a split by individual), and :func:`write_splits`
checks it before writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pate.errors import PateError
from pate.io import Dataset, write_dataset
from pate.outputs import check_output

EVALUATION_LABELS_NOTE = (
    "ground truth kept for experiments only (measuring label accuracy); never used by the pipeline"
)
SPLITS = ("private", "public", "test")


@dataclass(frozen=True)
class Part:
    """The records of one split: features, labels (None only for an unlabeled public file) and
    individual ids."""

    features: np.ndarray
    labels: np.ndarray | None
    individual_id: np.ndarray


def write_splits(
    out_dir: str | Path,
    *,
    name: str,
    parts: dict[str, Part],
    num_classes: int,
    class_names: tuple[str, ...] = (),
    feature_names: tuple[str, ...] = (),
    attrs: dict | None = None,
) -> dict[str, Path]:
    """Write ``parts["private"|"public"|"test"]`` as ``out_dir/<split>.h5``; return the paths.

    ``attrs`` (for example ``source``, ``individual_note``, ``split_note``) go on all three files.
    Raises :class:`PateError` if an individual appears in two splits, and first, by the output
    policy (:func:`pate.outputs.check_output`), for an ``out_dir`` that is not a new or empty folder
    or that lies inside a release, workspace, teachers, data or audit folder.
    """
    check_output(out_dir, kinds=("data",), folder=True)
    missing = [split for split in SPLITS if split not in parts]
    if missing:
        raise PateError(f"{name}: splits {missing} missing, expected {list(SPLITS)}")
    check_disjoint_individuals({split: parts[split].individual_id for split in SPLITS}, name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    common = dict(
        num_classes=num_classes, class_names=class_names, feature_names=feature_names, name=name
    )
    paths = {}
    for split in SPLITS:
        part = parts[split]
        extra = dict(attrs or {})
        extra_arrays = None
        if part.labels is None and split != "public":
            raise PateError(f"{name}: the {split} split has no labels, expected labels")
        labels = None if part.labels is None else part.labels.astype(np.int64)
        if split == "public" and labels is not None:
            extra["evaluation_labels_note"] = EVALUATION_LABELS_NOTE
            extra_arrays = {"evaluation_labels": labels}
            labels = None
        paths[split] = out_dir / f"{split}.h5"
        dataset = Dataset(
            part.features, labels, part.individual_id, split=split, extra_attrs=extra, **common
        )
        write_dataset(
            paths[split], dataset, private=(split == "private"), extra_arrays=extra_arrays
        )
    return paths


def check_disjoint_individuals(ids: dict[str, np.ndarray], name: str) -> None:
    """Refuse an individual id present in two splits (privacy rule 8)."""
    keys = list(ids)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            shared = np.intersect1d(ids[first], ids[second])
            if len(shared):
                raise PateError(
                    f"{name}: individual {shared[0]!r} is in both {first} and {second}, "
                    "expected each individual in one split"
                )


def split_codes(
    individuals, *, public_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Each individual's split as a code (0 private, 1 public, 2 test), from its own id and the seed
    alone: ``u = keyed_hash(id, "split-<seed>") / 2**64`` (:func:`pate.partitioning.keyed_hash`, the
    primitive of the shard assignment); test when ``u < test_fraction``, public when
    ``u < test_fraction + public_fraction``, else private. ``individuals`` are normalised ids
    (:func:`pate.data.generic.normalise_ids`: integers, or text).

    So the fractions are each individual's probabilities, and adding or removing one individual moves
    nobody else (issue 20: the earlier split permuted all ids and cut by record counts).
    """
    from pate.partitioning import keyed_hash

    unit = keyed_hash(individuals, f"split-{int(seed)}").astype(np.float64) / 2.0**64
    return np.where(unit < test_fraction, 2, np.where(unit < test_fraction + public_fraction, 1, 0))


def split_by_individual(
    individual_id: np.ndarray,
    *,
    public_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Assign whole individuals to private, public and test; return each split's record indices.

    Each individual's split is a keyed hash of its own id and ``seed`` (:func:`split_codes`): the
    fractions are the probabilities with which an individual lands in public or test, not exact
    shares. Every individual lands in exactly one split; indices within a split keep the input
    order. Refuses a split left empty.
    """
    check_fractions(public_fraction, test_fraction)
    individuals, inverse = np.unique(individual_id, return_inverse=True)
    codes = split_codes(
        individuals, public_fraction=public_fraction, test_fraction=test_fraction, seed=seed
    )
    record_split = codes[inverse.reshape(-1)]
    result = {
        split: np.flatnonzero(record_split == code)
        for split, code in (("private", 0), ("public", 1), ("test", 2))
    }
    for split, indices in result.items():
        if len(indices) == 0:
            raise PateError(
                f"--public-fraction/--test-fraction: leave no individual for the {split} split "
                f"({len(individuals)} individuals in all), expected every split non-empty"
            )
    return result


def check_fractions(public_fraction: float, test_fraction: float) -> None:
    """Refuse split fractions outside (0, 1) or leaving no private data."""
    if not 0 < public_fraction < 1:
        raise PateError(f"--public-fraction: {public_fraction}, expected a fraction in (0, 1)")
    if not 0 < test_fraction < 1:
        raise PateError(f"--test-fraction: {test_fraction}, expected a fraction in (0, 1)")
    if public_fraction + test_fraction >= 1:
        raise PateError(
            f"--public-fraction + --test-fraction: {public_fraction + test_fraction:g}, "
            "expected < 1 so that private data remains"
        )


class SplitWriter:
    """Write one split file of the ``pate-dataset`` schema block by block (streaming import).

    Same datasets and attributes as :func:`write_splits` (``features``, ``labels`` or, for the public
    split, ``evaluation_labels``, ``individual_id``), stored chunked and resizable. Rows are buffered
    and written in blocks of a fixed number of rows, so a file's bytes depend on its own records only,
    never on how the input was cut into chunks (the public and test files of neighbouring inputs are
    byte-identical). Memory: one block.
    """

    def __init__(
        self,
        path: Path,
        *,
        split: str,
        num_features: int,
        labels: bool,
        integer_ids: bool,
        num_classes: int,
        name: str,
        class_names: tuple[str, ...] = (),
        feature_names: tuple[str, ...] = (),
        attrs: dict | None = None,
    ) -> None:
        import h5py

        from pate.io import DATASET_FORMAT, DATASET_VERSION

        self.block = max(1, min(16_384, (1 << 20) // max(1, 4 * num_features)))
        self.handle = h5py.File(path, "w")
        handle = self.handle
        handle.attrs["format"] = DATASET_FORMAT
        handle.attrs["version"] = DATASET_VERSION
        handle.attrs["num_classes"] = num_classes
        handle.attrs["name"] = name
        handle.attrs["split"] = split
        if class_names:
            handle.attrs["class_names"] = list(class_names)
        if feature_names:
            handle.attrs["feature_names"] = list(feature_names)
        extra = dict(attrs or {})
        label_name = None
        if labels:
            label_name = "labels"
            if split == "public":
                extra["evaluation_labels_note"] = EVALUATION_LABELS_NOTE
                label_name = "evaluation_labels"
        for key, value in extra.items():
            handle.attrs[key] = value
        self.features = handle.create_dataset(
            "features",
            shape=(0, num_features),
            maxshape=(None, num_features),
            dtype=np.float32,
            chunks=(self.block, num_features),
            compression="lzf",
        )
        self.labels = None
        if label_name:
            self.labels = handle.create_dataset(
                label_name, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(self.block,)
            )
        self.integer_ids = integer_ids
        self.ids = handle.create_dataset(
            "individual_id",
            shape=(0,),
            maxshape=(None,),
            dtype=np.int64 if integer_ids else h5py.string_dtype(),
            chunks=(self.block,),
        )
        self.pending: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
        self.pending_rows = 0
        self.written = 0
        self.failed = False

    def append(self, features: np.ndarray, labels: np.ndarray | None, ids: np.ndarray) -> None:
        if not len(features):
            return
        self.pending.append((features, labels, ids))
        self.pending_rows += len(features)
        if self.pending_rows >= self.block:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        if not self.pending:
            return
        features = np.concatenate([p[0] for p in self.pending])
        labels = None if self.labels is None else np.concatenate([p[1] for p in self.pending])
        ids = np.concatenate([p[2] for p in self.pending])
        take = len(features) if final else (len(features) // self.block) * self.block
        start, stop = self.written, self.written + take
        try:
            for dataset, values in (
                (self.features, features),
                (self.labels, labels),
                (self.ids, ids),
            ):
                if dataset is None:
                    continue
                dataset.resize(stop, axis=0)
                if dataset is self.ids and not self.integer_ids:
                    values = np.asarray(values[:take], dtype=object)
                dataset[start:stop] = values[:take]
        except OSError:
            self.failed = True
            raise
        self.written = stop
        rest = (features[take:], None if labels is None else labels[take:], ids[take:])
        self.pending = [rest] if len(rest[0]) else []
        self.pending_rows = len(rest[0])

    def close(self) -> None:
        """Write what is buffered and close the file."""
        try:
            self._flush(final=True)
            try:
                self.handle.flush()
            except OSError:
                self.failed = True
                raise
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the file, unless a write to it failed: HDF5 cannot close such a file (the close
        segfaults), so it is left open for the process, which then ends with ``os._exit``
        (:func:`pate.io.h5_create`)."""
        if not self.handle.id.valid:
            return
        if self.failed:
            from pate import io

            io._UNCLOSABLE.append(self.handle)
        else:
            self.handle.close()
