"""Datasets: built-in generators and importers, all writing the ``pate-dataset`` HDF5 schema.

``BUILDERS`` maps a dataset name (the argument of ``pate dataset NAME``) to a function
``build(out_dir, **options) -> {"private": Path, "public": Path, "test": Path}``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pate.data.adas import AdasConfig, build_adas


def _build_adas(
    out_dir: str | Path, *, seed: int = 0, vehicles: int | None = None, **_
) -> dict[str, Path]:
    config = AdasConfig(seed=seed) if vehicles is None else AdasConfig(seed=seed, vehicles=vehicles)
    return build_adas(out_dir, config=config)


BUILDERS: dict[str, Callable[..., dict[str, Path]]] = {
    "adas": _build_adas,
}

__all__ = ["BUILDERS", "AdasConfig", "build_adas"]
