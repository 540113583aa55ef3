"""The write-ahead privacy ledger: an append-only, hash-chained JSON-lines file in the private workspace.

Rule (design.md, "charge before you release"): a query's cost is durably in the ledger before its
answer leaves the aggregator. :meth:`Ledger.append` returns only after the record is written and
``os.fsync``-ed, so a caller that releases answers after ``append`` returns never releases an uncharged
answer, whatever moment the process is killed at.

File format (``format = "pate-ledger"``, ``version = 1``), one JSON object per line, ASCII, keys sorted::

    {"digest": D0, "format": "pate-ledger", "header": {...}, "prev": "", "seq": 0, "version": 1}
    {"digest": D1, "entries": [{...}, ...], "prev": D0, "seq": 1}
    {"digest": D2, "entries": [...], "prev": D1, "seq": 2}

``Dn`` is the SHA-256 (hex) of the record's canonical JSON without its ``digest`` key; that body holds
``prev = D(n-1)``, so each digest commits to the whole history before it. Floats are written with
Python's shortest round-trip repr (exact), and non-finite floats as ``-Infinity``, ``Infinity`` and
``NaN`` (Python's JSON extension), so ``-inf`` costs round-trip exactly.

Verification (:meth:`Ledger.open`) walks the chain and refuses, naming the file and the byte offset of
the offending line, any line that is not JSON, has the wrong sequence number (deleted or reordered
records), the wrong ``prev`` (a record before it was removed or changed) or the wrong digest (edited).
Nothing is ever repaired into a smaller epsilon. The only damage recovery handles is the one a crash in
the middle of :meth:`Ledger.append` leaves: bytes after the last newline (a torn last write). If they
form a complete, verified record that only lacks its newline, the record is kept and the newline
restored (keeping a charge never under-counts); otherwise they are dropped and the file truncated,
which is safe because ``append`` never returned for them, so their answers were never released.
``recovered_torn_bytes`` reports how many bytes were dropped.

Removed complete records (a restore from an older copy, a bad disk, a careless edit) leave a valid
chain that simply ends early, so the chain alone cannot show them. A separate **head record**
(``ledger.jsonl.head``, mode 0600) holds the sequence number and digest of the last record; it is
replaced atomically and fsync-ed after every append, and checked on every open: a ledger that ends
before its head, or whose record at the head's sequence number has another digest, is refused (or, for
a read-only open with ``tolerate_damage``, reported in :attr:`Ledger.damage`). A crash between an
append and the head's update leaves the head one record behind, which is consistent and is caught up on
the next writable open. The refusal happens before any torn bytes are cut, so a refused run never
truncates the evidence. What the head cannot catch: a ledger and head replaced together by older
copies, or rewritten whole by someone with write access (see docs/threat-model.md).

A record may carry one more key besides its entries: ``budget`` (``{"max_epsilon": x}``), written when
the user raises the budget of a spent workspace; :meth:`Ledger.budgets` lists them in order.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from pate.errors import PateError
from pate.io import json_default
from pate.records import LEDGER_KIND, LEDGER_VERSION

__all__ = [
    "HEAD_FORMAT",
    "LEDGER_FORMAT",
    "LEDGER_VERSION",
    "Ledger",
    "head_path",
    "is_private_file",
]

LEDGER_FORMAT = LEDGER_KIND  # the file's format is the run header's kind: one definition
HEAD_FORMAT = "pate-ledger-head"
_MODE = 0o600


def head_path(path: str | os.PathLike) -> Path:
    """The head record beside a ledger: ``<ledger>.head``."""
    path = Path(path)
    return path.with_name(path.name + ".head")


def _write_head(path: Path, seq: int, digest: str) -> None:
    """Atomically replace the head record (temp file, fsync, rename, fsync of the folder)."""
    target = head_path(path)
    body = {"digest": digest, "format": HEAD_FORMAT, "seq": seq, "version": LEDGER_VERSION}
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _MODE)
        try:
            os.fchmod(fd, _MODE)
            _write_all(fd, (_canonical(body) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:  # an interrupted update leaves the previous head, never a temporary
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _remove_stale_head_temporaries(path: Path) -> None:
    """Temporaries of the head record left by a killed writer (call with the ledger's lock held)."""
    target = head_path(path)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _read_head(path: Path) -> tuple[int, str] | None:
    """(seq, digest) of the head record, ``None`` if there is none; refuses a damaged one."""
    target = head_path(path)
    if not os.path.lexists(target):
        return None
    try:
        raw = json.loads(target.read_text(encoding="ascii"))
        if raw.get("format") != HEAD_FORMAT:
            raise ValueError("format")
        seq, digest = raw["seq"], raw["digest"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError("seq")
        if not isinstance(digest, str):
            raise ValueError("digest")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise PateError(
            f"{target}: not a valid ledger head record (edited or corrupted), expected "
            f"{{format: {HEAD_FORMAT!r}, seq, digest}}; refusing the ledger"
        ) from None
    return seq, digest


def _canonical(value: Any) -> str:
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=True,
        default=json_default,
    )


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(body).encode("ascii")).hexdigest()


