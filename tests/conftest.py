"""Shared fixtures: a tiny adas fleet made fresh for the test session (no data is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pate.data.adas import AdasConfig, build_adas


@pytest.fixture(scope="session")
def tiny_adas(tmp_path_factory) -> dict[str, Path]:
    """~2,400 private records from 60 cars, plus small public and test fleets."""
    out = tmp_path_factory.mktemp("adas")
    config = AdasConfig(vehicles=60, public_vehicles=12, test_vehicles=12, seed=3)
    return build_adas(out, config=config)
