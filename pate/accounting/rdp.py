"""Renyi-DP bounds of one answer of each PATE aggregator."""

from __future__ import annotations

import numpy as np

from pate.errors import PateError


def _check_positive(name: str, value: float) -> float:
    if not np.isfinite(value) or value <= 0:
        raise PateError(f"Expected {name}={value} > 0.")
    return float(value)


def rdp_gnmax_data_independent(sigma: float, orders: np.ndarray) -> np.ndarray:
    """Data-independent RDP of one GNMax answer: ``order / sigma**2``.

    Guarantee: adding or removing one individual moves at most one vote from one class to another, so the
    vote histogram has L2 sensitivity sqrt(2) and the Gaussian mechanism with noise sigma is
    (order, order / sigma^2)-RDP at every order (Papernot et al. 2018, Proposition 8).
    """
    sigma = _check_positive("sigma", sigma)
    return np.asarray(orders, dtype=np.float64) / sigma**2
