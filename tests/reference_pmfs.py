"""Reference pmfs of the discrete Gaussian and Laplace, computed independently of the samplers and
of the tail bounds (shared by tests/test_noise.py and tests/test_accounting_discrete.py)."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp


def gaussian_log_pmf(sigma: float, support: np.ndarray) -> np.ndarray:
    reach = int(40 * sigma) + 50
    every = np.arange(-reach, reach + 1, dtype=np.float64)
    log_norm = logsumexp(-(every**2) / (2 * sigma**2))
    return -(support.astype(np.float64) ** 2) / (2 * sigma**2) - log_norm


def laplace_log_pmf(scale: float, support: np.ndarray) -> np.ndarray:
    # P(x) = (1 - r) / (1 + r) * r^|x| with r = exp(-1/scale)
    r = math.exp(-1.0 / scale)
    return math.log((1 - r) / (1 + r)) - np.abs(support) / scale
