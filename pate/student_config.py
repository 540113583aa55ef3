"""How the student is trained: :class:`StudentConfig` and the choice of method.

Kept apart from :mod:`pate.student` (which needs JAX) so that the command line can take its defaults
from here without importing JAX. :mod:`pate.student` re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass

from pate.errors import PateError

STUDENT_METHODS = ("supervised", "self-train", "vat")


def resolve_method(method: str, feature_shape: tuple[int, ...]) -> str:
    """``auto``: ``vat`` for images (features of shape (height, width, channels)), else ``self-train``.

    The rule is the measurement of the module docstring: VAT helps where classes form clusters in the
    input space (digits), and did not on the tabular sets we tried, where ensemble self-training did.
    """
    if method == "auto":
        return "vat" if len(feature_shape) == 3 else "self-train"
    if method not in STUDENT_METHODS:
        raise PateError(
            f"Expected student method={method!r} in auto, {', '.join(STUDENT_METHODS)}."
        )
    return method


@dataclass(frozen=True)
class StudentConfig:
    """How the student is trained. ``steps`` is a budget of optimiser steps (fixed, data-size free).

    ``method`` and the fields after it are described in the module docstring; the ``vat`` fields are
    ignored by ``supervised``.
    """

    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    method: str = "supervised"
    unlabeled_batch_size: int = 96
    vat_epsilon: float = 2.0
    entropy_weight: float = 1.0
    unlabeled_weight: float = 1.0
    ema_decay: float = 0.99
    shift: int = 2
    label_filter: float = 0.5
    filter_at: float = 0.05
    ensemble: int = 5
    balance_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise PateError(f"Expected student steps={self.steps} >= 1.")
        if self.batch_size < 1:
            raise PateError(f"Expected student batch_size={self.batch_size} >= 1.")
        if not self.learning_rate > 0:
            raise PateError(f"Expected student learning_rate={self.learning_rate} > 0.")
        if self.weight_decay < 0:
            raise PateError(f"Expected student weight_decay={self.weight_decay} >= 0.")
        if self.method not in STUDENT_METHODS:
            raise PateError(
                f"Expected student method={self.method!r} in {', '.join(STUDENT_METHODS)}."
            )
        if self.unlabeled_batch_size < 1:
            raise PateError(
                f"Expected student unlabeled_batch_size={self.unlabeled_batch_size} >= 1."
            )
        for name in ("vat_epsilon", "entropy_weight", "unlabeled_weight", "balance_weight"):
            if not getattr(self, name) >= 0:
                raise PateError(f"Expected student {name}={getattr(self, name)} >= 0.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise PateError(f"Expected student ema_decay={self.ema_decay} in [0, 1).")
        if self.shift < 0:
            raise PateError(f"Expected student shift={self.shift} >= 0.")
        if not 0.0 <= self.label_filter <= 1.0:
            raise PateError(f"Expected student label_filter={self.label_filter} in [0, 1].")
        if not 0.0 <= self.filter_at < 1.0:
            raise PateError(f"Expected student filter_at={self.filter_at} in [0, 1).")
        if self.ensemble < 1:
            raise PateError(f"Expected student ensemble={self.ensemble} >= 1.")
