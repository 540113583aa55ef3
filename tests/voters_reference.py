"""A plain brute-force reference of the voters' histogram, written from the rules, for the tests."""

from __future__ import annotations

import numpy as np


def reference_histogram(
    groups: list[tuple[np.ndarray, np.ndarray]],
    sample: list[int],
    query: np.ndarray,
    k: int,
    num_classes: int,
) -> np.ndarray:
    """``groups[u] = (features (m, d), labels (m,))`` of individual ``u`` (in index order). Each
    sampled individual votes the label of its nearest record (ties: first record); the ``k`` sampled
    individuals of smallest (distance, index) vote."""
    keys = []
    for u in sample:
        features, labels = groups[u]
        distances = ((features.astype(np.float64) - query) ** 2).sum(axis=1)
        nearest = int(np.argmin(distances))  # the first minimum: lowest record index
        keys.append((float(distances[nearest]), u, int(labels[nearest])))
    keys.sort()
    histogram = np.zeros(num_classes, dtype=np.int64)
    for _, _, label in keys[:k]:
        histogram[label] += 1
    return histogram


def groups_of(store) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (store.features[a:b], store.labels[a:b])
        for a, b in zip(store.offsets[:-1], store.offsets[1:], strict=True)
    ]
