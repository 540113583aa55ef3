"""Conversion of an RDP curve to (epsilon, delta)-DP."""

from __future__ import annotations

import numpy as np

from pate.errors import PateError

CONVERSIONS = ("classic", "improved")


def epsilon_from_rdp(
    rdp: np.ndarray, orders: np.ndarray, delta: float, *, conversion: str = "improved"
) -> tuple[float, float]:
    """Smallest epsilon over the orders at which the RDP curve gives (epsilon, delta)-DP.

    ``classic``: eps = rdp(a) + ln(1/delta)/(a-1) (Mironov 2017, Proposition 3), as in the PATE papers.
    ``improved``: eps = rdp(a) + ln((a-1)/a) - (ln delta + ln a)/(a-1) (Balle et al. 2020, Theorem 21),
    never larger than the classic value.

    Returns ``(epsilon, order)`` with the order at the first minimising index.
    """
    if not (0 < delta < 1):
        raise PateError(f"Expected delta={delta} in (0, 1).")
    if conversion not in CONVERSIONS:
        raise PateError(f"conversion is {conversion!r}, expected one of {', '.join(CONVERSIONS)}")
    orders = np.asarray(orders, dtype=np.float64)
    rdp = np.asarray(rdp, dtype=np.float64)
    if conversion == "classic":
        eps = rdp + np.log(1.0 / delta) / (orders - 1.0)
    else:
        eps = rdp + np.log1p(-1.0 / orders) - (np.log(delta) + np.log(orders)) / (orders - 1.0)
    eps = np.maximum(eps, 0.0)
    index = int(np.nanargmin(eps))
    return float(eps[index]), float(orders[index])
