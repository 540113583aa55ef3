"""Benchmark: vectorised ``pate.accounting`` against a per-query loop in the papers' style.

Workload (seeded): 10,000 random vote histograms of 250 teachers over 10 classes, the papers' 298
Renyi orders, classic conversion at delta = 1e-5.

* GNMax (sigma = 40): the composed data-dependent RDP curve and epsilon.
* Confident-GNMax (T = 200, sigma1 = 150, sigma2 = 40): the expected composed curve and epsilon.
* Smooth sensitivity: 1,000 of the histograms at one order (20), Confident-GNMax with T = 200,
  sigma1 = 50, sigma2 = 40 (both steps data-dependent there): expected local sensitivities summed over
  queries, then the papers' search for beta and the GNSS noise.

Histograms: each query draws class probabilities from a symmetric Dirichlet whose concentration is
log-uniform in [10^-1.5, 10^0.5] (from near-unanimous to split teachers), then 250 votes from them.

The script asserts that both implementations agree (RDP curves and epsilon to a relative 1e-9, the
same optimal order and beta), then prints a markdown table of median times and speed-ups.

    PYTHONPATH=. python scripts/bench_accounting.py [--repeats 5] [--loop-repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import accounting_loop as loop  # noqa: E402

from pate.accounting import PAPER_ORDERS, analyze, epsilon_from_rdp  # noqa: E402
from pate.accounting.smooth_sensitivity import optimise_smooth_sensitivity  # noqa: E402

TEACHERS, CLASSES, QUERIES, SS_QUERIES, SS_ORDER, DELTA = 250, 10, 10_000, 1_000, 20.0, 1e-5


def histograms(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    concentration = 10 ** rng.uniform(-1.5, 0.5, size=QUERIES)
    probabilities = np.stack([rng.dirichlet(np.full(CLASSES, c)) for c in concentration])
    return rng.multinomial(TEACHERS, probabilities)


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def check_close(name: str, ours, theirs, rtol: float = 1e-9) -> None:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    if not np.allclose(ours, theirs, rtol=rtol, atol=1e-15):
        worst = np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300))
        raise AssertionError(f"{name}: vectorised and loop differ (worst relative {worst:.3g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs of the vectorised code")
    parser.add_argument("--loop-repeats", type=int, default=3, help="runs of the loop")
    args = parser.parse_args()
    votes = histograms()
    orders = PAPER_ORDERS
    rows = []

    # GNMax
    vec_time, report = timed(
        lambda: analyze(votes, mechanism="gnmax", sigma=40, orders="paper", conversion="classic"),
        args.repeats,
    )
    loop_time, curve = timed(lambda: loop.analyze_gnmax(votes, 40.0, orders), args.loop_repeats)
    check_close("GNMax RDP curve", report.rdp_data_dependent, curve)
    eps, order = loop.eps_classic(curve, orders, DELTA)
    check_close("GNMax epsilon", report.data_dependent[0].epsilon, eps)
    assert report.data_dependent[0].order == order, "GNMax optimal order differs"
    rows.append(("GNMax, 10,000 queries x 298 orders", loop_time, vec_time))

    # Confident-GNMax
    vec_time, report = timed(
        lambda: analyze(
            votes,
            mechanism="confident-gnmax",
            threshold=200,
            sigma1=150,
            sigma2=40,
            orders="paper",
            conversion="classic",
        ),
        args.repeats,
    )
    loop_time, (curve, answered) = timed(
        lambda: loop.analyze_confident(votes, 200, 150.0, 40.0, orders), args.loop_repeats
    )
    check_close("Confident-GNMax RDP curve", report.rdp_data_dependent, curve)
    check_close("expected answered", report.expected_answered, answered)
    eps, order = loop.eps_classic(curve, orders, DELTA)
    check_close("Confident-GNMax epsilon", report.data_dependent[0].epsilon, eps)
    assert report.data_dependent[0].order == order, "Confident-GNMax optimal order differs"
    assert epsilon_from_rdp(curve, orders, DELTA, conversion="classic")[1] == order
    rows.append(("Confident-GNMax, 10,000 queries x 298 orders", loop_time, vec_time))

    # Smooth sensitivity at one order
    subset = votes[:SS_QUERIES]
    vec_time, release = timed(
        lambda: optimise_smooth_sensitivity(
            subset,
            sigma2=40.0,
            order=SS_ORDER,
            delta=DELTA,
            threshold=200,
            sigma1=50.0,
            num_teachers=TEACHERS,
            conversion="classic",
            check_conditions=False,
        ),
        args.repeats,
    )
    assert not release.data_independent_step1 and not release.data_independent_step2
    loop.local_sensitivity_threshold.__globals__["_threshold_cache"].clear()
    loop.logq0.__globals__["_logq0_cache"].clear()
    loop_time, found = timed(
        lambda: loop.smooth_sensitivity_search(
            subset, TEACHERS, 200, 50.0, 40.0, SS_ORDER, include_threshold=True
        ),
        args.loop_repeats,
    )
    check_close("smooth-sensitivity RDP", release.rdp_at_order, found["rdp"])
    check_close("smooth sensitivity", release.sensitivity, found["sensitivity"])
    check_close("GNSS sigma", release.noise_sigma, found["noise_sigma"])
    assert release.beta == found["beta"], "beta differs"
    rows.append(("Smooth sensitivity, 1,000 queries at one order", loop_time, vec_time))

    print("All results agree (relative 1e-9; same optimal orders and beta).\n")
    print("| workload | per-query loop (median) | vectorised (median) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, slow, fast in rows:
        print(f"| {name} | {slow * 1e3:,.0f} ms | {fast * 1e3:,.1f} ms | {slow / fast:,.0f}x |")
    print(
        f"\n({args.repeats} vectorised runs, {args.loop_repeats} loop runs; NumPy "
        f"{np.__version__}; seed 0)"
    )


if __name__ == "__main__":
    main()
