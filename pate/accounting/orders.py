"""Lists of Renyi orders."""

from __future__ import annotations

import numpy as np

from pate.errors import PateError

#: The order list of the PATE 2018 analysis scripts: 298 entries, 100.0 appears twice (indices 196, 198).
PAPER_ORDERS: np.ndarray = np.concatenate(
    (np.arange(2, 100 + 1, 0.5), np.logspace(np.log10(100), np.log10(500), num=100))
)

#: Our default: denser at small orders (where large budgets are optimal) and reaching far enough for
#: tiny budgets; strictly increasing.
DEFAULT_ORDERS: np.ndarray = np.unique(
    np.concatenate(
        (
            np.linspace(1.01, 2.0, 12),
            np.arange(2.25, 100.0, 0.25),
            np.geomspace(100.0, 10_000.0, 120),
        )
    )
)


#: The named order lists (``orders="paper"`` or ``"default"``).
ORDER_LISTS = ("paper", "default")


def resolve_orders(orders: str | np.ndarray | list[float]) -> np.ndarray:
    """Return an order array from ``"paper"``, ``"default"`` or explicit values (all must exceed 1)."""
    if isinstance(orders, str):
        if orders == "paper":
            return PAPER_ORDERS
        if orders == "default":
            return DEFAULT_ORDERS
        raise PateError(f"--orders is {orders!r}, expected 'paper' or 'default'")
    array = np.asarray(orders, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise PateError(f"orders has shape {array.shape}, expected a non-empty list")
    if not np.all(np.isfinite(array)) or np.any(array <= 1):
        raise PateError(
            f"orders contains {array[~(array > 1)][0] if np.any(~(array > 1)) else 'inf'}, expected orders > 1"
        )
    return array
