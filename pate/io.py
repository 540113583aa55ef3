"""HDF5 schemas of the pipeline's artifacts, their validation, and atomic writes.

Every artifact is readable with h5py alone and carries ``format`` and ``version`` attributes.

Dataset file (``format = "pate-dataset"``)::

    features        (N, ...) float32 or uint8
    labels          (N,) int64 in 0..num_classes-1      absent in an unlabeled public set
    individual_id   (N,) int64 or variable-length str   whose records belong to whom
    attrs: format, version, num_classes, class_names (optional), feature_names (optional),
           name, split ("private" | "public" | "test")

Writes go to a temporary file in the target's folder and are renamed into place only when complete, so
an interrupted or refused command never leaves a half-written artifact behind. Temporaries are named
``.<target>.<pid>@<host>.<random>.tmp`` (``.old`` for a folder being replaced); one left by a killed
writer (SIGKILL cannot be caught) is removed by the next write of the same target, once its process is
gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pate.errors import PateError

DATASET_FORMAT = "pate-dataset"
DATASET_VERSION = 1
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
#: A workspace's privacy ledger, and its head record beside it (pate/ledger.py). A folder holding the
#: ledger is a workspace: no output may replace it.
LEDGER_FILE = "ledger.jsonl"
LEDGER_FILES = (LEDGER_FILE, LEDGER_FILE + ".head")


@dataclass(frozen=True)
class Dataset:
    """An in-memory dataset: features, optional labels, and who each record belongs to."""

    features: np.ndarray
    labels: np.ndarray | None
    individual_id: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    name: str = ""
    split: str = ""
    path: str = ""
    extra_attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.labels is not None and len(self.labels) != n:
            raise PateError(
                f"{self.path or 'dataset'}: labels has {len(self.labels)} rows, expected {n}"
            )
        if len(self.individual_id) != n:
            raise PateError(
                f"{self.path or 'dataset'}: individual_id has {len(self.individual_id)} rows, expected {n}"
            )

    def __len__(self) -> int:
        return len(self.features)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[1:])


# ----------------------------------------------------------------------------------------------------
# Opening files with clear errors


@contextlib.contextmanager
def open_h5(path: str | os.PathLike, what: str = "file") -> Iterator[h5py.File]:
    """Open an HDF5 file for reading, turning every failure into a one-line :class:`PateError`."""
    path = Path(path)
    if not path.exists():
        raise PateError(f"{path}: no such {what}")
    if path.is_dir():
        raise PateError(f"{path}: is a folder, expected an HDF5 {what}")
    if not h5py.is_hdf5(path):
        raise PateError(f"{path}: not an HDF5 file, expected an HDF5 {what}")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise PateError(f"{path}: cannot be read as HDF5 ({exc})") from None
    with handle:
        yield handle


def require_format(handle: h5py.File, path: str | os.PathLike, expected: str) -> None:
    """Refuse a file whose ``format`` attribute is not ``expected``."""
    found = _attr_str(handle.attrs.get("format"))
    if found != expected:
        raise PateError(f"{path}: attribute 'format' is {found!r}, expected {expected!r}")


def _attr_str(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _attr_int(value) -> int | None:
    """An integer attribute (a float only when integral); ``None`` for anything else."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and value == int(value):
        return int(value)
    return None


def _attr_strings(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value))


# ----------------------------------------------------------------------------------------------------
# Datasets


def read_dataset_attrs(handle: h5py.File, path: str | os.PathLike) -> dict:
    """Validate a dataset file's attributes and return them as plain Python values."""
    require_format(handle, path, DATASET_FORMAT)
    features = handle.get("features")
    if not isinstance(features, h5py.Dataset) or features.ndim < 1:
        raise PateError(f"{path}: missing dataset 'features', expected an (N, ...) array")
    num_classes = _attr_int(handle.attrs.get("num_classes"))
    if num_classes is None or num_classes < 2:
        found = handle.attrs.get("num_classes")
        found = _attr_str(found) if isinstance(found, (bytes, str)) else found
        raise PateError(f"{path}: attribute 'num_classes' is {found!r}, expected an integer >= 2")
    return {
        "num_classes": num_classes,
        "class_names": _attr_strings(handle.attrs.get("class_names")),
        "feature_names": _attr_strings(handle.attrs.get("feature_names")),
        "name": _attr_str(handle.attrs.get("name")) or "",
        "split": _attr_str(handle.attrs.get("split")) or "",
    }


