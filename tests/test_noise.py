"""Tests of pate.noise: exact pmfs (chi-square), scale discrimination, the CSPRNG default."""

from __future__ import annotations

import math
import os
import random
from fractions import Fraction

import numpy as np
import pytest
from reference_pmfs import gaussian_log_pmf, laplace_log_pmf
from scipy import stats
from scipy.special import logsumexp

from pate.errors import PateError
from pate.noise import (
    NoiseSource,
    SeededNoise,
    SystemNoise,
    make_noise,
)

# ----------------------------------------------------------------------------------------------------
# Reference pmfs, computed independently of the samplers


def chi_square_pvalue(samples: np.ndarray, log_pmf, reach: int) -> float:
    """Pearson chi-square of the samples against an exact pmf, tails pooled so every bin expects >= 5."""
    support = np.arange(-reach, reach + 1)
    expected = np.exp(log_pmf(support)) * samples.size
    counts = np.bincount(np.clip(samples, -reach, reach) + reach, minlength=support.size).astype(
        float
    )
    # fold the mass outside [-reach, reach] into the end bins
    expected[0] += samples.size * (1 - np.exp(logsumexp(log_pmf(support)))) / 2
    expected[-1] += samples.size * (1 - np.exp(logsumexp(log_pmf(support)))) / 2
    keep = expected >= 5
    first, last = np.flatnonzero(keep)[[0, -1]]
    observed = np.concatenate(
        ([counts[: first + 1].sum()], counts[first + 1 : last], [counts[last:].sum()])
    )
    wanted = np.concatenate(
        ([expected[: first + 1].sum()], expected[first + 1 : last], [expected[last:].sum()])
    )
    wanted *= observed.sum() / wanted.sum()
    return float(stats.chisquare(observed, wanted).pvalue)


# ----------------------------------------------------------------------------------------------------
# Exact pmfs


@pytest.mark.parametrize("sigma", [0.6, 3.0, 25.0, 23.7])
def test_discrete_gaussian_matches_exact_pmf(sigma: float) -> None:
    samples = SeededNoise(11).discrete_gaussian(sigma, 80_000)
    assert samples.dtype == np.int64 and samples.shape == (80_000,)
    pvalue = chi_square_pvalue(samples, lambda x: gaussian_log_pmf(sigma, x), int(8 * sigma) + 3)
    assert pvalue > 1e-4


@pytest.mark.parametrize("scale", [0.7, 2.5, 30.0])
def test_discrete_laplace_matches_exact_pmf(scale: float) -> None:
    samples = SeededNoise(12).discrete_laplace(scale, 120_000)
    assert samples.dtype == np.int64
    pvalue = chi_square_pvalue(samples, lambda x: laplace_log_pmf(scale, x), int(12 * scale) + 3)
    assert pvalue > 1e-4


def test_chi_square_rejects_a_wrong_pmf() -> None:
    """The goodness-of-fit check has teeth: a 10% wrong scale is rejected by far."""
    gaussian = SeededNoise(13).discrete_gaussian(3.0, 120_000)
    assert chi_square_pvalue(gaussian, lambda x: gaussian_log_pmf(3.3, x), 27) < 1e-12
    laplace = SeededNoise(14).discrete_laplace(2.5, 120_000)
    assert chi_square_pvalue(laplace, lambda x: laplace_log_pmf(2.75, x), 33) < 1e-12


@pytest.mark.parametrize(
    "gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(7, 3), Fraction(5)]
)
def test_bernoulli_exp_is_exact(gamma: Fraction) -> None:
    count = 200_000
    draws = SeededNoise(15)._bernoulli_exp(
        np.full(count, gamma.numerator, dtype=np.int64), gamma.denominator
    )
    p = math.exp(-gamma)
    if p == 1.0:
        assert draws.all()
        return
    z = (draws.sum() - count * p) / math.sqrt(count * p * (1 - p))
    assert abs(z) < 4.5


def test_uniform_integers_cover_their_range_exactly() -> None:
    source = SeededNoise(16)
    small = source._uniform_below(7, 70_000)
    assert small.min() == 0 and small.max() == 6
    assert stats.chisquare(np.bincount(small, minlength=7)).pvalue > 1e-4
    for bound in (3 << 60, (1 << 70) + 12345):  # int64 path near its limit, and the Python-int path
        values = source._uniform_below(bound, 4000)
        assert all(0 <= int(v) < bound for v in values)
        mean = sum(int(v) for v in values) / len(values) / bound
        assert abs(mean - 0.5) < 5 * math.sqrt(1 / 12 / len(values))
    each = source._uniform_below_each(np.array([1, 2, 3, 1000] * 5000, dtype=np.int64))
    assert (each[0::4] == 0).all() and set(each[1::4]) == {0, 1} and set(each[2::4]) == {0, 1, 2}
    assert each[3::4].max() < 1000


def test_large_rational_parameters_take_the_exact_python_int_path() -> None:
    # Fraction(23.7) ** 2 has a 96-bit denominator; scale 0.1 has a 55-bit one.
    assert Fraction(23.7).denominator > 1 << 40
    samples = SeededNoise(17).discrete_laplace(0.1, 50_000)
    # P(|x| >= 1) = 2 r / (1 + r) with r = exp(-10)
    r = math.exp(-10)
    expected = 50_000 * 2 * r / (1 + r)
    assert abs(np.count_nonzero(samples) - expected) < 5 * math.sqrt(expected) + 1


