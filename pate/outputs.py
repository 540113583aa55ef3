"""The one output policy (design rule 11) that every writer goes through before its first write or charge.

:func:`check_output` is called first by every library entry point that writes (``build_dataset``,
``write_splits``, ``partition``, ``train_teachers``, ``label_and_distill``, the canary audit, ``predict``,
``inspect``'s plot), so the commands and the stages of ``pate run`` obey it too. It refuses:

* an output that is, holds or lies inside an input (status 2, ``force`` or not);
* an output that lies inside a folder of a protected kind (a release, a workspace, a teachers folder, a
  data folder, an audit folder), wherever it comes from (status 2);
* an output that holds such a folder, or any privacy ledger (status 4, ``force`` or not);
* an existing output without ``force`` (status 4), and with ``force`` one that the same command did not
  write: an output is replaced only when its own marker says it is of the kind the command writes
  (:func:`kind_of`: the ``format`` attribute of an HDF5 artifact, ``ledger.jsonl`` or ``votes.h5`` in a
  workspace, ``privacy.json`` in a release, ``teachers.h5``, the three ``pate-dataset`` files
  (``private.h5``, ``public.h5``, ``test.h5``) of a data folder, ``audit.json`` of an audit, a PNG for a plot, the header of a predictions CSV);
* an existing workspace that is neither a workspace nor an empty folder;
* a parent that cannot be a folder (``afile/d``, ``/dev/null/x``) or cannot be written (a read-only
  file system, no permission), found by creating and removing a probe file, before any work.

Then it creates the missing parent folders (mode 0700 for a private output, as the umask allows
otherwise). It never changes the permissions of a folder it did not create.

:func:`output_lock` holds an exclusive lock on an output for a whole run: a second run on the same
teachers folder or workspace refuses at once (status 4) instead of sharing checkpoints or training a
duplicate student.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import h5py

from pate.errors import PateError
from pate.io import LEDGER_FILES

# Kinds of folders nothing may be written into (their contents are the run's evidence or private data).
PROTECTED_FOLDERS = ("release", "workspace", "teachers", "data", "audit")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DATASET_FILES = ("private.h5", "public.h5", "test.h5")


def _h5_format(path: Path) -> str | None:
    """The ``format`` attribute of an HDF5 file, or ``None`` (not HDF5, unreadable, no attribute)."""
    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as handle:
            value = handle.attrs.get("format")
    except (OSError, ValueError):
        return None
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return None if value is None else str(value)


def folder_kind(folder: str | os.PathLike) -> str | None:
    """What the tool's marker files say ``folder`` is (only its own entries are looked at):
    ``"workspace"``, ``"release"``, ``"teachers"``, ``"data"``, ``"audit"``, ``"empty"``, or ``None``
    (a folder the tool does not recognise); ``"checkpoints"`` for teachers' checkpoints."""
    folder = Path(folder)
    try:
        names = set(os.listdir(folder))
    except OSError:
        return None
    if not names:
        return "empty"
    if names & set(LEDGER_FILES) or (
        "votes.h5" in names and _h5_format(folder / "votes.h5") == "pate-votes"
    ):
        return "workspace"
    if "privacy.json" in names:
        return "release"
    if "teachers.h5" in names:
        return "teachers"
    if names & {"audit.json", "secrets.json"}:
        return "audit"
    if all(n in names and _h5_format(folder / n) == "pate-dataset" for n in _DATASET_FILES):
        return "data"
    if names <= {"chunks", "progress"}:
        return "checkpoints"
    return None


def file_kind(path: str | os.PathLike) -> str | None:
    """What an existing file is: the ``format`` of an HDF5 artifact, ``"png"``, ``"predictions-csv"``
    (the header ``pate predict`` writes), or ``None``."""
    path = Path(path)
    fmt = _h5_format(path)
    if fmt is not None:
        return fmt
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if head.startswith(_PNG_MAGIC):
        return "png"
    header = head.split(b"\n", 1)[0].rstrip(b"\r").split(b",")
    if b"predicted" in header and any(column.startswith(b"p_") for column in header):
        return "predictions-csv"
    return None


def kind_of(path: str | os.PathLike) -> str | None:
    """:func:`folder_kind` of a folder, :func:`file_kind` of a file, ``None`` if nothing is there."""
    path = Path(path)
    if path.is_dir():
        return folder_kind(path)
    if os.path.lexists(path):
        return file_kind(path)
    return None


