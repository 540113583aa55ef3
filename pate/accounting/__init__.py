"""Renyi-DP accounting of the PATE aggregators (host-side NumPy/SciPy), vectorised.

Conventions: natural logs; an RDP curve is an array over a list of orders; composition over queries is
the sum of curves order by order; conversion to (epsilon, delta) minimises over the orders. Per-query
functions take ``votes`` (Q, C) and return (Q,) or (Q, O).

Modules:

* :mod:`~pate.accounting.rdp`: per-answer bounds of GNMax, the threshold step and LNMax (PATE 2018).
* :mod:`~pate.accounting.discrete`: the tail bounds (``ln q``, ``ln Pr[answered]``) of the exact
  discrete noise of :mod:`pate.noise`, for the data-dependent bounds of answers noised with it.
* :mod:`~pate.accounting.conversion`: RDP to (epsilon, delta), classic and improved.
* :mod:`~pate.accounting.smooth_sensitivity`: the smooth-sensitivity release (PATE 2018, App. B).
* :mod:`~pate.accounting.tested`: propose-test-release, a fixed publishable epsilon that depends on
  a private test of the data-dependent bound (Redberg, Zhu and Wang 2023), with its public planner.
* :mod:`~pate.accounting.subsampled`: RDP of a mechanism run on a Poisson sample of individuals
  (Zhu and Wang 2019), for aggregators whose voters are sampled individuals.
* :mod:`~pate.accounting.moments2017`: the PATE 2017 moments accountant for LNMax.
* :mod:`~pate.accounting.analysis`: :func:`analyze`, the whole analysis of a vote array;
  :func:`analyze_file`, of a votes file.
* :mod:`~pate.accounting.planning`: :func:`plan`, noise from a budget.
"""

from pate.accounting.analysis import (
    MECHANISMS,
    AnalysisReport,
    EpsilonAtOrder,
    analyze,
    analyze_file,
)
from pate.accounting.conversion import (
    CONVERSIONS,
    epsilon_from_rdp,
    epsilon_per_order,
    order_at_edge,
)
from pate.accounting.discrete import (
    log_pr_answered_discrete,
    log_sf_discrete_gaussian,
    log_tail_difference_discrete_gaussian,
    log_tail_difference_discrete_laplace,
    logq_gnmax_discrete,
    logq_lnmax_discrete,
)
from pate.accounting.moments2017 import (
    DEFAULT_MOMENTS,
    MomentsAnalysis2017,
    logmgf_2017,
    moments_analysis_2017,
    q_lnmax_2017,
    smoothed_sensitivity_2017,
)
from pate.accounting.orders import DEFAULT_ORDERS, ORDER_LISTS, PAPER_ORDERS, resolve_orders
from pate.accounting.planning import (
    PLAN_MECHANISMS,
    PlanResult,
    SizingResult,
    plan,
    size_teachers,
    size_teachers_from_files,
)
from pate.accounting.rdp import (
    is_data_independent_always_optimal_gnmax,
    is_data_independent_always_optimal_threshold,
    logpr_answered,
    logq_gnmax,
    logq_lnmax,
    rdp_gnmax,
    rdp_gnmax_data_independent,
    rdp_lnmax,
    rdp_lnmax_data_independent,
    rdp_threshold,
    rdp_threshold_data_independent,
)
from pate.accounting.smooth_sensitivity import (
    GnmaxSensitivityPaths,
    SmoothSensitivityRelease,
    check_gnss_conditions,
    discounted_max,
    local_sensitivity_gnmax,
    local_sensitivity_paths_gnmax,
    local_sensitivity_threshold,
    logq0_gnmax,
    logq1_gnmax,
    optimise_smooth_sensitivity,
    rdp_gnss,
    smooth_sensitivity_gnmax,
)
from pate.accounting.subsampled import rdp_poisson_gaussian_tight, rdp_poisson_subsampled

__all__ = [
    "CONVERSIONS",
    "DEFAULT_MOMENTS",
    "DEFAULT_ORDERS",
    "MECHANISMS",
    "ORDER_LISTS",
    "PAPER_ORDERS",
    "PLAN_MECHANISMS",
    "AnalysisReport",
    "EpsilonAtOrder",
    "GnmaxSensitivityPaths",
    "MomentsAnalysis2017",
    "PlanResult",
    "SmoothSensitivityRelease",
    "analyze",
    "analyze_file",
    "check_gnss_conditions",
    "discounted_max",
    "epsilon_from_rdp",
    "epsilon_per_order",
    "is_data_independent_always_optimal_gnmax",
    "is_data_independent_always_optimal_threshold",
    "local_sensitivity_gnmax",
    "local_sensitivity_paths_gnmax",
    "local_sensitivity_threshold",
    "log_pr_answered_discrete",
    "log_sf_discrete_gaussian",
    "log_tail_difference_discrete_gaussian",
    "log_tail_difference_discrete_laplace",
    "logmgf_2017",
    "logpr_answered",
    "logq0_gnmax",
    "logq1_gnmax",
    "logq_gnmax",
    "logq_gnmax_discrete",
    "logq_lnmax",
    "logq_lnmax_discrete",
    "moments_analysis_2017",
    "optimise_smooth_sensitivity",
    "order_at_edge",
    "plan",
    "size_teachers",
    "size_teachers_from_files",
    "SizingResult",
    "q_lnmax_2017",
    "rdp_gnmax",
    "rdp_gnmax_data_independent",
    "rdp_gnss",
    "rdp_lnmax",
    "rdp_lnmax_data_independent",
    "rdp_poisson_gaussian_tight",
    "rdp_poisson_subsampled",
    "rdp_threshold",
    "rdp_threshold_data_independent",
    "resolve_orders",
    "smooth_sensitivity_gnmax",
    "smoothed_sensitivity_2017",
]