# ----------------------------------------------------------------------------------------------------
# Right scale accepted, wrong scale rejected


def exact_variance(sigma: float) -> float:
    support = np.arange(-int(40 * sigma) - 50, int(40 * sigma) + 51)
    pmf = np.exp(gaussian_log_pmf(sigma, support))
    return float((pmf * support.astype(float) ** 2).sum())


def test_scale_test_accepts_sigma_10_and_rejects_11() -> None:
    count = 40_000
    samples = SeededNoise(21).discrete_gaussian(10.0, count).astype(float)
    # variance z-test against each hypothesis (the fourth moment of N_Z(0, s^2) is ~3 s^4)
    for sigma, accept in ((10.0, True), (11.0, False)):
        variance = exact_variance(sigma)
        z = (np.mean(samples**2) - variance) / math.sqrt(2 * variance**2 / count)
        assert bool(abs(z) < 4.5) is accept, (sigma, z)
    # likelihood ratio: the data favour the true sigma by a wide margin, and the reverse holds too
    support_ll = {s: gaussian_log_pmf(s, samples.astype(np.int64)).sum() for s in (10.0, 11.0)}
    assert support_ll[10.0] - support_ll[11.0] > 50
    other = SeededNoise(22).discrete_gaussian(11.0, count)
    assert gaussian_log_pmf(11.0, other).sum() - gaussian_log_pmf(10.0, other).sum() > 50


def test_discrete_laplace_scale_is_identified() -> None:
    samples = SeededNoise(23).discrete_laplace(10.0, 40_000)
    ll = {s: laplace_log_pmf(s, samples).sum() for s in (9.0, 10.0, 11.0)}
    assert ll[10.0] > ll[9.0] + 30 and ll[10.0] > ll[11.0] + 30


# ----------------------------------------------------------------------------------------------------
# The default path is the OS CSPRNG


def test_default_noise_is_the_os_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_urandom = os.urandom

    def spy(count: int) -> bytes:
        calls.append(count)
        return real_urandom(count)

    def forbidden(*args, **kwargs):
        raise AssertionError("a seeded generator was constructed on the private path")

    monkeypatch.setattr(os, "urandom", spy)
    for name in ("default_rng", "Generator", "PCG64", "seed", "RandomState"):
        monkeypatch.setattr(np.random, name, forbidden)
    monkeypatch.setattr(random, "seed", forbidden)

    source = make_noise(None)
    assert isinstance(source, SystemNoise) and source.private
    assert source.description == "os-csprng"
    assert not hasattr(source, "seed")
    first = source.discrete_gaussian(50.0, 2000)
    assert calls, "os.urandom was never read"
    second = make_noise(None).discrete_gaussian(50.0, 2000)
    assert not np.array_equal(first, second)
    laplace = source.discrete_laplace(5.0, 3000)
    assert laplace.std() > 3


def test_system_noise_refills_after_fork() -> None:
    source = SystemNoise()
    source.discrete_gaussian(5.0, 10)
    buffered = source._buffer
    source._pid = -1  # as a forked child sees it
    source._words(4)
    assert source._buffer is not buffered and source._pid == os.getpid()


def test_seeded_noise_is_reproducible_and_marked_not_private() -> None:
    a, b, c = make_noise(7), SeededNoise(7), SeededNoise(8)
    assert isinstance(a, SeededNoise) and not a.private and a.seed == 7
    assert a.description == "seeded(seed=7), NOT PRIVATE"
    draws_a = a.discrete_gaussian(20.0, (30, 10))
    assert draws_a.shape == (30, 10)
    assert np.array_equal(draws_a, b.discrete_gaussian(20.0, (30, 10)))
    assert not np.array_equal(draws_a, c.discrete_gaussian(20.0, (30, 10)))
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(PateError, match="noise-seed"):
            SeededNoise(bad)  # type: ignore[arg-type]


def test_small_requests_served_from_the_pool_keep_the_pmf() -> None:
    source = SeededNoise(31)
    samples = np.concatenate([source.discrete_gaussian(4.0, 10) for _ in range(6000)])
    assert chi_square_pvalue(samples, lambda x: gaussian_log_pmf(4.0, x), 35) > 1e-4


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 1e13])
def test_scales_are_validated(bad: float) -> None:
    source = SeededNoise(1)
    with pytest.raises(PateError, match=r"Expected sigma="):
        source.discrete_gaussian(bad, 3)
    with pytest.raises(PateError, match=r"Expected scale="):
        source.discrete_laplace(bad, 3)


def test_noise_source_is_abstract() -> None:
    with pytest.raises(TypeError):
        NoiseSource()  # type: ignore[abstract]
    assert source_names() == {"SystemNoise", "SeededNoise"}


def source_names() -> set[str]:
    """The library's noise sources (tests may define scripted ones of their own)."""
    return {cls.__name__ for cls in NoiseSource.__subclasses__() if cls.__module__ == "pate.noise"}


def test_throughput_is_adequate() -> None:
    """Lenient floor (the machine is shared); the measured figure is ~4e5 samples/s."""
    import time

    source = SystemNoise()
    start = time.perf_counter()
    source.discrete_gaussian(40.0, (10_000, 10))
    assert 100_000 / (time.perf_counter() - start) > 20_000
