"""Which student for these labels: each student method trained on the same released labels.

    python scripts/compare_students.py --release RUN/release --data DATA [--methods supervised,self-train,vat]

Reads the release's ``labels.h5`` (the answered public rows and their noisy labels), the public pool
``DATA/public.h5`` and the labelled ``DATA/test.h5``, trains one student per method with the pipeline's
defaults for the data's shape (``pate.distill.student_model_config``, ``StudentConfig``) and prints its
test accuracy and training time. Like the pipeline's student, each sees the public features and the
released labels only, so comparing them spends no privacy. Options ``--model`` and ``--hidden`` pick the
architecture, ``--steps`` the step budget, ``--balance`` VAT's class-balance weight.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", type=Path, required=True, help="folder with labels.h5")
    parser.add_argument("--data", type=Path, required=True, help="folder with public.h5, test.h5")
    parser.add_argument("--methods", default="supervised,self-train,vat")
    parser.add_argument("--model", default="auto", help="student architecture (auto, mlp, cnn...)")
    parser.add_argument("--hidden", default=None, help="MLP widths, e.g. 256,256")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps")
    parser.add_argument(
        "--balance",
        type=float,
        default=None,
        help="vat's class-balance weight (default: the config's)",
    )
    args = parser.parse_args(argv)
    from pate.errors import PateError

    try:
        return compare(args)
    except PateError as error:
        raise SystemExit(f"error: {error}") from None


def compare(args: argparse.Namespace) -> list[dict]:
    """Train and evaluate one student per method (see the module docstring)."""
    from pate.distill import read_labels, student_model_config
    from pate.io import read_dataset
    from pate.student import StudentConfig, fit_student

    public = read_dataset(args.data / "public.h5")
    test = read_dataset(args.data / "test.h5", require_labels=True)
    query_ids, labels = read_labels(args.release / "labels.h5")
    hidden = tuple(int(w) for w in args.hidden.split(",")) if args.hidden else None
    model = student_model_config(args.model, public.feature_shape, test.num_classes, hidden=hidden)
    options = {"steps": args.steps} if args.steps else {}
    if args.balance is not None:
        options["balance_weight"] = args.balance
    rows = []
    print(f"{len(labels)} released labels, {len(public.features)} public rows, model {model.kind}")
    for method in args.methods.split(","):
        start = time.perf_counter()
        student = fit_student(
            public.features, query_ids, labels, model, StudentConfig(method=method, **options)
        )
        accuracy = student.accuracy(test.features, test.labels)
        seconds = time.perf_counter() - start
        rows.append({"method": method, "test_accuracy": accuracy, "seconds": seconds})
        print(f"  {method:<12} test accuracy {accuracy:.4f}  ({seconds:.0f} s)", flush=True)
    return rows


if __name__ == "__main__":
    main()
