"""Small shards and datasets for the teacher tests, written straight in the pate-shards layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pate.io import Dataset, write_dataset
from pate.partitioning import SHARDS_FORMAT


def make_records(rng: np.random.Generator, count: int, shape: tuple[int, ...], num_classes: int):
    """A learnable toy task: the class is the argmax of fixed projections of the features."""
    if len(shape) == 3:
        features = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
        flat = features.reshape(count, -1).astype(np.float64) / 255.0
    else:
        features = rng.normal(size=(count, *shape)).astype(np.float32)
        flat = features.reshape(count, -1).astype(np.float64)
    projection = np.random.default_rng(1234).normal(size=(flat.shape[1], num_classes))
    labels = (flat @ projection).argmax(axis=1).astype(np.int64)
    return features, labels


def write_shards(
    path: Path,
    features: list[np.ndarray],
    labels: list[np.ndarray],
    num_classes: int,
    *,
    format_name: str = SHARDS_FORMAT,
) -> Path:
    sizes = np.array([len(x) for x in features], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    with h5py.File(path, "w") as handle:
        handle.attrs["format"] = format_name
        handle.attrs["version"] = 1
        handle.attrs["num_classes"] = num_classes
        handle.attrs["num_teachers"] = len(sizes)
        handle.create_dataset("features", data=np.concatenate(features))
        handle.create_dataset("labels", data=np.concatenate(labels).astype(np.int64))
        handle.create_dataset("individual_id", data=np.arange(offsets[-1], dtype=np.int64))
        handle.create_dataset("shard_offsets", data=offsets)
        handle.create_dataset("shard_sizes", data=sizes)
    return path


def toy_shards(
    path: Path,
    sizes: list[int],
    shape: tuple[int, ...] = (6,),
    num_classes: int = 3,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    features, labels = [], []
    for size in sizes:
        x, y = make_records(rng, size, shape, num_classes)
        features.append(x)
        labels.append(y)
    write_shards(path, features, labels, num_classes)
    return features, labels


def toy_dataset(
    path: Path, count: int, shape: tuple[int, ...], num_classes: int = 3, *, labelled=True
) -> Path:
    rng = np.random.default_rng(99)
    x, y = make_records(rng, count, shape, num_classes)
    write_dataset(
        path,
        Dataset(
            features=x,
            labels=y if labelled else None,
            individual_id=np.arange(10**6, 10**6 + count),
            num_classes=num_classes,
            split="test" if labelled else "public",
        ),
    )
    return path
