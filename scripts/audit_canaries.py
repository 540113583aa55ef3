"""The end-to-end canary audit (``pate audit canaries``) once, in the demo's setting.

The adas fleet of ``make demo`` (2,500 cars, 250 teachers, GNMax sigma 60, epsilon 3 at delta 1e-5),
with the teachers trained for fewer epochs (10 instead of 40) so that the whole run stays within a few
minutes on two CPU cores. 200 canary cars (4 records each) are planted on 200 public queries, each
included with probability 1/2; the pipeline runs once; the release alone is used to guess who was
included. Prints the lower bound, the release's claimed epsilon, their ratio and the command.
Expect a lower bound of about 0: one car moves one vote of 250 under noise of 60 votes.

``--broken every-shard`` runs the same audit on a deliberately broken partition (the real keyed-hash
partition, then every canary's records copied into every shard under one fresh id per shard, so that
the shards file still verifies): every teacher learns every included canary, and the release says who
was included. It runs in-process (the broken stage is a hook of the library call, not a command).
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

PIPELINE = """\
[dataset]
name = "adas"
out = "data"
vehicles = {vehicles}

[partition]
input = "data/private.h5"
out = "run/shards.h5"
num_teachers = {teachers}

[train_teachers]
shards = "run/shards.h5"
out = "run/teachers"
epochs = {epochs}

[label_and_distill]
teachers = "run/teachers"
public = "data/public.h5"
workspace = "run/workspace"
out = "run/release"
aggregator = "gnmax"
sigma = {sigma}
max_epsilon = {max_epsilon}
delta = {delta}
"""


def every_shard_partition(original_private: Path):
    """A broken partition stage: the real one, then the records of every individual that is not in
    ``original_private`` (the canaries) copied into every shard, one fresh id per copy."""
    import h5py
    import numpy as np

    from pate.io import read_dataset
    from pate.partitioning import partition

    known = read_dataset(original_private).individual_id

    def broken(job):
        summary = partition(job)
        with h5py.File(job.out, "r+") as handle:
            offsets = handle["shard_offsets"][()]
            features, labels = handle["features"][()], handle["labels"][()]
            ids = handle["individual_id"][()]
            teachers = len(offsets) - 1
            shard = np.repeat(np.arange(teachers), np.diff(offsets))
            canary = ~np.isin(ids, known)
            owners = np.unique(ids[canary], return_inverse=True)[1]
            base = int(ids.max()) + 1
            parts = [(features[~canary], labels[~canary], ids[~canary], shard[~canary])]
            for t in range(teachers):
                count = int(canary.sum())
                copy_ids = base + owners * teachers + t
                parts.append((features[canary], labels[canary], copy_ids, np.full(count, t)))
            features, labels, ids, shard = (np.concatenate(p) for p in zip(*parts, strict=True))
            order = np.argsort(shard, kind="stable")
            sizes = np.bincount(shard, minlength=teachers)
            individuals, first = np.unique(ids, return_index=True)
            new = {
                "features": features[order],
                "labels": labels[order],
                "individual_id": ids[order],
                "shard_sizes": sizes,
                "shard_offsets": np.concatenate([[0], np.cumsum(sizes)]),
                "assignment/individual": individuals,
                "assignment/shard": shard[first],
            }
            for name, value in new.items():
                del handle[name]
                handle.create_dataset(name, data=value)
        return summary

    return broken


def run_broken(args, pipeline: Path, out: Path) -> tuple[dict, int]:
    sys.path.insert(0, str(ROOT))
    from pate.audit_canaries import CanaryConfig, audit_canaries
    from pate.pipeline import load_pipeline, run_stage

    jobs = load_pipeline(pipeline)
    run_stage("dataset", jobs.dataset)
    result = audit_canaries(
        CanaryConfig(canaries=args.canaries, records=args.records, seed=args.seed),
        partition=jobs.partition,
        teachers=jobs.train_teachers,
        distill=jobs.label_and_distill,
        out=out / "audit",
        stages={"partition": every_shard_partition(jobs.partition.input)},
    )
    return result.to_dict(), 0 if result.passed else 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="audit-canaries-run", help="folder for everything")
    parser.add_argument("--vehicles", type=int, default=2500)
    parser.add_argument("--teachers", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--sigma", type=float, default=60.0)
    parser.add_argument("--max-epsilon", type=float, default=3.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--canaries", type=int, default=200)
    parser.add_argument("--records", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broken", choices=["every-shard"], default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    out = (ROOT / args.out) if not Path(args.out).is_absolute() else Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pipeline = out / "pipeline.toml"
    pipeline.write_text(
        PIPELINE.format(
            vehicles=args.vehicles,
            teachers=args.teachers,
            epochs=args.epochs,
            sigma=args.sigma,
            max_epsilon=args.max_epsilon,
            delta=args.delta,
        )
    )
    command = [
        "audit", "canaries", str(pipeline), "--out", str(out / "audit"),
        "--canaries", str(args.canaries), "--records", str(args.records), "--seed", str(args.seed),
    ]  # fmt: skip
    if args.broken:
        print(f"(broken: {args.broken}) the library call of: pate " + " ".join(command), flush=True)
        result, status = run_broken(args, pipeline, out)
    else:
        print("$ pate " + " ".join(command), flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *command, "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode not in (0, 5):
            sys.stderr.write(done.stderr)
            raise SystemExit(done.returncode)
        result, status = json.loads(done.stdout), done.returncode
    rows = [
        ("verdict", result["verdict"]),
        ("epsilon lower bound (95%)", f"{result['epsilon_lower']:.4f}"),
        (
            "claimed epsilon (privacy.json)",
            f"{result['claimed_epsilon']:.4f} at {result['delta']:g}",
        ),
        ("ratio lower / claimed", f"{result['ratio']:.4f}"),
        ("ceiling (every guess right)", f"{result['ceiling']:.4f}"),
        ("guesses right", f"{result['correct']} of {result['guesses']}"),
        (
            "canary queries",
            f"{result['canary_queries_answered']} answered, {result['canary_labels_released']} "
            f"released with the canary label ({result['included']} of {result['canaries']} "
            "canaries included)",
        ),
        ("queries answered", str(result["queries_answered"])),
        ("audit folder (private)", result["audit_folder"]),
        ("wall time", f"{time.perf_counter() - start:.0f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    raise SystemExit(status)


if __name__ == "__main__":
    main()