def read_ids(handle: h5py.File, path: str | os.PathLike, column: str) -> np.ndarray:
    """Read the individual-id column; strings come back as a numpy str array."""
    if column not in handle:
        present = sorted(k for k in handle.keys() if k not in ("features", "labels"))
        raise PateError(
            f"{path}: missing id column {column!r} (found {present or 'no other columns'}); "
            "pass the right --individual-column"
        )
    column_data = handle[column]
    rows = handle["features"].shape[0]
    shape = getattr(column_data, "shape", None)
    if not isinstance(column_data, h5py.Dataset) or shape != (rows,):
        raise PateError(f"{path}: id column {column!r} has shape {shape}, expected ({rows},)")
    if column_data.dtype.kind not in ("i", "u", "U", "S", "O"):
        raise PateError(
            f"{path}: id column {column!r} has dtype {column_data.dtype}, expected integers or strings"
        )
    return decode_ids(column_data[()], path=path, column=column)


def decode_ids(
    ids: np.ndarray, *, path: str | os.PathLike | None = None, column: str = "individual_id"
) -> np.ndarray:
    """Integer ids as int64; byte or object strings as a numpy str array.

    Bytes that are not UTF-8 are refused, naming ``path``, ``column`` and the first such record.
    """
    if ids.dtype.kind in ("S", "O"):
        values = []
        for row, value in enumerate(ids):
            if isinstance(value, bytes):
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    raise PateError(
                        f"{path or 'ids'}: dataset {column!r} holds bytes that are not UTF-8 in "
                        f"record {row}, expected UTF-8 strings or integers"
                    ) from None
            values.append(str(value))
        return np.array(values)
    if ids.dtype.kind in ("i", "u"):
        return ids.astype(np.int64)
    return ids


def check_rows(handle: h5py.Group, path: str | os.PathLike, name: str) -> None:
    """Refuse a column ``name`` that is not a 1-D dataset with one row per record of ``features``."""
    rows = handle["features"].shape[0]
    column = handle[name]
    shape = getattr(column, "shape", None)
    if not isinstance(column, h5py.Dataset) or shape is None or len(shape) != 1:
        raise PateError(f"{path}: dataset {name!r} has shape {shape}, expected ({rows},)")
    if shape[0] != rows:
        raise PateError(f"{path}: dataset {name!r} has {shape[0]} rows, expected {rows}")


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo, else the free physical
    pages); ``None`` when neither can be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def declared_bytes(dataset: h5py.Dataset) -> int:
    """What reading ``dataset`` whole takes, from its declared shape and dtype (nothing is read)."""
    return math.prod(dataset.shape) * dataset.dtype.itemsize


def check_fits_in_memory(handle: h5py.Group, path: str | os.PathLike, names: list[str]) -> None:
    """Refuse, before anything is read, datasets ``names`` (those present) that are to be read whole
    when their declared size together exceeds the memory available."""
    present = [name for name in names if isinstance(handle.get(name), h5py.Dataset)]
    total = sum(declared_bytes(handle[name]) for name in present)
    available = available_memory()
    if available is None or total <= available:
        return
    largest = max(present, key=lambda name: declared_bytes(handle[name]))
    listed = ", ".join(repr(name) for name in present)
    raise PateError(
        f"{path}: dataset {largest!r} declares shape {handle[largest].shape}; {listed} take "
        f"{total / 2**30:.1f} GiB to read whole, more than the memory available "
        f"({available / 2**30:.1f} GiB), expected a dataset that fits in memory"
    )


def check_features(features: np.ndarray, path: str | os.PathLike, start: int = 0) -> None:
    """Refuse NaN or infinite features, naming the first offending record."""
    if features.dtype.kind == "f":
        bad = ~np.isfinite(features.reshape(len(features), -1)).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad)) + start
            raise PateError(
                f"{path}: dataset 'features' has NaN or inf in record {row}, expected finite values"
            )
    elif features.dtype.kind not in ("u", "i"):
        raise PateError(
            f"{path}: dataset 'features' has dtype {features.dtype}, expected float32 or uint8"
        )


def check_labels(labels: np.ndarray, num_classes: int, path: str | os.PathLike) -> np.ndarray:
    """Refuse labels that are not integers in ``0..num_classes-1``."""
    if labels.ndim != 1:
        raise PateError(f"{path}: dataset 'labels' has shape {labels.shape}, expected (N,)")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise PateError(f"{path}: dataset 'labels' holds non-integer values, expected integers")
    elif labels.dtype.kind not in ("i", "u"):
        raise PateError(f"{path}: dataset 'labels' has dtype {labels.dtype}, expected integers")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise PateError(
            f"{path}: dataset 'labels' holds {bad}, expected labels in 0..{num_classes - 1}"
        )
    return labels


