"""Student accuracy against the *publishable* epsilon, and the answers each budget mode buys.

    python scripts/publishable_epsilon.py --mnist runs/mnist --adult runs/adult \
        [--epsilons 0.5,1,2] [--sigma 60] [--figure docs/publishable-epsilon.png] [--out rows.json]

``--mnist`` / ``--adult`` are folders holding ``data/`` (``pate dataset``) and ``teachers/``
(``pate train-teachers``), as ``scripts/reproduce_pate2018.py`` leaves them. For each dataset and each
epsilon the script runs ``pate label-and-distill`` with GNMax (``--sigma``, default 60), the default
worst-case budget stop at that epsilon (delta 1e-5) and the student choosing the queries
(``--query-selection uncertainty``, rounds of 32 queries for MNIST and 22 for Adult), unless that run's JSON is already there
(``<dataset>/pe-<epsilon>.json``), and collects: the publishable epsilon, the answers, the student's test
accuracy, and the data-dependent epsilon of the same answers (private: shown only to measure the gap).

The figure has two panels: left, the answers that the worst-case stop and the propose-test-release
test (:mod:`pate.accounting.tested`, on votes of 90% agreement) buy at each publishable epsilon
(GNMax at ``--sigma``, 250 teachers, 10 classes); right, the students' accuracy against the publishable
epsilon, with the issue's bars (MNIST 98.5%, Adult 84%) and the same runs at their (private)
data-dependent epsilon.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BARS = {"mnist": 0.985, "adult": 0.84}


def run(folder: Path, epsilon: float, sigma: float, selection_batch: int | None) -> dict:
    out = folder / f"pe-{epsilon:g}.json"
    if out.exists():
        return json.loads(out.read_text())
    command = [
        sys.executable, "-m", "cli.main", "label-and-distill", str(folder / "teachers"),
        "--public", str(folder / "data" / "public.h5"), "--test", str(folder / "data" / "test.h5"),
        "--workspace", str(folder / f"pe-{epsilon:g}-ws"), "--out", str(folder / f"pe-{epsilon:g}-rel"),
        "--aggregator", "gnmax", "--sigma", str(sigma), "--max-epsilon", str(epsilon), "--json",
    ]  # fmt: skip
    if selection_batch:
        command += ["--query-selection", "uncertainty", "--selection-batch", str(selection_batch)]
    print("$", " ".join(command[2:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"label-and-distill failed: {done.stderr.strip()}")
    row = json.loads(done.stdout)
    row["wall_seconds"] = time.perf_counter() - start
    out.write_text(json.dumps(row, indent=2) + "\n")
    return row


def answers_curve(sigma: float, epsilons: list[float]) -> list[dict]:
    from pate.accounting.tested import PtrMechanism, largest_batch
    from scripts.ptr_vs_worst_case import worst_case_queries

    mechanism = PtrMechanism(250, 10, sigma)
    rows = []
    for epsilon in epsilons:
        tested, _ = largest_batch(mechanism, epsilon=epsilon, delta=1e-5, agreement=0.9)
        rows.append(
            {
                "epsilon": epsilon,
                "worst_case": worst_case_queries(mechanism, epsilon, 1e-5),
                "tested": tested,
            }
        )
    return rows


def figure(path: Path, runs: dict[str, list[dict]], curve: list[dict], sigma: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(runs), figsize=(5.2 * (1 + len(runs)), 4.2))
    left = axes[0] if len(runs) else axes
    eps = [r["epsilon"] for r in curve]
    left.plot(eps, [r["worst_case"] for r in curve], "o-", label="worst-case stop (default)")
    left.plot(eps, [r["tested"] for r in curve], "s--", label="propose-test-release (tested)")
    left.set_xlabel("publishable ε (δ = 1e-5)")
    left.set_ylabel("answers")
    left.set_title(f"GNMax σ = {sigma:g}, 250 teachers, 10 classes, 90% agreement", fontsize=9)
    left.legend()
    left.grid(alpha=0.3)
    for (name, rows), axis in zip(runs.items(), axes[1:], strict=True):
        rows = sorted(rows, key=lambda r: r["epsilon"])
        accuracy = [r["student_test_accuracy"] for r in rows]
        axis.plot(
            [r["epsilon"] for r in rows], accuracy, "o-", label="publishable ε (worst-case stop)"
        )
        axis.plot(
            [r["epsilon_data_dependent_private"] for r in rows],
            accuracy,
            "x:",
            label="same runs at their data-dependent ε (private)",
        )
        axis.axhline(
            BARS[name], color="grey", lw=0.8, ls="--", label=f"issue 15's bar ({BARS[name]:.1%})"
        )
        axis.set_xlabel("ε (δ = 1e-5)")
        axis.set_ylabel("student test accuracy")
        axis.set_title(f"{name}: GNMax σ = {sigma:g}, the student choosing the queries", fontsize=9)
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path)
    parser.add_argument("--adult", type=Path)
    parser.add_argument("--epsilons", default="0.5,1,2")
    parser.add_argument("--sigma", type=float, default=60.0)
    parser.add_argument(
        "--selection-batch",
        default="mnist=32,adult=22",
        help="uncertainty selection with these round sizes per dataset; 'none' for public order",
    )
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "publishable-epsilon.png")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    epsilons = [float(x) for x in args.epsilons.split(",")]
    batches = (
        {}
        if args.selection_batch == "none"
        else {k: int(v) for k, v in (kv.split("=") for kv in args.selection_batch.split(","))}
    )
    runs: dict[str, list[dict]] = {}
    for name in ("mnist", "adult"):
        folder = getattr(args, name)
        if folder is not None:
            batch = batches.get(name)
            runs[name] = [run(folder, e, args.sigma, batch) | {"epsilon": e} for e in epsilons]
            for row in runs[name]:
                print(
                    f"{name} eps {row['epsilon']:g}: {row['queries_answered']} answers, student "
                    f"{row['student_test_accuracy']:.4f} (data-dependent eps "
                    f"{row['epsilon_data_dependent_private']:.3f}, private)",
                    flush=True,
                )
    curve = answers_curve(args.sigma, sorted({0.5, 1.0, 1.5, 2.0, 3.0, *epsilons}))
    for row in curve:
        print(
            f"answers at eps {row['epsilon']:g}: worst-case {row['worst_case']}, tested {row['tested']}"
        )
    figure(args.figure, runs, curve, args.sigma)
    print(f"figure written to {args.figure}")
    result = {"runs": runs, "answers": curve, "sigma": args.sigma}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
