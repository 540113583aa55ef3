"""``label-and-distill``: the teachers vote, a noisy aggregator answers within budget, a student learns.

* :mod:`.config`     :class:`DistillJob`: every option of the stage and its default (no JAX)
* :mod:`.stage`      :func:`label_and_distill`: the stage as one call; the student's architecture
* :mod:`.workspace`  the private workspace: cached votes, warnings about the private data
* :mod:`.release`    the public release: the labels file, reading a release back, what may replace it

Names are loaded on first use, so that importing :mod:`.config` does not import JAX.
"""

from __future__ import annotations

from pate._lazy import lazy_exports

_EXPORTS = {
    "AGGREGATORS": ("config", "AGGREGATORS"),
    "STUDENT_MODELS": ("config", "STUDENT_MODELS"),
    "DistillJob": ("config", "DistillJob"),
    "DistillResult": ("stage", "DistillResult"),
    "label_and_distill": ("stage", "label_and_distill"),
    "student_model_config": ("stage", "student_model_config"),
    "check_label_space": ("stage", "check_label_space"),
    "VOTES_FILE": ("workspace", "VOTES_FILE"),
    "compute_or_load_votes": ("workspace", "compute_or_load_votes"),
    "LABELS_FORMAT": ("release", "LABELS_FORMAT"),
    "read_labels": ("release", "read_labels"),
    "write_labels": ("release", "write_labels"),
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
