"""Individuals as voters: Confident-GNMax over the k nearest individuals of a fresh Poisson sample.

* :mod:`pate.voters.sampling`    Poisson samples of individuals, exact for the rate, from a NoiseSource
* :mod:`pate.voters.features`    feature maps fitted on public data only
* :mod:`pate.voters.store`       the private voter store (``pate-voters`` HDF5), one individual per group
* :mod:`pate.voters.search`      exact nearest-individual search in chunks with JAX
* :mod:`pate.voters.aggregator`  the screen and the answer, each on its own sample
* :mod:`pate.voters.accounting`  the Poisson-subsampled RDP each query charges

The design and the proofs are in docs/voters.md. JAX is imported only by the search, on first use.
"""

from __future__ import annotations

from pate.voters.accounting import (
    rdp_voters_answer,
    rdp_voters_answer_numerical,
    rdp_voters_query,
    rdp_voters_query_numerical,
    rdp_voters_run,
    rdp_voters_screen,
    rdp_voters_screen_numerical,
)
from pate.voters.aggregator import VotersConfig, VotersResult, voters_aggregate
from pate.voters.features import PublicPCA, Quantize, Standardize
from pate.voters.sampling import poisson_sample, rate_threshold
from pate.voters.search import ChunkPlan, VoterSearch, knn_histograms, plan_chunks
from pate.voters.store import (
    VOTERS_FORMAT,
    VoterStore,
    build_voter_store,
    read_voter_store,
    verify_groups,
    write_voter_store,
)

__all__ = [
    "VOTERS_FORMAT",
    "ChunkPlan",
    "PublicPCA",
    "Quantize",
    "Standardize",
    "VoterSearch",
    "VoterStore",
    "VotersConfig",
    "VotersResult",
    "build_voter_store",
    "knn_histograms",
    "plan_chunks",
    "poisson_sample",
    "rate_threshold",
    "rdp_voters_answer",
    "rdp_voters_answer_numerical",
    "rdp_voters_query",
    "rdp_voters_query_numerical",
    "rdp_voters_run",
    "rdp_voters_screen",
    "rdp_voters_screen_numerical",
    "read_voter_store",
    "verify_groups",
    "voters_aggregate",
    "write_voter_store",
]
