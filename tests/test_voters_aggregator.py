"""The individual-voter aggregator: screen and answer, each on its own fresh Poisson sample."""

from __future__ import annotations

import numpy as np
import pytest

from pate.errors import PateError
from pate.noise import SeededNoise
from pate.voters import aggregator as aggregator_module
from pate.voters.aggregator import VotersConfig, voters_aggregate
from pate.voters.search import VoterSearch
from pate.voters.store import VoterStore


def _store() -> VoterStore:
    """40 individuals of one record each on a line: label 0 left of 0, label 1 right of it."""
    x = np.linspace(-1.0, 1.0, 40, dtype=np.float32)[:, None]
    return VoterStore(
        features=x,
        labels=(x[:, 0] > 0).astype(np.int64),
        individual_id=np.arange(40),
        offsets=np.arange(41),
        num_classes=2,
    )


def test_clear_queries_are_answered_with_their_plurality():
    search = VoterSearch(_store(), query_chunk=3)
    queries = np.array([[-0.9], [0.9], [-0.8], [0.8], [-0.95]], dtype=np.float32)
    config = VotersConfig(rate=1.0, k=10, threshold=6, sigma1=0.5, sigma2=0.5)
    result = voters_aggregate(search, queries, config, SeededNoise(1))
    assert result.answered.all()
    np.testing.assert_array_equal(result.labels, [0, 1, 0, 1, 0])
    strict = VotersConfig(rate=1.0, k=10, threshold=50, sigma1=0.5, sigma2=0.5)
    refused = voters_aggregate(search, queries, strict, SeededNoise(1))
    assert not refused.answered.any() and (refused.labels == -1).all()


def test_the_answer_uses_its_own_sample(monkeypatch):
    """The screen's sample holds everyone; the answer's holds only label-1 individuals: the answer is
    1 for a query deep in label-0 territory, so it was computed on the second sample, not the first."""
    calls = []

    def scripted(noise, num_individuals, rate, shape=()):
        calls.append(shape)
        mask = np.ones((*shape, num_individuals), dtype=bool)
        if len(calls) % 2 == 0:
            mask[..., :20] = False
        return mask

    monkeypatch.setattr(aggregator_module, "poisson_sample", scripted)
    search = VoterSearch(_store(), query_chunk=2)
    queries = np.full((3, 1), -0.9, dtype=np.float32)
    config = VotersConfig(rate=0.5, k=5, threshold=4, sigma1=0.5, sigma2=0.5)
    result = voters_aggregate(search, queries, config, SeededNoise(0))
    assert calls == [(2,), (2,), (1,), (1,)]  # two samples per chunk of queries
    assert result.answered.all() and (result.labels == 1).all()


def test_samples_are_fresh_per_query_and_answers_vary_with_them():
    """With q = 0.5 and k = 1 on the query 0, the nearest sampled individual changes from query to
    query. Individuals come in pairs at +-d (labels 1 and 0) and a tie goes to the lower index (label
    0), so label 1 wins iff the nearest pair with someone sampled has only its right one: 1/3."""
    search = VoterSearch(_store())
    queries = np.zeros((400, 1), dtype=np.float32)
    config = VotersConfig(rate=0.5, k=1, threshold=0, sigma1=0.5, sigma2=0.01)
    result = voters_aggregate(search, queries, config, SeededNoise(7))
    assert result.answered.mean() > 0.9
    share = (result.labels[result.answered] == 1).mean()
    assert abs(share - 1 / 3) < 0.08  # 3.4 sd at ~390 answers


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"rate": 0.0}, "`rate`"),
        ({"k": 0}, "`k`"),
        ({"k": 2.5}, "`k`"),
        ({"threshold": float("nan")}, "`threshold`"),
        ({"sigma1": -1.0}, "`sigma1`"),
        ({"sigma2": "x"}, "`sigma2`"),
    ],
)
def test_bad_configuration_names_its_field(kwargs, field):
    values = {"rate": 0.1, "k": 5, "threshold": 3.0, "sigma1": 1.0, "sigma2": 1.0, **kwargs}
    with pytest.raises(PateError, match=field):
        VotersConfig(**values)
