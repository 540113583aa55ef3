"""Reading the arrays ``pate analyze`` works on: vote histograms, answered flags, baselines.

Each is a ``.npy`` file or an HDF5 file holding a dataset of the given name (``votes``, ``answered``,
``baseline``). Every failure is a one-line :class:`PateError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pate.errors import PateError


def read_array(path: str | os.PathLike, dataset: str) -> np.ndarray:
    """Read a ``.npy`` file, or dataset ``dataset`` of an HDF5 file."""
    path = Path(path)
    if not path.exists():
        raise PateError(f"{path}: no such file")
    if path.is_dir():
        raise PateError(f"{path}: is a folder, expected a .npy or HDF5 file")
    if path.stat().st_size == 0:
        raise PateError(f"{path}: is empty, expected a .npy or HDF5 file with a {dataset!r} array")
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic.startswith(b"\x93NUMPY"):
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise PateError(f"{path}: cannot be read as .npy ({exc})") from None
        return np.asarray(array)
    if magic == b"\x89HDF\r\n\x1a\n":
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                if dataset not in handle:
                    found = sorted(handle.keys())
                    raise PateError(
                        f"{path}: has no dataset {dataset!r} (found {found or 'none'}), "
                        f"expected a {dataset!r} array"
                    )
                node = handle[dataset]
                if not isinstance(node, h5py.Dataset):
                    raise PateError(f"{path}: {dataset!r} is a group, expected a dataset")
                return np.asarray(node[()])
        except OSError as exc:
            raise PateError(f"{path}: cannot be read as HDF5 ({exc})") from None
    raise PateError(f"{path}: is neither a .npy nor an HDF5 file, expected one of them")


def read_votes(path: str | os.PathLike) -> np.ndarray:
    """Vote histograms (queries, classes) from ``path`` (``.npy`` or HDF5 dataset ``votes``)."""
    return read_array(path, "votes")
