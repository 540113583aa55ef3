"""A user's own table end to end, with command-line options only: the wage panel of Vella and Verbeek
(1998; 545 men observed 1980-1987, one row per man and year), as shipped in the PyPI package
``linearmodels==7.1`` (``pip install --no-deps``; only its CSV file is read). The target is union
membership; each man (``nr``) is one individual. Quoted in BENCHMARKS.md.

    python scripts/real_panel.py --out panel-run [--teachers 20] [--sigma 8] [--max-epsilon 3]

Prints the student's test accuracy next to the test set's majority-class rate, and the tool's
warnings.
"""

from __future__ import annotations

import argparse
import bz2
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path


def pate(*args) -> dict:
    command = [sys.executable, "-m", "cli.main", *map(str, args), "--json"]
    print("$ pate", " ".join(map(str, args)), file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    for line in done.stderr.splitlines():
        if line.startswith("warning"):
            print(line, file=sys.stderr)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("panel-run"))
    parser.add_argument("--teachers", type=int, default=20)
    parser.add_argument("--sigma", type=float, default=8.0)
    parser.add_argument("--max-epsilon", type=float, default=3.0)
    args = parser.parse_args()
    spec = importlib.util.find_spec("linearmodels")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("linearmodels is not installed: pip install --no-deps linearmodels==7.1")
    source = Path(spec.submodule_search_locations[0]) / "datasets/wage_panel/wage_panel.csv.bz2"
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    raw = args.out / "wage_panel.csv"
    raw.write_bytes(bz2.decompress(source.read_bytes()))
    data = args.out / "data"
    pate("dataset", "csv", "--input", raw, "--label-column", "union", "--individual-column", "nr",
         "--categorical-columns", "occupation", "--public-fraction", "0.2", "--test-fraction",
         "0.2", "--out", data)  # fmt: skip
    parts = pate("partition", data / "private.h5", "--teachers", args.teachers,
                 "--out", args.out / "shards.h5")  # fmt: skip
    teachers = pate("train-teachers", args.out / "shards.h5", "--out", args.out / "teachers",
                    "--test", data / "test.h5", "--hidden", "32")  # fmt: skip
    release = pate("label-and-distill", args.out / "teachers", "--public", data / "public.h5",
                   "--workspace", args.out / "workspace", "--out", args.out / "release",
                   "--test", data / "test.h5", "--sigma", args.sigma, "--max-epsilon",
                   args.max_epsilon)  # fmt: skip
    print(f"individuals per teacher     {parts['individuals_per_shard_min']}-"
          f"{parts['individuals_per_shard_max']}, records {parts['shard_size_min']}-"
          f"{parts['shard_size_max']}")  # fmt: skip
    print(f"teachers' mean accuracy     {teachers['accuracy_mean']:.4f} "
          f"(majority rate {teachers['test_majority_rate']:.4f})")  # fmt: skip
    print(f"answers                     {release['queries_answered']} of {release['queries_seen']}")
    print(f"epsilon                     {release['epsilon']:.3f} at {release['delta']:g}")
    print(f"student test accuracy       {release['student_test_accuracy']:.4f} "
          f"(majority rate {release['test_majority_rate']:.4f})")  # fmt: skip
    for warning in teachers["warnings"] + release["warnings"]:
        print(f"warning: {warning}")


if __name__ == "__main__":
    main()
