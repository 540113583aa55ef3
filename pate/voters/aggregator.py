"""The individual-voter aggregator: Confident-GNMax on the k nearest of a Poisson sample of individuals.

Per query ``x`` (design rule 9, proofs in docs/voters.md):

1. screen: draw a fresh Poisson sample ``S1`` of individuals (rate ``q``), take the histogram ``h`` of
   the votes of its ``k`` nearest individuals (:mod:`pate.voters.search`), and pass iff
   ``max_j h_j + Z1 >= T`` with ``Z1 ~ N_Z(0, sigma1^2)`` (exactly as Confident-GNMax decides it,
   :func:`pate.aggregate.threshold_offsets`);
2. answer, only if the screen passed: draw another fresh, independent Poisson sample ``S2``, its
   histogram ``h'``, and release ``argmax_j (h'_j + Z_j)`` with ``Z_j ~ N_Z(0, sigma2^2)``, ties to the
   smallest class (:func:`pate.aggregate.gnmax`).

Nothing here charges a budget or writes a file; the caller charges
:func:`pate.voters.accounting.rdp_voters_query` for every query (``answered`` from the result) before it
releases the labels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from pate.accounting.subsampled import check_rate
from pate.aggregate import gnmax, threshold_offsets
from pate.errors import PateError
from pate.noise import NoiseSource
from pate.voters.accounting import check_positive
from pate.voters.sampling import poisson_sample
from pate.voters.search import VoterSearch

__all__ = ["VotersConfig", "VotersResult", "voters_aggregate"]


@dataclass(frozen=True)
class VotersConfig:
    """The aggregator's parameters: sampling ``rate`` q, ``k`` nearest voters, screening
    ``threshold`` T with noise ``sigma1``, answer noise ``sigma2``."""

    rate: float
    k: int
    threshold: float
    sigma1: float
    sigma2: float

    def __post_init__(self) -> None:
        check_rate(self.rate)
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise PateError(f"`k` is {self.k!r}, expected a positive integer")
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, (int, float, np.integer, np.floating))
            or not math.isfinite(self.threshold)
        ):
            raise PateError(f"`threshold` is {self.threshold!r}, expected a finite number")
        check_positive("sigma1", self.sigma1)
        check_positive("sigma2", self.sigma2)

    def to_dict(self) -> dict:
        return {"mechanism": "voters-confident-gnmax", **asdict(self)}


@dataclass(frozen=True)
class VotersResult:
    """``labels`` (Q,) int64, ``-1`` where not answered; ``answered`` (Q,) bool: the queries that pay
    the answer step (every query pays the screen)."""

    labels: np.ndarray
    answered: np.ndarray


def voters_aggregate(
    search: VoterSearch, queries: np.ndarray, config: VotersConfig, noise: NoiseSource
) -> VotersResult:
    """Screen and answer every query, each step on its own fresh Poisson sample (module docstring)."""
    store = search.store
    labels = np.full(len(queries), -1, dtype=np.int64)
    answered = np.zeros(len(queries), dtype=bool)
    for start, stop, dist, vote in search.minima(queries):
        rows = stop - start
        screen_sample = poisson_sample(noise, store.num_individuals, config.rate, (rows,))
        screen_votes = search.histograms(dist, vote, screen_sample, config.k)
        offsets = threshold_offsets(screen_votes, config.threshold)
        passed = noise.discrete_gaussian(config.sigma1, rows) >= offsets
        answer_sample = poisson_sample(noise, store.num_individuals, config.rate, (rows,))
        answer_votes = search.histograms(dist, vote, answer_sample, config.k)
        chosen = np.flatnonzero(passed)
        if chosen.size:
            labels[start + chosen] = gnmax(answer_votes[chosen], sigma=config.sigma2, noise=noise)
        answered[start:stop] = passed
    return VotersResult(labels=labels, answered=answered)
