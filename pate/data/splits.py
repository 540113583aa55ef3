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


def split_by_individual(
    individual_id: np.ndarray,
    *,
    public_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Assign whole individuals to private, public and test; return each split's record indices.

    Individuals are shuffled with ``seed``; then, walking through them in that order, an individual
    whose first record falls before ``test_fraction * N`` records goes to test, the next ones up to a
    further ``public_fraction * N`` records go to public, and the rest to private. So every individual
    lands in exactly one split, and the record fractions are met to within one individual. Indices
    within a split keep the input order.
    """
    check_fractions(public_fraction, test_fraction)
    n = len(individual_id)
    _, inverse, counts = np.unique(individual_id, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(counts))
    starts = np.cumsum(counts[order]) - counts[order]
    in_test = starts < test_fraction * n
    test_records = counts[order][in_test].sum()
    in_public = ~in_test & (starts < test_records + public_fraction * n)
    assignment = np.empty(len(counts), dtype=np.int8)  # 0 private, 1 public, 2 test
    assignment[order] = np.where(in_test, 2, np.where(in_public, 1, 0))
    record_split = assignment[inverse.reshape(-1)]
    result = {
        split: np.flatnonzero(record_split == code)
        for split, code in (("private", 0), ("public", 1), ("test", 2))
    }
    for split, indices in result.items():
        if len(indices) == 0:
            raise PateError(
                f"--public-fraction/--test-fraction: leave no individual for the {split} split "
                f"({len(counts)} individuals in all), expected every split non-empty"
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
