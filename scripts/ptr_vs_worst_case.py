"""How many queries a publishable epsilon buys: propose-test-release against the worst-case stop.

    python scripts/ptr_vs_worst_case.py [--epsilons 1,2,3] [--agreements 0.9,0.95] [--json out.json]

For each mechanism (250 teachers, 10 classes: MNIST's Confident-GNMax of PATE 2018, and plain GNMax at
three noise levels), each publishable epsilon (delta = 1e-5) and each assumed teacher agreement, it
prints:

* ``worst-case``: the queries that the default mode answers within epsilon when every one of them is
  answered (the data-independent RDP of one query, composed and converted at the best order);
* ``tested``: the largest number of queries of that agreement for which the propose-test-release test
  of :mod:`pate.accounting.tested` passes with probability about 0.98, with the parameters found by
  its public planner (same epsilon, same delta, release of the test included).

Everything is computed from public assumptions (no data is read). The table in BENCHMARKS.md is this
script's output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pate import accounting  # noqa: E402
from pate.accounting.tested import PtrMechanism, largest_batch  # noqa: E402

MECHANISMS = {
    "confident-gnmax T=200 s1=150 s2=40": PtrMechanism(250, 10, 40.0, 200.0, 150.0),
    "gnmax s=40": PtrMechanism(250, 10, 40.0),
    "gnmax s=60": PtrMechanism(250, 10, 60.0),
    "gnmax s=100": PtrMechanism(250, 10, 100.0),
}


def worst_case_queries(mechanism: PtrMechanism, epsilon: float, delta: float) -> int:
    """Largest k with epsilon(k x one answered query's data-independent RDP) <= epsilon."""
    orders = accounting.resolve_orders("default")
    one = np.array([mechanism.data_independent_rdp(o) for o in orders])
    low, high = 0, 1
    while accounting.epsilon_from_rdp(high * one, orders, delta)[0] <= epsilon:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        fits = accounting.epsilon_from_rdp(middle * one, orders, delta)[0] <= epsilon
        low, high = (middle, high) if fits else (low, middle)
    return low


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epsilons", default="1,2,3")
    parser.add_argument("--agreements", default="0.9,0.95")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    epsilons = [float(x) for x in args.epsilons.split(",")]
    agreements = [float(x) for x in args.agreements.split(",")]
    rows = []
    start = time.perf_counter()
    print(
        f"{'mechanism':36} {'eps':>4} {'agree':>5} {'worst-case':>10} {'tested':>7}  test parameters"
    )
    for name, mechanism in MECHANISMS.items():
        for epsilon in epsilons:
            worst = worst_case_queries(mechanism, epsilon, args.delta)
            for agreement in agreements:
                count, params = largest_batch(
                    mechanism, epsilon=epsilon, delta=args.delta, agreement=agreement
                )
                detail = (
                    "-"
                    if params is None
                    else f"order {params.order:g}, beta {params.beta:.4f}, sigma_test "
                    f"{params.sigma_test:g}, floor {params.floor:.2e}, B {params.answers_budget:.3f}"
                )
                print(
                    f"{name:36} {epsilon:4g} {agreement:5g} {worst:10d} {count:7d}  {detail}",
                    flush=True,
                )
                rows.append(
                    {
                        "mechanism": name,
                        "epsilon": epsilon,
                        "delta": args.delta,
                        "agreement": agreement,
                        "worst_case_queries": worst,
                        "tested_queries": count,
                        "test_parameters": None if params is None else params.to_dict(),
                    }
                )
    print(f"({time.perf_counter() - start:.0f} s; command: python scripts/ptr_vs_worst_case.py)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
