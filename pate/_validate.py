"""Input checks shared by the noise samplers (:mod:`pate.noise`) and the accounting of their tails
(:mod:`pate.accounting.discrete`), kept here so neither depends on the other's internals."""

from __future__ import annotations

import math

from pate.errors import PateError

__all__ = ["check_scale"]


def check_scale(name: str, value: float) -> float:
    """Return the noise scale ``value`` as a float, refusing non-numbers, NaN, infinities, ``<= 0`` and
    values above ``1e12``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise PateError(f"Expected {name}={value!r} to be a number > 0.") from None
    if not math.isfinite(value) or value <= 0:
        raise PateError(f"Expected {name}={value} > 0.")
    if value > 1e12:
        raise PateError(f"Expected {name}={value} <= 1e12.")
    return value