def read_dataset(
    path: str | os.PathLike,
    *,
    require_labels: bool = False,
    individual_column: str = "individual_id",
) -> Dataset:
    """Read and validate a ``pate-dataset`` file.

    Raises :class:`PateError` for a missing file, a non-HDF5 file, a missing id column, non-finite
    features, labels outside ``0..num_classes-1``, columns whose row counts disagree, no record at all,
    or columns whose declared size is more than the memory available (checked before reading).
    """
    with open_h5(path, "dataset file") as handle:
        attrs = read_dataset_attrs(handle, path)
        if handle["features"].shape[0] == 0:
            raise PateError(f"{path}: dataset 'features' has 0 rows, expected at least one record")
        check_fits_in_memory(handle, path, ["features", "labels", individual_column])
        if "labels" in handle:
            check_rows(handle, path, "labels")
        features = handle["features"][()]
        check_features(features, path)
        labels = None
        if "labels" in handle:
            labels = check_labels(handle["labels"][()], attrs["num_classes"], path)
        elif require_labels:
            raise PateError(
                f"{path}: missing dataset 'labels', expected labels in 0..{attrs['num_classes'] - 1}"
            )
        ids = read_ids(handle, path, individual_column)
    return Dataset(features=features, labels=labels, individual_id=ids, path=str(path), **attrs)


