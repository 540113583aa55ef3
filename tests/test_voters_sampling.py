"""The Poisson sample of individuals: exact thresholds, binomial size, independence, fresh per call."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from pate.errors import PateError
from pate.noise import NoiseSource, SeededNoise, SystemNoise
from pate.voters.sampling import poisson_sample, rate_threshold


class ScriptedNoise(NoiseSource):
    """Hands out prescribed bytes, in order, as the uniform words (for exactness tests only)."""

    private = False
    description = "scripted"

    def __init__(self, stream: bytes) -> None:
        self.stream = stream
        self.used = 0

    def _words(self, count: int) -> np.ndarray:
        chunk = self.stream[self.used : self.used + 8 * count]
        assert len(chunk) == 8 * count, "the sampler asked for more bytes than were scripted"
        self.used += 8 * count
        return np.frombuffer(chunk, dtype=np.uint64)


def _script(values: list[bytes], threshold: bytes) -> bytes:
    """The byte stream that makes individual ``i`` draw the big-endian ``values[i]``: the sampler
    reads one byte per pending individual per position, in index order, in whole 8-byte words."""
    stream = bytearray()
    pending = list(range(len(values)))
    for position in range(len(threshold)):
        if not pending:
            break
        draw = bytes(values[i][position] for i in pending)
        stream += draw + bytes(-len(draw) % 8)
        pending = [i for i in pending if values[i][position] == threshold[position]]
    return bytes(stream)


@pytest.mark.parametrize(
    "rate", [1.0, 0.5, 0.375, 0.05, 0.1, 1 / 3, 0.999, 1e-5, 2.0**-40, 5e-324, 0.7]
)
def test_threshold_is_the_exact_rational_value_of_the_float(rate):
    threshold, length = rate_threshold(rate)
    assert len(threshold) == length
    value = int.from_bytes(threshold, "big") if length else 1
    assert Fraction(value, 256**length) == Fraction(rate)


@pytest.mark.parametrize("rate", [0.375, 5 / 512, 0.001953125 * 3])
def test_every_draw_of_the_bytes_is_decided_exactly(rate):
    """All 2^16 values of two bytes: exactly those below M are sampled, so Pr = M / 2^16 = rate."""
    threshold, length = rate_threshold(rate)
    width = 2
    assert length <= width
    limit = int.from_bytes(threshold.ljust(width, b"\0"), "big")
    values = [i.to_bytes(width, "big") for i in range(256**width)]
    noise = ScriptedNoise(_script(values, threshold.ljust(width, b"\0")[:length]))
    mask = poisson_sample(noise, len(values), rate)
    assert noise.used == len(noise.stream)
    np.testing.assert_array_equal(np.flatnonzero(mask), np.arange(limit))
    assert Fraction(int(mask.sum()), 256**width) == Fraction(rate)


@pytest.mark.parametrize("rate", [0.05, 1e-5, 0.1])
def test_draws_next_to_the_threshold_fall_on_the_right_side(rate):
    """Many bytes long thresholds: U = M - 1 and U = 0 are in; U = M, M + 1 and the maximum are out."""
    threshold, length = rate_threshold(rate)
    m = int.from_bytes(threshold, "big")
    draws = [m - 1, 0, m, m + 1, 256**length - 1]
    values = [d.to_bytes(length, "big") for d in draws]
    mask = poisson_sample(ScriptedNoise(_script(values, threshold)), len(values), rate)
    assert mask.tolist() == [True, True, False, False, False]


def test_sample_size_is_binomial_not_fixed():
    rate, individuals, draws = 0.05, 1000, 4000
    sizes = poisson_sample(SeededNoise(3), individuals, rate, (draws,)).sum(axis=1)
    mean, variance = individuals * rate, individuals * rate * (1 - rate)
    assert abs(sizes.mean() - mean) < 4 * np.sqrt(variance / draws)
    assert abs(sizes.var() / variance - 1) < 0.12  # the sample variance's sd is ~2.2% here
    assert len(np.unique(sizes)) > 20  # never a fixed size


def test_inclusions_are_independent_across_individuals_and_calls():
    noise = SeededNoise(5)
    rate = 0.3
    first = poisson_sample(noise, 12, rate, (20_000,))
    second = poisson_sample(noise, 12, rate, (20_000,))
    assert np.abs(first.mean(axis=0) - rate).max() < 0.015  # 4.6 sd of one marginal
    both = np.concatenate((first, second), axis=1).astype(np.float64)
    correlation = np.corrcoef(both, rowvar=False)
    off_diagonal = correlation[~np.eye(24, dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.035  # 5 sd of a null correlation at n = 20,000
    assert not np.array_equal(first, second)  # fresh per call


def test_the_private_source_reads_the_os_csprng_and_rate_one_takes_everyone():
    noise = SystemNoise()
    mask = poisson_sample(noise, 5000, 0.5)
    assert mask.dtype == bool and mask.shape == (5000,)
    assert 2200 < mask.sum() < 2800
    assert poisson_sample(noise, 7, 1.0, (3,)).all()
    assert poisson_sample(noise, 0, 0.5, (4,)).shape == (4, 0)


@pytest.mark.parametrize("rate", [0.0, -0.5, 1.5, float("nan"), "half"])
def test_a_rate_outside_zero_one_is_refused(rate):
    with pytest.raises(PateError, match="`rate`"):
        poisson_sample(SeededNoise(0), 10, rate)


@pytest.mark.parametrize("count", [-1, 2.5, True])
def test_a_bad_number_of_individuals_is_refused(count):
    with pytest.raises(PateError, match="`num_individuals`"):
        poisson_sample(SeededNoise(0), count, 0.5)


def test_docstring_examples():
    import doctest

    import pate.voters.sampling

    failures, tried = doctest.testmod(pate.voters.sampling)
    assert tried >= 2 and failures == 0
