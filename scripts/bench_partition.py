"""Shard balance of the two partition methods on the default adas fleet (quoted in BENCHMARKS.md).

    python scripts/bench_partition.py

For each teacher count: records per shard (min, median, max) and the max/min ratio, for the keyed
hash (the default: adding or removing an individual moves nobody else) and for LPT (record-balanced,
but not add/remove-stable). Seeds 0-4 of the hash; LPT is one assignment.
"""

from __future__ import annotations

import tempfile

import numpy as np

from pate.data.adas import AdasConfig, build_adas
from pate.io import read_dataset
from pate.partitioning import assign_shards


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        ids = read_dataset(build_adas(folder, config=AdasConfig(seed=0))["private"]).individual_id
    print(f"{len(ids)} records of {len(np.unique(ids))} vehicles")
    print("teachers  method      min  median   max   max/min")
    for teachers in (50, 100, 250):
        rows = [("lpt", assign_shards(ids, teachers, method="lpt").shard_sizes)]
        for seed in range(5):
            try:
                sizes = assign_shards(ids, teachers, seed=seed, method="hash").shard_sizes
            except Exception as exc:  # noqa: BLE001 (an empty shard is reported, not fatal here)
                print(f"{teachers:8d}  hash s={seed}  {exc}")
                continue
            rows.append((f"hash s={seed}", sizes))
        for name, sizes in rows:
            print(
                f"{teachers:8d}  {name:9s} {sizes.min():5d} {np.median(sizes):7.1f} {sizes.max():5d}"
                f"  {sizes.max() / sizes.min():7.2f}"
            )


if __name__ == "__main__":
    main()
