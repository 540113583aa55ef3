"""What one query of the individual-voter aggregator costs, in Renyi DP (proofs in docs/voters.md).

Per query, on two independent Poisson samples of individuals (rate ``q`` each):

* the screen: ``max_j h_j(S1) + N_Z(0, sigma1^2) >= T``; ``max_j h_j`` moves by at most 1 when one
  individual joins or leaves the sample, so on the sample it is ``(a, a / (2 sigma1^2))``-RDP;
* the answer, only when the screen passed: ``argmax_j (h_j(S2) + N_Z(0, sigma2^2))``; the histogram
  moves by at most ``sqrt(2)`` in L2, so on the sample it is ``(a, a / sigma2^2)``-RDP.

Each runs on its own sample, so each is a Poisson-subsampled mechanism by itself
(:func:`pate.accounting.subsampled.rdp_poisson_subsampled`, valid for discrete noise), and the answer
runs or not as a function of the screen's released bit alone: adaptive composition charges the
answer's cost only on answered queries.
"""

from __future__ import annotations

import numpy as np

from pate.accounting._numerics import check_orders
from pate.accounting.subsampled import check_rate, rdp_poisson_subsampled
from pate.errors import PateError

__all__ = ["rdp_voters_answer", "rdp_voters_query", "rdp_voters_run", "rdp_voters_screen"]


def check_positive(name: str, value: float) -> float:
    """``value`` as a finite float > 0, else a PateError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PateError(f"`{name}` is {value!r}, expected a number > 0")
    if not np.isfinite(value) or value <= 0:
        raise PateError(f"`{name}` is {value!r}, expected a finite number > 0")
    return float(value)


def rdp_voters_screen(rate: float, sigma1: float, orders: np.ndarray) -> np.ndarray:
    """RDP at ``orders`` of one screen on a Poisson sample at ``rate`` (threshold noise ``sigma1``)."""
    sigma1 = check_positive("sigma1", sigma1)
    return rdp_poisson_subsampled(
        check_rate(rate), lambda a: np.asarray(a) / (2.0 * sigma1**2), check_orders(orders)
    )


def rdp_voters_answer(rate: float, sigma2: float, orders: np.ndarray) -> np.ndarray:
    """RDP at ``orders`` of one noisy argmax on a Poisson sample at ``rate`` (vote noise ``sigma2``)."""
    sigma2 = check_positive("sigma2", sigma2)
    return rdp_poisson_subsampled(
        check_rate(rate), lambda a: np.asarray(a) / sigma2**2, check_orders(orders)
    )


def rdp_voters_query(
    rate: float, sigma1: float, sigma2: float, answered: bool, orders: np.ndarray
) -> np.ndarray:
    """The RDP curve one query charges: the screen's, plus the answer's when ``answered``."""
    screen = rdp_voters_screen(rate, sigma1, orders)
    if not answered:
        return screen
    return screen + rdp_voters_answer(rate, sigma2, orders)


def rdp_voters_run(
    rate: float, sigma1: float, sigma2: float, queries: int, answered: int, orders: np.ndarray
) -> np.ndarray:
    """The curve of ``queries`` screened queries of which ``answered`` were answered (composition)."""
    for name, value in (("queries", queries), ("answered", answered)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise PateError(f"`{name}` is {value!r}, expected a non-negative integer")
    if answered > queries:
        raise PateError(f"`answered` is {answered}, expected at most `queries` ({queries})")
    return queries * rdp_voters_screen(rate, sigma1, orders) + answered * rdp_voters_answer(
        rate, sigma2, orders
    )
