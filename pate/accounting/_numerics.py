"""Vectorised log-space helpers and input checks shared by the accounting modules."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from pate.errors import PateError


def log1mexp(x: np.ndarray) -> np.ndarray:
    """``ln(1 - e^x)`` for ``x <= 0``, elementwise; ``-inf`` at ``x = 0``.

    Uses ``log1p(-e^x)`` below -1 and ``ln(-expm1(x))`` above, the two stable branches.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        return log1mexp(x[None])[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log1p(-np.exp(np.minimum(x, -1.0)))
        high = x >= -1.0
        if high.any():
            out[high] = np.log(-np.expm1(np.minimum(x[high], 0.0)))
    return out


def logaddexp(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``ln(e^x + e^y)`` elementwise, written with exp/log1p so NumPy can use its SIMD loops."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        larger = np.maximum(x, y)
        diff = np.asarray(np.abs(x - y))
    if diff.ndim == 0:
        diff = np.log1p(np.exp(-diff))
    else:
        np.negative(diff, out=diff)
        np.exp(diff, out=diff)
        np.log1p(diff, out=diff)
    # Where both are -inf the difference is NaN; the sum is then -inf.
    result = larger + diff
    return np.where(np.isneginf(larger), larger, result)


def logsumexp_rows(values: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """``ln(sum_j e^{values[..., j]})`` over the last axis, as ``m + ln(sum e^{v - m})``.

    Entries where ``exclude`` is True are left out. Exponents are clipped at -708: the largest term
    contributes 1 to the sum, so this changes nothing, and it keeps ``exp`` out of its slow subnormal
    range.
    """
    if exclude is not None:
        top = np.max(np.where(exclude, -np.inf, values), axis=-1)
    else:
        top = np.max(values, axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    shifted = values - safe[..., None]
    np.maximum(shifted, -708.0, out=shifted)
    if exclude is not None:
        shifted[exclude] = 0.0
    terms = np.exp(shifted, out=shifted)
    if exclude is not None:
        terms[exclude] = 0.0
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(terms, axis=-1))
    return np.where(np.isneginf(top), -np.inf, safe + total)


def gaussian_logsf(x: np.ndarray, scale: float) -> np.ndarray:
    """``ln Pr[N(0, scale^2) >= x]``, i.e. ``scipy.stats.norm.logsf(x, scale=scale)``."""
    return special.log_ndtr(-(np.asarray(x, dtype=np.float64) / scale))


def runner_up_gaps(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaps ``n_{i*} - n_j`` of every class to the plurality class ``i* = argmax`` (first on ties).

    Returns ``(gaps, is_top)``: ``gaps`` has the shape of ``votes``; ``is_top`` marks the one entry per
    row that is excluded from the union bound (the plurality class itself).
    """
    top_index = np.argmax(votes, axis=-1)
    top = np.take_along_axis(votes, top_index[..., None], axis=-1)
    gaps = top - votes
    is_top = np.zeros(votes.shape, dtype=bool)
    np.put_along_axis(is_top, top_index[..., None], True, axis=-1)
    return gaps, is_top


# ----------------------------------------------------------------------------------------------------
# Input checks


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float, refusing NaN, infinities and values <= 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PateError(f"Expected {name}={value!r} > 0.") from None
    if not math.isfinite(number) or number <= 0:
        raise PateError(f"Expected {name}={value} > 0.")
    return number


def check_delta(delta: float) -> float:
    try:
        number = float(delta)
    except (TypeError, ValueError):
        raise PateError(f"Expected delta={delta!r} in (0, 1).") from None
    if not (0.0 < number < 1.0):
        raise PateError(f"Expected delta={delta} in (0, 1).")
    return number


def check_orders(orders: np.ndarray) -> np.ndarray:
    """Return orders as a 1-D float array, refusing an empty list, NaN, and orders <= 1."""
    array = np.atleast_1d(np.asarray(orders, dtype=np.float64))
    if array.ndim != 1 or array.size == 0:
        raise PateError(f"orders has shape {array.shape}, expected a non-empty 1-D list")
    bad = ~(np.isfinite(array) & (array > 1.0))
    if bad.any():
        raise PateError(f"orders contains {array[bad][0]}, expected finite orders > 1")
    return array


def check_logs(name: str, values: np.ndarray) -> np.ndarray:
    """Return log-probabilities as a 1-D float array, refusing NaN and values above 0."""
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if array.ndim != 1:
        raise PateError(f"{name} has shape {array.shape}, expected (queries,)")
    bad = np.isnan(array) | (array > 0)
    if bad.any():
        raise PateError(f"{name} contains {array[bad][0]}, expected log-probabilities <= 0")
    return array


def check_votes(
    votes: np.ndarray,
    *,
    name: str = "votes",
    teachers: int | None = None,
    allow_fractional: bool = False,
) -> np.ndarray:
    """Validate a (queries, classes) vote array and return it (integer dtype unless fractional).

    Refuses: a non-numeric or non-2-D array, no rows, fewer than two classes, NaN or infinite entries,
    negative counts, non-integer counts (unless ``allow_fractional``), and rows that do not sum to
    ``teachers`` when it is given.
    """
    try:
        array = np.asarray(votes)
    except (TypeError, ValueError):
        raise PateError(
            f"{name}: cannot be read as an array, expected (queries, classes)"
        ) from None
    if array.dtype.kind not in "iufb":
        raise PateError(f"{name}: has dtype {array.dtype}, expected integer vote counts")
    if array.ndim == 1 and array.size > 0:
        array = array[None, :]
    if array.ndim != 2:
        raise PateError(f"{name}: has shape {array.shape}, expected (queries, classes)")
    if array.shape[0] == 0:
        raise PateError(f"{name}: has no rows, expected at least one query")
    if array.shape[1] < 2:
        raise PateError(f"{name}: has {array.shape[1]} class(es), expected at least 2")
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            row = int(np.argmax(~finite.all(axis=1)))
            raise PateError(f"{name}: row {row} holds NaN or inf, expected finite vote counts")
    if array.dtype.kind == "b":
        array = array.astype(np.int64)
    if (array < 0).any() and not allow_fractional:
        row = int(np.argmax((array < 0).any(axis=1)))
        raise PateError(
            f"{name}: row {row} holds a negative count {array[row].min()}, expected counts >= 0"
        )
    if array.dtype.kind == "f":
        whole = array == np.round(array)
        if whole.all():
            array = array.astype(np.int64)
        elif not allow_fractional:
            row = int(np.argmax(~whole.all(axis=1)))
            value = array[row][~whole[row]][0]
            raise PateError(f"{name}: row {row} holds {value}, expected integer vote counts")
    else:
        array = array.astype(np.int64, copy=False)
    if teachers is not None:
        sums = array.sum(axis=1)
        wrong = sums != teachers
        if wrong.any():
            row = int(np.argmax(wrong))
            raise PateError(
                f"{name}: row {row} sums to {sums[row]}, expected --teachers={teachers} votes per query"
            )
    return array


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float, refusing non-numbers, NaN and infinities."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise PateError(f"Expected threshold={threshold!r} to be a finite number.") from None
    if not math.isfinite(value):
        raise PateError(f"Expected threshold={threshold} to be a finite number.")
    return value
