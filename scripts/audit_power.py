"""How small a noise bug ``pate audit`` catches: the audit against aggregators whose noise is divided
by a factor while the accountant is told the full noise.

For each factor the real aggregator (``pate.aggregate.aggregate``) runs with every noise scale divided
by it, and ``pate.audit.audit`` holds the measured lower bounds (one query, ``--queries`` composed)
against the accountant's upper bounds for the claimed noise. Factor 1 is the correct aggregator. Prints
a markdown table.

    PYTHONPATH=. python scripts/audit_power.py [--mechanism gnmax] [--trials 500000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pate.aggregate import aggregate, aggregator_config  # noqa: E402
from pate.audit import AuditConfig, _scaled, audit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mechanism", default="gnmax", choices=["gnmax", "confident-gnmax"])
    parser.add_argument("--sigma", type=float, default=40.0)
    parser.add_argument("--teachers", type=int, default=250)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=500_000)
    parser.add_argument("--factors", default="1,1.25,1.5,2,4")
    args = parser.parse_args()

    claimed = aggregator_config(args.mechanism, args.teachers, sigma=args.sigma)
    config = AuditConfig(
        claimed,
        args.teachers,
        num_classes=args.classes,
        queries=args.queries,
        trials=args.trials,
    )
    print(
        f"claimed: {claimed}, {args.teachers} teachers, {args.classes} classes, k = {args.queries}"
    )
    print("| noise divided by | 1 query: lower / upper | k queries: lower / upper | verdict | s |")
    print("|---|---|---|---|---|")
    for factor in (float(f) for f in args.factors.split(",")):
        broken = _scaled(config, 1.0 / factor).aggregator
        start = time.perf_counter()
        result = audit(config, mechanism=lambda votes, noise, b=broken: aggregate(votes, b, noise))
        q, k = result.per_query, result.composed
        print(
            f"| {factor:g} | {q.epsilon_lower:.4g} / {q.epsilon_upper:.4g} | "
            f"{k.epsilon_lower:.4g} / {k.epsilon_upper:.4g} | {result.verdict} | "
            f"{time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
