"""The ensemble's predictions and vote histograms (the input of every PATE aggregator).

Teacher ``t``'s prediction on a record depends on its own parameters and normalisation only; a
histogram counts each teacher's vote once, so one teacher moves at most one vote from one class to
another (the sensitivity of Papernot et al. 2017, §2; 2018, §3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pate.extractor import Extractor
from pate.models import ModelConfig, preprocess


def ensemble_predictions(
    params: dict,
    model_config: ModelConfig,
    scale: float,
    mean: np.ndarray,
    std: np.ndarray,
    features: np.ndarray,
    *,
    extractor: Extractor | None = None,
    batch_size: int = 1024,
    teacher_chunk: int = 50,
) -> np.ndarray:
    """Each teacher's predicted class for each record: an int array (T, N).

    With ``extractor`` (public strategy), records pass through it once and the heads see features.
    """
    model = model_config.build()

    def predict_one(p, m, s, x):
        logits = model.apply({"params": p}, preprocess(x, scale, m, s))
        return jnp.argmax(logits, axis=-1)

    predict = jax.jit(jax.vmap(predict_one, in_axes=(0, 0, 0, None)))
    num_teachers = len(mean)
    out = np.empty((num_teachers, len(features)), dtype=np.int64)
    for record_start in range(0, len(features), batch_size):
        record_stop = min(record_start + batch_size, len(features))
        x = features[record_start:record_stop]
        if extractor is not None:
            x = extractor.features(np.asarray(x))
        for first in range(0, num_teachers, teacher_chunk):
            last = min(first + teacher_chunk, num_teachers)
            chunk = jax.tree_util.tree_map(lambda leaf, a=first, b=last: leaf[a:b], params)
            out[first:last, record_start:record_stop] = np.asarray(
                predict(chunk, mean[first:last], std[first:last], x)
            )
    return out


def vote_histogram(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Votes per class for each record: (T, N) predictions -> (N, C) integer histogram."""
    num_records = predictions.shape[1]
    votes = np.zeros((num_records, num_classes), dtype=np.int64)
    for teacher_predictions in predictions:
        votes[np.arange(num_records), teacher_predictions] += 1
    return votes


def teacher_accuracy(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-teacher accuracy (T,) of (T, N) predictions against labels (N,)."""
    return (predictions == np.asarray(labels)[None, :]).mean(axis=1)