def _protected_inside(folder: Path) -> tuple[str, Path] | None:
    """The first privacy ledger (``("ledger", its path)``) or folder of a protected kind
    (``(kind, its path)``) anywhere inside ``folder`` (a ledger of ``folder`` itself included)."""
    for root, dirs, files in os.walk(folder):
        if "ledger.jsonl" in files:
            return "ledger", Path(root) / "ledger.jsonl"
        for name in dirs:
            kind = folder_kind(Path(root) / name)
            if kind in PROTECTED_FOLDERS:
                return kind, Path(root) / name
    return None


def _say(name: str) -> str:
    return name if name.startswith("`") else f"`{name}`"


def check_output(
    path: str | os.PathLike | None,
    *,
    kinds: tuple[str, ...],
    folder: bool,
    inputs: dict[str, str | os.PathLike | None] | None = None,
    force: bool = False,
    private: bool = False,
    name: str = "out",
    exists_ok: bool = False,
) -> Path | None:
    """Check the output ``path`` of a writer against the policy (module docstring); create its
    missing parents. Returns ``path`` as a :class:`~pathlib.Path` (``None`` for ``None``).

    ``kinds``: what :func:`kind_of` says of an output this command wrote (``force`` replaces only
    those); ``folder``: the output is a folder (else a file); ``inputs``: field -> path of everything
    the command reads; ``name``: the output's field, named in backquotes in errors; ``private``:
    missing parents are created with mode 0700; ``exists_ok``: an existing output of one of ``kinds``
    (or an empty folder) is taken as it is, ``force`` or not (a workspace the run goes on with).
    """
    if path is None:
        return None
    from pate.io import refuse_overlap

    path = Path(path)
    field = _say(name)
    refuse_overlap(inputs={_say(k): v for k, v in (inputs or {}).items()}, outputs={field: path})
    real = Path(os.path.realpath(path))
    if real.name in LEDGER_FILES and os.path.lexists(real):
        raise PateError(
            f"{path}: is a privacy ledger, which is never replaced; expected another output",
            exit_code=4,
        )
    # Inside a folder of a protected kind: never (whatever the command and its force).
    for ancestor in real.parents:
        kind = folder_kind(ancestor) if ancestor.is_dir() else None
        if kind in PROTECTED_FOLDERS:
            raise PateError(
                f"{path}: {field} lies inside the {kind} folder {ancestor}, expected an output "
                "outside every release, workspace, teachers, data and audit folder"
            )
    if os.path.lexists(path):
        _check_existing(path, real, field, kinds=kinds, folder=folder, force=force, ok=exists_ok)
    _prepare_parent(path, private=private)
    return path


def _check_existing(
    path: Path, real: Path, field: str, *, kinds, folder: bool, force: bool, ok: bool
) -> None:
    is_dir = real.is_dir()
    if folder and not is_dir:
        raise PateError(f"{path}: {field} is a file, expected a folder", exit_code=4)
    if not folder and is_dir:
        raise PateError(f"{path}: {field} is a folder, expected a file", exit_code=4)
    kind = kind_of(real)
    if is_dir and kind == "empty":
        return  # an empty folder is any kind's: nothing to lose (its permissions are kept)
    if is_dir:
        inside = _protected_inside(real)
        if inside is not None and inside[0] == "ledger":
            if not (inside[1].parent == real and "workspace" in kinds):
                raise PateError(
                    f"{path}: holds a privacy ledger ({inside[1]}), which is never replaced; "
                    "expected another output",
                    exit_code=4,
                )
        elif inside is not None:
            raise PateError(
                f"{path}: {field} holds the {inside[0]} folder {inside[1]}, which is never "
                "replaced; expected another output",
                exit_code=4,
            )
    if ok and kind in kinds:
        return
    if kind not in kinds:
        what = f"a {kind} {'folder' if is_dir else 'file'}" if kind else "something else"
        wrote = " or ".join(kinds)
        raise PateError(
            f"{path}: already exists and is {what}, not {wrote} this command writes; expected a "
            "new path (pass `force` to replace only this command's own output)",
            exit_code=4,
        )
    if not force:
        holds = " and holds another run" if is_dir else ""
        raise PateError(f"{path}: already exists{holds}; pass `force` to replace it", exit_code=4)