def _normalise(value: Any, what: str, path: Path) -> Any:
    """The value as it will read back: JSON types only, numpy scalars and arrays converted."""
    try:
        return json.loads(_canonical(value))
    except (TypeError, ValueError) as exc:
        raise PateError(
            f"{path}: {what} is not JSON-serialisable ({exc}), expected JSON values"
        ) from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise PateError(
                f"{path}: the ledger is in use by another process, expected one run per workspace",
                exit_code=4,
            ) from None
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Ledger:
    """An open privacy ledger. Create with :meth:`create`, reopen (and verify) with :meth:`open`.

    Attributes:
        path: the ledger file.
        recovered_torn_bytes: bytes of a torn last write dropped when it was opened (0 if none).
        read_only: opened with ``read_only=True`` (no lock, no truncation, no appends).
    """

    def __init__(
        self,
        path: Path,
        fd: int,
        header: dict[str, Any],
        records: list[list[dict[str, Any]]],
        last_digest: str,
        size: int,
        *,
        budgets: list[dict[str, Any]] | None = None,
        recovered_torn_bytes: int = 0,
        read_only: bool = False,
        damage: str | None = None,
    ) -> None:
        self.path = path
        self._fd = fd
        self._header = header
        self._records = records
        self._budgets = list(budgets or [])
        self._last_digest = last_digest
        self._size = size
        self._broken: str | None = None
        self.recovered_torn_bytes = recovered_torn_bytes
        self.read_only = read_only
        self.damage = damage

    # -- construction --------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, header: dict[str, Any]) -> Ledger:
        """Create a new ledger whose first record is ``header``; refuse if ``path`` exists.

        The header line is written to a private temporary file, fsync-ed, and hard-linked into place
        (atomic, and failing if ``path`` exists), then the folder is fsync-ed: a ledger either does not
        exist or starts with a complete header.
        """
        path = Path(path)
        if not isinstance(header, dict):
            raise PateError(f"{path}: ledger header is a {type(header).__name__}, expected a dict")
        if not path.parent.is_dir():
            raise PateError(f"{path}: folder {path.parent} does not exist")
        if os.path.lexists(path):
            raise PateError(f"{path}: already exists, expected a new ledger path", exit_code=4)
        header = _normalise(header, "ledger header", path)
        body = {
            "format": LEDGER_FORMAT,
            "header": header,
            "prev": "",
            "seq": 0,
            "version": LEDGER_VERSION,
        }
        digest = _digest(body)
        line = (_canonical({**body, "digest": digest}) + "\n").encode("ascii")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
        fd = None
        try:  # from before the temporary exists: an interrupt anywhere removes it
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, _MODE)
            os.fchmod(fd, _MODE)
            _lock(fd, path)
            _write_all(fd, line)
            os.fsync(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise PateError(
                    f"{path}: already exists, expected a new ledger path", exit_code=4
                ) from None
            os.unlink(tmp)
            _fsync_dir(path.parent)
            _write_head(path, 0, digest)
        except BaseException:
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return cls(path, fd, header, [], digest, len(line))

    @classmethod
    def open(
        cls, path: str | os.PathLike, *, read_only: bool = False, tolerate_damage: bool = False
    ) -> Ledger:
        """Open and verify a ledger against its chain and its head record.

        Drops a torn last write (see the module docstring). Raises :class:`PateError` naming the file
        and byte offset for any other damage, and for a ledger that ends before its head record (records
        removed) -- before anything is truncated. With ``read_only`` the file is neither locked nor
        modified and :meth:`append` is refused; ``tolerate_damage`` (read-only only) reports a head
        mismatch in :attr:`damage` instead of raising, so that ``pate inspect`` can show it.
        """
        path = Path(path)
        if tolerate_damage and not read_only:
            raise PateError(f"{path}: tolerate_damage needs read_only, expected a read-only open")
        if not path.exists():
            raise PateError(f"{path}: no such ledger")
        if not path.is_file():
            raise PateError(f"{path}: is not a regular file, expected a ledger")
        flags = os.O_RDONLY if read_only else os.O_RDWR | os.O_APPEND
        fd = os.open(path, flags)
        try:
            if not read_only:
                _lock(fd, path)
                _remove_stale_head_temporaries(path)
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read()
            verified = cls._verify(path, data)
            header, records, budgets, digests, good, torn, restore = verified
            damage = cls._check_head(path, digests)
            if damage is not None and not tolerate_damage:
                raise PateError(damage)
            if not read_only and (torn or restore):
                if restore:
                    _write_all(fd, b"\n")
                else:
                    os.ftruncate(fd, good)
                os.fsync(fd)
            if not read_only and _read_head(path) != (len(digests) - 1, digests[-1]):
                _write_head(path, len(digests) - 1, digests[-1])
            size = len(data) if read_only else good + (1 if restore else 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(
            path,
            fd,
            header,
            records,
            digests[-1],
            size,
            budgets=budgets,
            recovered_torn_bytes=torn,
            read_only=read_only,
            damage=damage,
        )

    @staticmethod
    def _check_head(path: Path, digests: list[str]) -> str | None:
        """Why the verified chain (``digests[seq]``) disagrees with the head record, or ``None``."""
        head = _read_head(path)
        last = len(digests) - 1
        if head is None:
            if last == 0:
                return None  # a crash between creating the ledger and writing its head
            return (
                f"{path}: head record {head_path(path).name} is missing but the ledger has {last} "
                "records (records may have been removed, or the head deleted); refusing to under-count"
            )
        seq, digest = head
        if seq > last:
            return (
                f"{path}: the ledger ends at record {last} but its head record says {seq}: "
                f"{seq - last} complete record(s) were removed (restored from an older copy, or "
                "edited); refusing to under-count"
            )
        if digests[seq] != digest:
            return (
                f"{path}: record {seq} does not match the digest in its head record (replaced or "
                "edited); refusing the ledger"
            )
        return None

    @staticmethod
    def _verify(
        path: Path, data: bytes
    ) -> tuple[
        dict[str, Any],
        list[list[dict[str, Any]]],
        list[dict[str, Any]],
        list[str],
        int,
        int,
        bool,
    ]:
        """Walk the chain.

        Returns (header, records, budget events, digest of each record by seq, verified size, torn
        bytes, restore).
        """
        end = data.rfind(b"\n") + 1  # bytes after the last newline are a torn write
        tail = data[end:]
        lines = data[:end].split(b"\n")[:-1] if end else []
        header: dict[str, Any] | None = None
        records: list[list[dict[str, Any]]] = []
        budgets: list[dict[str, Any]] = []
        digests: list[str] = []
        previous = ""
        offset = 0

        def keep(record: dict[str, Any], seq: int) -> None:
            nonlocal header
            if seq == 0:
                header = record["header"]
            else:
                records.append(record["entries"])
                if "budget" in record:
                    budgets.append({"seq": seq, **record["budget"]})
            digests.append(record["digest"])

        for seq, raw in enumerate(lines):
            record = Ledger._check_line(path, raw, offset, seq, previous)
            keep(record, seq)
            previous = record["digest"]
            offset += len(raw) + 1
        restore = False
        if tail:
            try:
                record = Ledger._check_line(path, tail, offset, len(lines), previous)
            except PateError:
                record = None
            if record is not None:  # a complete record that lost only its newline: keep the charge
                restore = True
                keep(record, len(lines))
                offset += len(tail)
        if header is None:
            raise PateError(f"{path}: no complete header record at byte 0, expected a pate ledger")
        torn = 0 if restore else len(tail)
        return header, records, budgets, digests, offset, torn, restore

    @staticmethod
    def _check_line(path: Path, raw: bytes, offset: int, seq: int, previous: str) -> dict[str, Any]:
        where = f"{path}: record {seq} at byte {offset}"
        try:
            record = json.loads(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise PateError(
                f"{where} is not valid JSON (corrupted or edited), refusing the ledger"
            ) from None
        if not isinstance(record, dict):
            raise PateError(f"{where} is not a JSON object, refusing the ledger")
        if record.get("seq") != seq:
            raise PateError(
                f"{where} has sequence number {record.get('seq')!r}, expected {seq} "
                "(a record was deleted, inserted or reordered), refusing the ledger"
            )
        if record.get("prev") != previous:
            raise PateError(
                f"{where} does not chain to the record before it (a record was removed or edited), "
                "refusing the ledger"
            )
        digest = record.pop("digest", None)
        if digest != _digest(record):
            raise PateError(
                f"{where} fails its SHA-256 digest (edited or corrupted), refusing the ledger"
            )
        record["digest"] = digest
        if seq == 0:
            if record.get("format") != LEDGER_FORMAT or record.get("version") != LEDGER_VERSION:
                raise PateError(
                    f"{where}: format {record.get('format')!r} version {record.get('version')!r}, "
                    f"expected {LEDGER_FORMAT!r} version {LEDGER_VERSION}"
                )
            if not isinstance(record.get("header"), dict):
                raise PateError(f"{where} has no header object, expected the run's header")
        elif not isinstance(record.get("entries"), list):
            raise PateError(f"{where} has no entries list, expected a list of entries")
        elif "budget" in record and not (
            isinstance(record["budget"], dict)
            and isinstance(record["budget"].get("max_epsilon"), (int, float))
        ):
            raise PateError(f"{where} has a malformed budget, expected {{max_epsilon: number}}")
        return record

    # -- use -----------------------------------------------------------------------------------------

    @property
    def header(self) -> dict[str, Any]:
        """The run's header (a copy)."""
        return json.loads(_canonical(self._header))

    @property
    def last_seq(self) -> int:
        """Sequence number of the last record (0: only the header)."""
        return len(self._records)

    @property
    def last_digest(self) -> str:
        """Digest of the last record; store it with released answers to detect a cut-off ledger."""
        return self._last_digest

    def entries(self) -> list[dict[str, Any]]:
        """All entries of all records, in order."""
        return [entry for record in self._records for entry in record]

    def records(self) -> list[list[dict[str, Any]]]:
        """The entries grouped by record (one record per :meth:`append`)."""
        return [list(record) for record in self._records]

    def budgets(self) -> list[dict[str, Any]]:
        """Budget changes recorded after the header, in order: ``{"seq": n, "max_epsilon": x}``."""
        return [dict(budget) for budget in self._budgets]

    def append(
        self, entries: list[dict[str, Any]], *, budget: dict[str, Any] | None = None
    ) -> None:
        """Append one record holding ``entries``; return only once it is on disk (``os.fsync``).

        ``budget`` (``{"max_epsilon": x}``) records a change of the budget in force with the record.
        The head record is updated after the fsync (see the module docstring).

        If the write or the fsync fails, the ledger tries to cut the file back to its previous size,
        refuses further appends, and raises :class:`PateError`: the caller must not release the answers
        of ``entries``. (If the cut itself fails the record may survive, which over-counts: safe.)
        """
        if self.read_only:
            raise PateError(f"{self.path}: opened read-only, expected a writable ledger")
        if self._fd < 0:
            raise PateError(f"{self.path}: the ledger is closed")
        if self._broken is not None:
            raise PateError(
                f"{self.path}: an earlier append failed ({self._broken}); reopen the ledger"
            )
        if not isinstance(entries, (list, tuple)) or not all(isinstance(e, dict) for e in entries):
            raise PateError(f"{self.path}: ledger entries must be a list of dicts")
        normalised = _normalise(list(entries), "ledger entries", self.path)
        body: dict[str, Any] = {
            "entries": normalised,
            "prev": self._last_digest,
            "seq": len(self._records) + 1,
        }
        if budget is not None:
            budget = _normalise(budget, "ledger budget", self.path)
            if not isinstance(budget, dict) or not isinstance(
                budget.get("max_epsilon"), (int, float)
            ):
                raise PateError(
                    f"{self.path}: budget is {budget!r}, expected {{max_epsilon: number}}"
                )
            body["budget"] = budget
        digest = _digest(body)
        line = (_canonical({**body, "digest": digest}) + "\n").encode("ascii")
        found = os.fstat(self._fd).st_size
        if found != self._size:
            raise PateError(
                f"{self.path}: file size is {found} bytes, expected {self._size} "
                "(written by someone else), refusing to append"
            )
        try:
            _write_all(self._fd, line)
            os.fsync(self._fd)
        except OSError as exc:
            self._broken = str(exc)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
                os.fsync(self._fd)
            raise PateError(
                f"{self.path}: append failed ({exc}); the answers of this batch must not be released"
            ) from None
        self._records.append(normalised)
        if budget is not None:
            self._budgets.append({"seq": body["seq"], **budget})
        self._last_digest = digest
        self._size += len(line)
        _write_head(self.path, body["seq"], digest)

    def close(self) -> None:
        """Release the lock and the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, records={len(self._records)})"


def is_private_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is readable and writable by its owner only (mode 0600 or stricter)."""
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
