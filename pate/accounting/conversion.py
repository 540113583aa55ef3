"""Conversion of an RDP curve to (epsilon, delta)-DP."""

from __future__ import annotations

import numpy as np

from pate.accounting._numerics import check_delta, check_orders
from pate.errors import PateError

CONVERSIONS = ("classic", "improved")


def check_conversion(conversion: str) -> str:
    if conversion not in CONVERSIONS:
        raise PateError(f"conversion is {conversion!r}, expected one of {', '.join(CONVERSIONS)}")
    return conversion


def epsilon_per_order(
    rdp: np.ndarray, orders: np.ndarray, delta: float, conversion: str = "improved"
) -> np.ndarray:
    """The epsilon that each order alone certifies at ``delta`` (no checks; see epsilon_from_rdp)."""
    if conversion == "classic":
        return rdp + np.log(1.0 / delta) / (orders - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = rdp + np.log1p(-1.0 / orders) - (np.log(delta) + np.log(orders)) / (orders - 1.0)
        # A Renyi divergence of any order bounds the KL divergence, and delta >= sqrt(1 - e^-KL)
        # already gives (0, delta)-DP (as in dp_accounting).
        eps = np.where(delta**2 + np.expm1(-rdp) > 0, 0.0, eps)
    return np.maximum(eps, 0.0)


def epsilon_from_rdp(
    rdp: np.ndarray, orders: np.ndarray, delta: float, *, conversion: str = "improved"
) -> tuple[float, float]:
    """Smallest epsilon over the orders at which the RDP curve gives (epsilon, delta)-DP.

    ``classic``: eps = rdp(a) + ln(1/delta)/(a-1) (Mironov 2017, Proposition 3), as in the PATE papers.
    ``improved``: eps = rdp(a) + ln((a-1)/a) - (ln delta + ln a)/(a-1) (Balle et al. 2020, Theorem 21;
    Canonne et al. 2020), never larger than the classic value, and 0 when delta^2 > 1 - e^-rdp(a).

    Returns ``(epsilon, order)`` with the order at the first minimising index.

    >>> orders = np.array([2.0, 10.0, 50.0])
    >>> epsilon_from_rdp(orders / 400.0, orders, 1e-5, conversion="classic")[1]
    50.0
    """
    delta = check_delta(delta)
    conversion = check_conversion(conversion)
    orders = check_orders(orders)
    rdp = np.asarray(rdp, dtype=np.float64)
    if rdp.shape != orders.shape:
        raise PateError(f"rdp has shape {rdp.shape}, expected {orders.shape} (one value per order)")
    if np.isnan(rdp).any() or (rdp < 0).any():
        raise PateError("rdp contains NaN or a negative value, expected RDP values >= 0")
    eps = epsilon_per_order(rdp, orders, delta, conversion)
    index = int(np.argmin(eps))
    return float(eps[index]), float(orders[index])


def order_at_edge(order: float, orders: np.ndarray) -> bool:
    """Whether ``order`` is the smallest or the largest of ``orders``.

    An optimal order at an end of the list means a better one may lie outside it: extend the list.
    """
    orders = np.asarray(orders, dtype=np.float64)
    return bool(order <= orders.min() or order >= orders.max())