def _prepare_parent(path: Path, *, private: bool) -> None:
    """Refuse a parent that cannot be a writable folder; create the missing ones; probe writing."""
    parent = Path(os.path.abspath(path)).parent
    missing: list[Path] = []
    existing = parent
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise PateError(
            f"{path}: {existing} is a file, not a folder; expected an output path under a folder"
        )
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                os.mkdir(folder, 0o700 if private else 0o777)
                made.append(folder)
            except FileExistsError:
                if not folder.is_dir():
                    raise PateError(f"{path}: {folder} is a file, expected a folder") from None
            except OSError as exc:
                raise write_error(folder, exc) from None
        _probe(path, parent)
    except BaseException:
        for folder in reversed(made):  # a refused output leaves no folder behind
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def _probe(path: Path, parent: Path) -> None:
    """Create and remove an empty ``.<name>.<pid>@<host>.<random>.probe`` in ``parent`` (one left by
    a kill is removed by the next write, as :mod:`pate.io`'s temporaries are; its own suffix so that
    it is never taken for the output's temporary): an unwritable folder is found before any work."""
    from pate.io import _create_temporary

    created: list[Path] = []
    try:
        _create_temporary(path, parent, ".probe", created, folder=False)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        for tmp in created:
            with contextlib.suppress(OSError):
                tmp.unlink()


def check_free_space(path: str | os.PathLike, need: int) -> None:
    """Refuse, before writing, a file of about ``need`` bytes that the file system of ``path`` has no
    room for (a file written in chunks, where HDF5 cannot recover from a full disk mid-way)."""
    parent = Path(os.path.abspath(path)).parent
    try:
        stat = os.statvfs(parent)
    except OSError:
        return
    free = stat.f_bavail * stat.f_frsize
    if need > free:
        raise PateError(
            f"{path}: cannot write (No space left on device: about {need / 2**20:.1f} MiB needed, "
            f"{free / 2**20:.1f} MiB free), expected a writable output"
        )


def write_error(path: str | os.PathLike, exc: OSError) -> PateError:
    """A one-line error (status 2) for an ``OSError`` met writing ``path``: ``<path>: cannot write
    (<reason>)``, the reason as the OS says it (no space left on device, read-only file system...).

    A temporary's name is said as the output it becomes; an error about another file (one being
    read) is said as ``<file>: <reason>``."""
    code, text = exc.errno, str(exc)
    if code is None:  # h5py may put the errno only in its text: "... errno = 28, error message ..."
        found = re.search(r"errno = (\d+),", text)
        code = int(found[1]) if found else None
    reason = exc.strerror or text or type(exc).__name__
    if code is not None and ("errno =" in reason or "\n" in reason or len(reason) > 200):
        reason = os.strerror(code)  # HDF5's multi-line report: the OS's words are enough
    reason = " ".join(str(reason).split())
    target = _TEMPORARY.sub(r"\1", os.fsdecode(path))
    if exc.filename:
        named = _TEMPORARY.sub(r"\1", os.fsdecode(exc.filename))
        if named != os.fsdecode(exc.filename) or _within(named, target):
            target = named
        else:
            return PateError(f"{named}: {reason}", exit_code=2)
    return PateError(f"{target}: cannot write ({reason}), expected a writable output", exit_code=2)


def _within(name: str, target: str) -> bool:
    """Whether ``name`` is ``target`` or lies inside it, or is one of its parents (made for it)."""
    name_path, target_path = Path(os.path.abspath(name)), Path(os.path.abspath(target))
    return (
        name_path == target_path
        or target_path in name_path.parents
        or name_path in target_path.parents
    )


# A temporary of pate.io (``.<name>.<pid>@<host>.<random>.tmp``) is named as the output it becomes.
_TEMPORARY = re.compile(r"\.([^/]+?)\.\d+@[^/]+?\.[0-9a-f]+\.(?:tmp|old|probe)")


# ----------------------------------------------------------------------------------------------------
# One run per output


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the output ``path`` for the block: ``.<name>.lock`` beside it, locked
    with ``flock`` (released by the kernel when the process ends, however it ends) and removed on the
    way out. A second holder refuses at once with status 4, naming ``what`` runs there."""
    path = Path(path)
    parent = Path(os.path.abspath(path)).parent
    lock_path = parent / f".{path.name}.lock"
    for _ in range(10):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise write_error(lock_path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _holder(lock_path)
                raise PateError(
                    f"{path}: in use by another {what} run{holder}; expected one run at a time "
                    "on it: wait for that run to end, or use another path",
                    exit_code=4,
                ) from None
            raise write_error(lock_path, exc) from None
        # The file may have been removed by the holder that just released it: lock the new one.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:  # pragma: no cover - ten removals in a row
        raise PateError(f"{lock_path}: cannot be locked, expected a stable lock file", exit_code=4)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, struct.pack("<q", os.getpid()))
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


def _holder(lock_path: Path) -> str:
    try:
        data = lock_path.read_bytes()
        return f" (process {struct.unpack('<q', data[:8])[0]})" if len(data) >= 8 else ""
    except (OSError, struct.error):
        return ""
