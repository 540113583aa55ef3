"""Renyi-DP accounting of the PATE aggregators (host-side NumPy/SciPy).

Conventions: natural logs; an RDP curve is an array over a list of orders; composition over queries is
the sum of curves order by order; conversion to (epsilon, delta) minimises over the orders.
"""

from pate.accounting.conversion import epsilon_from_rdp
from pate.accounting.orders import DEFAULT_ORDERS, PAPER_ORDERS, resolve_orders
from pate.accounting.rdp import rdp_gnmax_data_independent

__all__ = [
    "DEFAULT_ORDERS",
    "PAPER_ORDERS",
    "epsilon_from_rdp",
    "rdp_gnmax_data_independent",
    "resolve_orders",
]
