"""Does the student choosing its queries help? Order against uncertainty selection at the same budget.

On the built-in adas fleet (synthetic, unbalanced actions: ``hard_brake`` is about 5% of the public
pool): partition, train the teachers once, then ``label-and-distill`` twice on the same votes with the
same number of queries, ``--query-selection order`` and ``--query-selection uncertainty``, and compare
the students' test accuracy, the released labels' accuracy and how many labels the thinnest class got. Seeded noise (an experiment,
not a private release). About three minutes on two CPU cores with the defaults::

    python scripts/bench_selection.py --out bench-selection
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pate(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(done.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench-selection")
    parser.add_argument("--vehicles", type=int, default=800)
    parser.add_argument("--teachers", type=int, default=40)
    parser.add_argument("--sigma", type=float, default=8.0)
    parser.add_argument("--queries", type=int, nargs="+", default=[300, 600, 1200])
    parser.add_argument("--selection-batch", type=int, default=100)
    parser.add_argument("--student-steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3, help="noise/student seeds per setting")
    args = parser.parse_args()

    from pate.data.adas import ACTIONS, AdasConfig, build_adas
    from pate.distill import DistillJob, label_and_distill
    from pate.io import open_h5
    from pate.labeling import BudgetConfig
    from pate.student_config import StudentConfig

    start = time.perf_counter()
    out = ROOT / args.out
    shutil.rmtree(out, ignore_errors=True)
    data = build_adas(
        out / "data",
        config=AdasConfig(vehicles=args.vehicles, public_vehicles=150, test_vehicles=150, seed=1),
    )
    pate(
        "partition",
        str(data["private"]),
        "--teachers",
        str(args.teachers),
        "--out",
        str(out / "s.h5"),
    )
    pate("train-teachers", str(out / "s.h5"), "--out", str(out / "teachers"), "--epochs", "20")
    (out / "rel").mkdir()
    (out / "ws").mkdir()
    with open_h5(data["public"], "dataset file") as handle:
        truth = handle["evaluation_labels"][()]
    thin = int(np.bincount(truth).argmin())
    print(
        f"teachers ready ({time.perf_counter() - start:.0f} s); thinnest public class: {ACTIONS[thin]} "
        f"({(truth == thin).mean():.1%} of {len(truth)} public records)",
        flush=True,
    )

    results: dict[tuple[int, str], list[tuple[float, int]]] = {}
    for queries in args.queries:
        for seed in range(args.seeds):
            for selection in ("order", "uncertainty"):
                name = f"{selection}-{queries}-{seed}"
                job = DistillJob(
                    teachers=out / "teachers",
                    public=data["public"],
                    workspace=out / "ws" / name,
                    out=out / "rel" / name,
                    test=data["test"],
                    sigma=args.sigma,
                    budget=BudgetConfig(max_epsilon=1e4, max_queries=queries),
                    noise_seed=seed,
                    student=StudentConfig(steps=args.student_steps, seed=seed),
                    query_selection=selection,
                    selection_batch=args.selection_batch,
                    selection_seed=seed,
                )
                result = label_and_distill(job)
                ids = result.outcome.answered_ids
                rare = int((truth[ids] == thin).sum())
                results.setdefault((queries, selection), []).append(
                    (result.student_accuracy, rare, result.label_accuracy)
                )
                print(
                    f"  {name}: student {result.student_accuracy:.4f}, labels "
                    f"{result.label_accuracy:.3f} correct, {ACTIONS[thin]} labels {rare}",
                    flush=True,
                )

    summary = []
    for queries in args.queries:
        parts = []
        for selection in ("order", "uncertainty"):
            runs = results[(queries, selection)]
            accuracy, rare, labels = (np.mean([run[i] for run in runs]) for i in range(3))
            parts.append(
                f"{selection} {accuracy:.4f} ({rare:.0f} {ACTIONS[thin]}, labels {labels:.3f})"
            )
        summary.append(f"{queries} queries: " + " vs ".join(parts))
    command = "python scripts/bench_selection.py " + " ".join(sys.argv[1:])
    print(
        f"selection bench (adas, {args.teachers} teachers, sigma {args.sigma:g}, student accuracy "
        f"mean of {args.seeds} seeds): "
        + "; ".join(summary)
        + f" [{time.perf_counter() - start:.0f} s; {command.strip()}]"
    )


if __name__ == "__main__":
    main()
