"""The built-in adas fleet: deterministic, one car = one individual, unbalanced, non-IID, learnable."""

from __future__ import annotations

import numpy as np
import pytest

from pate.data.adas import ACTIONS, FEATURES, AdasConfig, build_adas, generate_fleet, simulate
from pate.errors import PateError
from pate.io import read_dataset


def test_files_are_deterministic_and_disjoint(tmp_path):
    config = AdasConfig(vehicles=80, public_vehicles=15, test_vehicles=15, seed=5)
    first = build_adas(tmp_path / "a", config=config)
    second = build_adas(tmp_path / "b", config=config)
    sets = {}
    for split in ("private", "public", "test"):
        a, b = read_dataset(first[split]), read_dataset(second[split])
        assert np.array_equal(a.features, b.features)
        assert a.feature_shape == (len(FEATURES),) and a.num_classes == len(ACTIONS)
        sets[split] = set(a.individual_id.tolist())
    assert not (sets["private"] & sets["public"]) and not (sets["private"] & sets["test"])
    assert not (sets["public"] & sets["test"])
    assert len(sets["private"]) == 80
    assert read_dataset(first["public"]).labels is None  # the public set is unlabeled


def test_records_per_car_are_heavy_tailed():
    config = AdasConfig()
    _, _, ids = generate_fleet(2500, first_id=0, rng=np.random.default_rng(0), config=config)
    counts = np.bincount(ids)
    assert 90_000 <= counts.sum() <= 115_000  # enough for 250 teachers
    assert counts.max() >= 8 * np.median(counts)  # a long right tail
    assert np.mean(counts) > np.median(counts)


def test_cars_differ_in_what_they_see_and_do():
    config = AdasConfig()
    features, logits, vehicle = simulate(400, rng=np.random.default_rng(1), config=config)
    # Non-IID inputs: where a car drives differs far more between cars than within one.
    x = features[:, FEATURES.index("x_km")]
    car_means = np.array([x[vehicle == v].mean() for v in range(400)])
    assert car_means.std() > 3 * np.mean([x[vehicle == v].std() for v in range(400)]) / 2
    # Learnable but not perfectly: the best possible accuracy is high but below 1.
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    bayes = probs.max(axis=1).mean()
    assert 0.75 < bayes < 0.97
    # Every action occurs with a reasonable frequency.
    assert probs.mean(axis=0).min() > 0.02


def test_config_validation():
    with pytest.raises(PateError, match="vehicles=0"):
        AdasConfig(vehicles=0)
