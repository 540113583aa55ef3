"""Peak memory and time of `pate dataset csv` and `pate dataset parquet` on an N x 10 table.

Makes a table with an id column (5 records per person on average), a label, six numeric columns and
two text columns, writes it as CSV and as Parquet, then runs each import in a subprocess and reports
the child's peak RSS (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, one child per run), its
wall time and its CPU time (user + system, steadier than wall time on a shared machine). Usage::

    .venv/bin/python scripts/bench_import.py --rows 2000000 --repeat 3 --work /tmp/bench-import
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_table(rows: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    csv_path, parquet_path = folder / f"table-{rows}.csv", folder / f"table-{rows}.parquet"
    if csv_path.exists() and parquet_path.exists():
        return csv_path, parquet_path
    rng = np.random.default_rng(seed)
    block = 1_000_000
    writer = None
    with open(csv_path, "wb") as handle:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            person = rng.integers(0, max(1, rows // 5), n)
            x = rng.normal(size=(n, 6)).round(4)
            region = np.array(["north", "south", "east", "west"])[rng.integers(0, 4, n)]
            plan = np.array(["basic", "plus", "pro"])[rng.integers(0, 3, n)]
            label = ((x[:, 0] + x[:, 1] > 0) ^ (region == "east")).astype(np.int64)
            table = pa.table(
                {
                    "person": person,
                    **{f"x{j}": x[:, j] for j in range(6)},
                    "region": region,
                    "plan": plan,
                    "label": label,
                }
            )
            buffer = pa.BufferOutputStream()
            pacsv.write_csv(
                table, buffer, write_options=pacsv.WriteOptions(include_header=start == 0)
            )
            handle.write(buffer.getvalue().to_pybytes())
            if writer is None:
                writer = pq.ParquetWriter(parquet_path, table.schema)
            writer.write_table(table)
    writer.close()
    return csv_path, parquet_path


CHILD = """
import resource, sys, time
start = time.perf_counter()
from cli.main import main
sys.argv = ["pate"] + sys.argv[1:]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("WALL", time.perf_counter() - start, file=sys.stderr)
sys.exit(code)
"""


def run_import(kind: str, path: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    args = [sys.executable, "-c", CHILD, "dataset", kind, "--input", str(path)]
    args += ["--label-column", "label", "--individual-column", "person", "--out", str(out)]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu_before = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime - cpu_before
    if done.returncode != 0:
        raise SystemExit(f"{kind} import failed: {done.stderr[-2000:]}")
    if peak <= before:  # ru_maxrss of children is the maximum over all children so far
        print(f"warning: peak RSS not above an earlier child's ({before} KiB)", file=sys.stderr)
    return {
        "kind": kind,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),  # user + system: less sensitive than wall time to a busy machine
        "peak_rss_mb": round(peak / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-import"))
    parser.add_argument("--kinds", default="csv,parquet")
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    csv_path, parquet_path = make_table(options.rows, options.work)
    sizes = {"csv": csv_path.stat().st_size, "parquet": parquet_path.stat().st_size}
    paths = {"csv": csv_path, "parquet": parquet_path}
    results = []
    for kind in options.kinds.split(","):
        for _ in range(options.repeat):
            # One child per measurement: a fresh interpreter, so ru_maxrss is this run's.
            child = [
                sys.executable,
                __file__,
                "--measure",
                kind,
                str(paths[kind]),
                str(options.work),
            ]
            done = subprocess.run(child, capture_output=True, text=True, env=os.environ)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            result = json.loads(done.stdout)
            result.update(rows=options.rows, file_mb=round(sizes[kind] / 1e6, 1))
            results.append(result)
            print(json.dumps(result), flush=True)
    for kind in options.kinds.split(","):
        mine = [r for r in results if r["kind"] == kind]
        print(
            f"{kind}: {options.rows} rows ({mine[0]['file_mb']} MB): median peak RSS "
            f"{np.median([r['peak_rss_mb'] for r in mine]):.0f} MB, median wall "
            f"{np.median([r['wall_s'] for r in mine]):.1f} s, median CPU "
            f"{np.median([r['cpu_s'] for r in mine]):.1f} s over {len(mine)} runs"
        )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        kind, path, work = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        print(json.dumps(run_import(kind, path, work / f"out-{kind}")))
    else:
        main()