def write_dataset(
    path: str | os.PathLike,
    dataset: Dataset,
    *,
    private: bool = False,
    extra_arrays: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``dataset`` atomically in the ``pate-dataset`` schema.

    ``extra_arrays`` are written as further top-level datasets inside the same atomic write (for
    example a public set's ``evaluation_labels``, kept for experiments and never read by the pipeline).
    """
    with atomic_file(path, private=private) as tmp:
        with h5_create(tmp) as handle:
            handle.attrs["format"] = DATASET_FORMAT
            handle.attrs["version"] = DATASET_VERSION
            handle.attrs["num_classes"] = dataset.num_classes
            handle.attrs["name"] = dataset.name
            handle.attrs["split"] = dataset.split
            if dataset.class_names:
                handle.attrs["class_names"] = list(dataset.class_names)
            if dataset.feature_names:
                handle.attrs["feature_names"] = list(dataset.feature_names)
            for key, value in dataset.extra_attrs.items():
                handle.attrs[key] = value
            handle.create_dataset("features", data=dataset.features, chunks=True, compression="lzf")
            if dataset.labels is not None:
                handle.create_dataset("labels", data=dataset.labels.astype(np.int64))
            write_ids(handle, "individual_id", dataset.individual_id)
            for key, array in (extra_arrays or {}).items():
                handle.create_dataset(key, data=array)


def write_ids(handle: h5py.Group, name: str, ids: np.ndarray) -> None:
    """Store an id column: integers as int64, anything else as UTF-8 strings."""
    if ids.dtype.kind in ("i", "u"):
        handle.create_dataset(name, data=ids.astype(np.int64))
    else:
        handle.create_dataset(name, data=np.asarray(ids, dtype=object), dtype=h5py.string_dtype())


# ----------------------------------------------------------------------------------------------------
# Atomic writes and output folders


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A privacy ledger (``ledger.jsonl``) or its head record is never replaced: losing either would let
    the next run spend its budget again.
    """
    path = Path(path)
    if not path.parent.exists():
        raise PateError(f"{path}: folder {path.parent} does not exist")
    if path.name in LEDGER_FILES and os.path.lexists(path):
        raise PateError(
            f"{path}: is a privacy ledger, which is never replaced; expected another output file",
            exit_code=4,
        )
    remove_stale_temporaries(path)
    created: list[Path] = []
    try:
        tmp = _create_temporary(path, path.parent, ".tmp", created, folder=False)
        yield tmp
        os.chmod(tmp, PRIVATE_FILE_MODE if private else 0o644)
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)
    except BaseException as exc:
        for tmp in created:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise


def ledger_inside(folder: str | os.PathLike) -> Path | None:
    """The first privacy ledger (``ledger.jsonl``) anywhere inside ``folder``, or ``None``."""
    for root, _, files in os.walk(folder):
        if LEDGER_FILE in files:
            return Path(root) / LEDGER_FILE
    return None


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike, *, force: bool = False, private: bool = False
) -> Iterator[Path]:
    """Build an output folder in a temporary sibling and move it onto ``path`` when complete.

    An existing ``path`` is refused unless ``force`` is set, in which case it is replaced only after the
    new folder is complete (so a failed run never destroys the old one). A folder that holds a privacy
    ledger (``ledger.jsonl`` anywhere inside) is never replaced, ``force`` or not: deleting a ledger
    would let the next run spend its budget again.
    """
    path = Path(path)
    remove_stale_temporaries(path)  # first: it may move back the folder a killed run was replacing
    if path.is_dir() and ledger_inside(path) is not None:
        raise PateError(
            f"{path}: holds a privacy ledger ({LEDGER_FILE}), which is never replaced; expected "
            "another output folder",
            exit_code=4,
        )
    if path.exists() and not force:
        raise PateError(
            f"{path}: already exists and holds another run; pass --force to replace it", exit_code=4
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise PateError(f"{path}: folder {parent} does not exist")
    created: list[Path] = []
    aside: list[Path] = []
    try:
        tmp = _create_temporary(path, parent, ".tmp", created, folder=True)
        yield tmp
        os.chmod(tmp, PRIVATE_DIR_MODE if private else 0o755)
        if path.exists():
            old = _create_temporary(path, parent, ".old", aside, folder=True)
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_path(parent)
    except BaseException as exc:
        for tmp in created:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in aside:  # cut between the two renames: the previous folder goes back in place
            if os.path.lexists(old / "x") and not os.path.lexists(path):
                os.replace(old / "x", path)
            shutil.rmtree(old, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise


def _write_error(path: Path, exc: OSError) -> PateError:
    from pate.outputs import write_error

    return write_error(path, exc)


@contextlib.contextmanager
def h5_create(path: str | os.PathLike, *, in_memory: bool = True) -> Iterator[h5py.File]:
    """Create the HDF5 file ``path`` for writing; close it on the way out, whatever happens.

    HDF5 cannot close a file after a failed write (a full disk): the close segfaults. So by default
    the file is built in memory and its image written with ``os.write`` only once complete, where a
    full or read-only disk is a plain ``OSError``. ``in_memory=False`` (a file too large for memory,
    written in chunks) writes to disk; a file whose write failed is then left open for the process
    (the CLI ends with ``os._exit``) rather than closed into a crash.
    """
    path = Path(path)
    if in_memory:
        handle = h5py.File(path, "w", driver="core", backing_store=False)
    else:
        handle = h5py.File(path, "w")
    try:
        yield handle
        if in_memory:
            handle.flush()
            image = handle.id.get_file_image()
            handle.close()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_image(fd, image)
            finally:
                os.close(fd)
        else:
            handle.close()
    except BaseException:
        if handle.id.valid:
            if in_memory:
                handle.close()
            else:
                _UNCLOSABLE.append(handle)
        raise


def _write_image(fd: int, image: bytes) -> None:
    view = memoryview(image)
    while view:
        view = view[os.write(fd, view) :]


#: HDF5 files whose write failed on disk: closing them would crash the process (see h5_create).
_UNCLOSABLE: list[h5py.File] = []


def _create_temporary(
    path: Path, parent: Path, suffix: str, created: list[Path], *, folder: bool
) -> Path:
    """Create a new temporary of ``path`` in ``parent`` (a file, or a folder) and return it.

    Its name is appended to ``created`` *before* it exists. SIGINT and SIGTERM raise in the main thread
    at the first bytecode after a system call returns, the one creating the temporary included: a
    caller that removes everything in ``created`` on the way out (inside its ``try``) leaves nothing
    behind wherever the interrupt lands (``tempfile.mkstemp`` would return the name too late).
    """
    for _ in range(100):
        candidate = parent / f"{_temp_prefix(path)}{secrets.token_hex(4)}{suffix}"
        created.append(candidate)
        try:
            if folder:
                os.mkdir(candidate, 0o700)
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            created.remove(candidate)
            continue
        return candidate
    raise FileExistsError(f"{path}: no free temporary name in {parent}")


def _temp_prefix(path: Path) -> str:
    """``.<name>.<pid>@<host>.``: who writes a temporary, so a later run can tell a dead writer's."""
    return f".{path.name}.{os.getpid()}@{socket.gethostname()}."


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` left by a writer that was killed; return what was removed.

    Only names of the form :func:`atomic_file` and :func:`atomic_dir` give (``.<name>.<pid>@<host>.
    <random>.tmp`` or ``.old``), or the output policy's probe (``.probe``), are considered, and only when ``<host>`` is this machine and process
    ``<pid>`` no longer exists: a temporary of a running writer, of another machine sharing the folder,
    or of an unknown name is left alone. A ``.old`` folder holds the previous ``path`` of a replacement
    cut between its two renames; when ``path`` is missing it is moved back rather than deleted.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)@(.+)\.[a-z0-9_]+\.(tmp|old|probe)")
    host = socket.gethostname()
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    # A .old folder first: it may have to be moved back before the .tmp beside it is removed.
    for name in sorted(names, key=lambda n: not n.endswith(".old")):
        match = pattern.fullmatch(name)
        if not match or match[2] != host or _process_alive(int(match[1])):
            continue
        stale = parent / name
        if match[3] == "old" and (stale / "x").exists() and not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.replace(stale / "x", path)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        removed.append(stale)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, run by another user
        return True
    return True


def ensure_private_dir(path: str | os.PathLike) -> Path:
    """Create a private folder (and its missing parents) with mode 0700; an existing folder is kept
    as it is (the tool never changes the permissions of a folder it did not create)."""
    path = Path(path)
    missing = []
    folder = path
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, PRIVATE_DIR_MODE)
            os.chmod(folder, PRIVATE_DIR_MODE)  # the umask may have taken bits off: ours to set
    if not path.is_dir():
        raise PateError(f"{path}: is a file, expected a folder")
    return path


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def json_default(value):
    """``json.dumps(default=...)`` for NumPy scalars and arrays."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def file_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, used to tie a ledger to the exact teachers and public data."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def array_fingerprint(*arrays: np.ndarray) -> str:
    """SHA-256 over arrays' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Inputs and outputs that must not overlap


def _contains(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


def refuse_overlap(
    *,
    inputs: dict[str, str | os.PathLike | None],
    outputs: dict[str, str | os.PathLike | None],
) -> None:
    """Refuse any output that is, holds or sits inside an input or another output.

    ``inputs`` and ``outputs`` map a field name (the CLI maps it to its flag) to a path; ``None`` is
    skipped. Paths are compared after resolving symbolic links, so ``--out X`` with ``X`` a link to an
    input is refused too. Call it before anything is read, written or charged: writing a release over
    its own workspace, or a shards file over the private data it reads, would destroy evidence or data.

    >>> refuse_overlap(inputs={"teachers": "run/teachers"}, outputs={"out": "run/release"})
    >>> refuse_overlap(inputs={"private": "d.h5"}, outputs={"out": "d.h5"})
    Traceback (most recent call last):
    ...
    pate.errors.PateError: d.h5: out is the same path as private (d.h5), expected an output apart from every input
    """
    resolved_in = {k: (v, Path(os.path.realpath(v))) for k, v in inputs.items() if v is not None}
    resolved_out = {k: (v, Path(os.path.realpath(v))) for k, v in outputs.items() if v is not None}
    for out_name, (out_raw, out_path) in resolved_out.items():
        for in_name, (in_raw, in_path) in resolved_in.items():
            _refuse_pair(out_name, out_raw, out_path, in_name, in_raw, in_path, "input")
    names = list(resolved_out)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            _refuse_pair(first, *resolved_out[first], second, *resolved_out[second], "output")


def _refuse_pair(out_name, out_raw, out_path, other_name, other_raw, other_path, kind) -> None:
    if out_path == other_path:
        relation = "is the same path as"
    elif _contains(out_path, other_path):
        relation = "contains"
    elif _contains(other_path, out_path):
        relation = "lies inside"
    else:
        return
    raise PateError(
        f"{out_raw}: {out_name} {relation} {other_name} ({other_raw}), expected an output apart from "
        f"every {kind}"
    )


def count_individuals(
    path: str | os.PathLike, individual_column: str = "individual_id"
) -> tuple[int, int]:
    """``(individuals, records)`` of a dataset file, reading only its id column (for sizing, locally)."""
    with open_h5(path, "dataset file") as handle:
        read_dataset_attrs(handle, path)
        check_fits_in_memory(handle, path, [individual_column])
        ids = read_ids(handle, path, individual_column)
    return len(np.unique(ids)), len(ids)
