"""`make demo`: the whole PATE pipeline on the built-in adas fleet, then one summary.

Runs the four stages through the `pate` command line (so every step is a command you can copy), trains
the non-private baseline for comparison, and prints: baseline accuracy, mean teacher accuracy, student
accuracy, queries answered, epsilon at delta, and where the release is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pate(*args: str) -> dict:
    command = [sys.executable, "-m", "cli.main", *args, "--json"]
    print("$ pate " + " ".join(args), flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(done.returncode)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo-run", help="folder for everything the demo writes")
    parser.add_argument("--teachers", type=int, default=250)
    parser.add_argument("--vehicles", type=int, default=2500)
    parser.add_argument("--sigma", type=float, default=60.0)
    parser.add_argument("--max-epsilon", type=float, default=3.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    args = parser.parse_args()

    start = time.perf_counter()
    out = Path(args.out)
    if (ROOT / out).exists():
        shutil.rmtree(ROOT / out)
    (ROOT / out).mkdir(parents=True)
    data = out / "data"
    pate("dataset", "adas", "--out", str(data), "--vehicles", str(args.vehicles))
    partition = pate(
        "partition",
        str(data / "private.h5"),
        "--teachers",
        str(args.teachers),
        "--out",
        str(out / "shards.h5"),
    )
    teachers = pate(
        "train-teachers",
        str(out / "shards.h5"),
        "--out",
        str(out / "teachers"),
        "--test",
        str(data / "test.h5"),
    )
    distill = pate(
        "label-and-distill",
        str(out / "teachers"),
        "--public",
        str(data / "public.h5"),
        "--workspace",
        str(out / "workspace"),
        "--out",
        str(out / "release"),
        "--aggregator",
        "gnmax",
        "--sigma",
        str(args.sigma),
        "--max-epsilon",
        str(args.max_epsilon),
        "--delta",
        str(args.delta),
        "--test",
        str(data / "test.h5"),
    )
    inspect = pate("inspect", str(out / "release"))

    print("$ (baseline) one non-private model on all private records", flush=True)
    sys.path.insert(0, str(ROOT))
    from pate.io import read_dataset
    from pate.models import ModelConfig
    from pate.student import StudentConfig, fit_model

    private = read_dataset(ROOT / data / "private.h5", require_labels=True)
    test = read_dataset(ROOT / data / "test.h5", require_labels=True)
    model = ModelConfig(
        kind="mlp", input_shape=private.feature_shape, num_classes=private.num_classes, hidden=(64,)
    )
    baseline = fit_model(private.features, private.labels, model, StudentConfig(steps=6000))
    baseline_accuracy = baseline.accuracy(test.features, test.labels)

    student = distill["student_test_accuracy"]
    rows = [
        ("non-private baseline accuracy", f"{baseline_accuracy:.4f}"),
        (
            "teachers (individuals per shard)",
            f"{partition['shards']} ({partition['individuals_per_shard_min']}-"
            f"{partition['individuals_per_shard_max']}), shard size ratio "
            f"{partition['shard_size_ratio']:.3f}",
        ),
        ("mean teacher accuracy", f"{teachers['accuracy_mean']:.4f}"),
        ("student accuracy", f"{student:.4f} ({student / baseline_accuracy:.1%} of baseline)"),
        ("queries answered", f"{inspect['queries_answered']} of {inspect['queries_seen']} seen"),
        (
            "epsilon at delta",
            f"{inspect['epsilon']:.3f} at {inspect['delta']:g} "
            f"({inspect['mechanism']}, data-independent)",
        ),
        ("release", str(out / "release")),
        ("wall time", f"{time.perf_counter() - start:.0f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print("\nPATE demo summary (adas fleet, one car = one individual)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
