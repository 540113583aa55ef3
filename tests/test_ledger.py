"""Tests of pate.ledger: round trip, durability, tamper detection with offsets, torn-write recovery."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from pate.errors import PateError
from pate.ledger import Ledger, head_path, is_private_file

HEADER = {
    "mechanism": "gnmax",
    "sigma": 40.0,
    "delta": 1e-5,
    "noise": "os-csprng",
    "teachers": "ab12",
}


def batch(start: int, count: int = 2) -> list[dict]:
    return [
        {"query": q, "label": q % 10, "rdp_cost": 0.1 * q, "logq": -float(q) - 0.5}
        for q in range(start, start + count)
    ]


def filled(tmp_path: Path, records: int = 4) -> Path:
    path = tmp_path / "ledger.jsonl"
    with Ledger.create(path, HEADER) as ledger:
        for i in range(records):
            ledger.append(batch(10 * i))
    return path


def line_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets = [0]
    for i, byte in enumerate(data):
        if byte == ord("\n") and i + 1 < len(data):
            offsets.append(i + 1)
    return offsets


def test_round_trip_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    awkward = {
        "tenth": 0.1,
        "tiny": 5e-324,
        "third": 1 / 3,
        "minus_inf": -math.inf,
        "nan": math.nan,
        "big": 2**80,
        "numpy": [np.float32(0.25), np.int64(7), np.bool_(True)],
        "array": np.arange(3),
        "text": "é ∞",
    }
    with Ledger.create(path, HEADER) as ledger:
        ledger.append(batch(0))
        ledger.append([awkward])
        ledger.append([])
        assert ledger.last_seq == 3
        last = ledger.last_digest
    reopened = Ledger.open(path)
    assert reopened.header == HEADER
    assert reopened.recovered_torn_bytes == 0
    assert reopened.last_seq == 3 and reopened.last_digest == last
    entries = reopened.entries()
    assert entries[:2] == batch(0)
    value = entries[2]
    assert value["tenth"] == 0.1 and value["tiny"] == 5e-324 and value["third"] == 1 / 3
    assert value["minus_inf"] == -math.inf and math.isnan(value["nan"])
    assert (
        value["big"] == 2**80 and value["numpy"] == [0.25, 7, True] and value["array"] == [0, 1, 2]
    )
    assert value["text"] == "é ∞"
    assert [len(r) for r in reopened.records()] == [2, 1, 0]
    reopened.append(batch(100))
    reopened.close()
    assert len(Ledger.open(path, read_only=True).entries()) == 5


def test_file_is_private_and_ascii_json_lines(tmp_path: Path) -> None:
    path = filled(tmp_path, records=2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and is_private_file(path)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4
    first = json.loads(lines[0])
    assert first["format"] == "pate-ledger" and first["seq"] == 0 and first["header"] == HEADER
    assert [json.loads(x)["seq"] for x in lines[1:3]] == [1, 2]
    assert not list(tmp_path.glob(".*creating"))  # no temporary left behind


def test_append_fsyncs_before_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.jsonl"
    synced: list[tuple[bool, int]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((stat.S_ISDIR(info.st_mode), info.st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ledger = Ledger.create(path, HEADER)
    assert any(is_dir for is_dir, _ in synced), "the folder was not fsync-ed at creation"
    synced.clear()
    ledger.append(batch(0))
    size = path.stat().st_size
    assert synced[0] == (False, size), "append returned before the record was fsync-ed"
    head = head_path(path)
    # Then the head record (a file of its own size) and the folder it was renamed into.
    assert synced[1:] == [(False, head.stat().st_size), (True, synced[2][1])]
    ledger.close()


def test_a_failed_fsync_refuses_further_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger.create(path, HEADER)
    ledger.append(batch(0))
    size = path.stat().st_size

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(PateError, match="must not be released"):
        ledger.append(batch(2))
    monkeypatch.undo()
    assert path.stat().st_size == size  # cut back to the last durable record
    with pytest.raises(PateError, match="earlier append failed"):
        ledger.append(batch(4))
    ledger.close()
    assert len(Ledger.open(path).entries()) == 2


def test_bad_entries_are_refused_without_touching_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    with Ledger.create(path, HEADER) as ledger:
        size = path.stat().st_size
        with pytest.raises(PateError, match="not JSON-serialisable"):
            ledger.append([{"x": object()}])
        with pytest.raises(PateError, match="list of dicts"):
            ledger.append({"x": 1})  # type: ignore[arg-type]
        with pytest.raises(PateError, match="list of dicts"):
            ledger.append([1, 2])  # type: ignore[list-item]
        assert path.stat().st_size == size
        ledger.append(batch(0))
    assert len(Ledger.open(path).entries()) == 2


def test_create_refuses_an_existing_path(tmp_path: Path) -> None:
    path = filled(tmp_path, records=1)
    before = path.read_bytes()
    with pytest.raises(PateError, match="already exists"):
        Ledger.create(path, HEADER)
    assert path.read_bytes() == before
    with pytest.raises(PateError, match="does not exist"):
        Ledger.create(tmp_path / "missing" / "ledger.jsonl", HEADER)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = filled(tmp_path, records=1)
    first = Ledger.open(path)
    with pytest.raises(PateError, match="in use by another process"):
        Ledger.open(path)
    assert Ledger.open(path, read_only=True).last_seq == 1  # readers do not need the lock
    first.close()
    Ledger.open(path).close()


def test_edited_middle_line_is_refused_with_its_offset(tmp_path: Path) -> None:
    path = filled(tmp_path)
    offsets = line_offsets(path)
    data = path.read_bytes()
    edited = data.replace(b'"rdp_cost":1.0', b'"rdp_cost":0.0', 1)  # record 2 holds query 10
    assert edited != data and len(edited) == len(data)
    path.write_bytes(edited)
    with pytest.raises(PateError, match=rf"record 2 at byte {offsets[2]} fails its SHA-256 digest"):
        Ledger.open(path)


def test_edit_with_a_recomputed_digest_breaks_the_chain(tmp_path: Path) -> None:
    path = filled(tmp_path)
    lines = path.read_bytes().split(b"\n")
    record = json.loads(lines[2])
    record["entries"][0]["rdp_cost"] = 0.0
    del record["digest"]
    from pate.ledger import _canonical, _digest

    record["digest"] = _digest(record)
    lines[2] = _canonical(record).encode()
    path.write_bytes(b"\n".join(lines))
    offsets = line_offsets(path)
    with pytest.raises(PateError, match=rf"record 3 at byte {offsets[3]} does not chain"):
        Ledger.open(path)


def test_deleted_line_is_refused(tmp_path: Path) -> None:
    path = filled(tmp_path)
    lines = path.read_bytes().split(b"\n")
    offset = len(lines[0]) + len(lines[1]) + 2
    del lines[2]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(
        PateError, match=rf"record 2 at byte {offset} has sequence number 3, expected 2"
    ):
        Ledger.open(path)


def test_reordered_lines_are_refused(tmp_path: Path) -> None:
    path = filled(tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[1], lines[2] = lines[2], lines[1]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(PateError, match=r"record 1 at byte \d+ has sequence number 2, expected 1"):
        Ledger.open(path)


def test_garbage_in_a_complete_line_is_refused(tmp_path: Path) -> None:
    path = filled(tmp_path)
    offsets = line_offsets(path)
    data = bytearray(path.read_bytes())
    data[offsets[4] + 3] = 0  # a flipped byte in the last complete line, newline intact
    path.write_bytes(bytes(data))
    with pytest.raises(PateError, match=rf"record 4 at byte {offsets[4]} is not valid JSON"):
        Ledger.open(path)


def test_a_file_without_a_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"{}\n")
    with pytest.raises(PateError, match="record 0 at byte 0 has sequence number None"):
        Ledger.open(path)


def test_torn_last_line_is_dropped_and_truncated(tmp_path: Path) -> None:
    path = filled(tmp_path, records=3)
    intact = path.read_bytes()
    head_before = head_path(path).read_bytes()
    with Ledger.open(path) as ledger:
        ledger.append(batch(99))
    whole = path.read_bytes()
    torn = whole[
        : len(intact) + (len(whole) - len(intact)) // 2
    ]  # a crash in the middle of the write: the head was never updated
    path.write_bytes(torn)
    head_path(path).write_bytes(head_before)
    ledger = Ledger.open(path)
    assert ledger.recovered_torn_bytes == len(torn) - len(intact)
    assert path.read_bytes() == intact
    assert ledger.last_seq == 3 and len(ledger.entries()) == 6
    ledger.append(batch(99))  # appending after recovery continues the chain
    ledger.close()
    assert Ledger.open(path).last_seq == 4


def test_complete_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = filled(tmp_path, records=2)
    whole = path.read_bytes()
    path.write_bytes(whole[:-1])
    ledger = Ledger.open(path)
    assert ledger.recovered_torn_bytes == 0 and ledger.last_seq == 2
    assert path.read_bytes() == whole
    ledger.close()


def test_read_only_open_leaves_a_torn_file_alone(tmp_path: Path) -> None:
    path = filled(tmp_path, records=1)
    path.write_bytes(path.read_bytes() + b'{"digest":"ab')
    before = path.read_bytes()
    reader = Ledger.open(path, read_only=True)
    assert reader.recovered_torn_bytes == len(b'{"digest":"ab') and reader.last_seq == 1
    assert path.read_bytes() == before
    with pytest.raises(PateError, match="read-only"):
        reader.append(batch(0))


def test_foreign_or_empty_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(PateError, match="no complete header record"):
        Ledger.open(empty)
    with pytest.raises(PateError, match="no such ledger"):
        Ledger.open(tmp_path / "absent.jsonl")
    other = tmp_path / "other.jsonl"
    body = {"format": "something-else", "header": {}, "prev": "", "seq": 0, "version": 1}
    from pate.ledger import _canonical, _digest

    other.write_text(_canonical({**body, "digest": _digest(body)}) + "\n")
    with pytest.raises(PateError, match="format 'something-else'"):
        Ledger.open(other)


def test_appends_by_someone_else_are_detected(tmp_path: Path) -> None:
    path = filled(tmp_path, records=1)
    ledger = Ledger.open(path)
    with open(path, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(PateError, match="written by someone else"):
        ledger.append(batch(0))
    ledger.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_at_random_moments_never_loses_a_returned_append(tmp_path: Path) -> None:
    """A child appends and reports each returned append; SIGKILL it; the ledger must reopen cleanly and
    hold at least every record whose append had returned."""
    import random
    import signal
    import time

    path = tmp_path / "ledger.jsonl"
    Ledger.create(path, HEADER).close()
    rng = random.Random(2024)
    big_batch = batch(0, count=100)
    for _ in range(12):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: append until killed
            os.close(read_end)
            try:
                ledger = Ledger.open(path)
                while True:
                    ledger.append(big_batch)
                    os.write(write_end, b"%d\n" % ledger.last_seq)
            finally:
                os._exit(1)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            first = int(pipe.readline())  # the child is in its append loop
            time.sleep(rng.uniform(0.0, 0.01))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            reported = [first] + [int(x) for x in pipe.read().split()]
        reopened = Ledger.open(path)
        assert reopened.last_seq >= reported[-1]
        assert len(reopened.entries()) == 100 * reopened.last_seq
        reopened.close()


# -- the head record: removed complete records ---------------------------------------------------------


def test_removed_complete_records_are_refused_without_truncating(tmp_path: Path) -> None:
    path = filled(tmp_path, records=4)
    lines = path.read_bytes().split(b"\n")
    shortened = b"\n".join(lines[:-2]) + b"\n"  # the last complete record dropped (an older copy)
    path.write_bytes(shortened + lines[-2][:10])  # plus a torn tail, which must not be cut either
    before = path.read_bytes()
    with pytest.raises(PateError, match="ends at record 3 but its head record says 4"):
        Ledger.open(path)
    assert path.read_bytes() == before  # the evidence is left as found
    with pytest.raises(PateError, match=r"record\(s\) were removed"):
        Ledger.open(path, read_only=True)
    view = Ledger.open(path, read_only=True, tolerate_damage=True)
    assert view.last_seq == 3 and "1 complete record(s) were removed" in view.damage


def test_missing_or_damaged_head_is_refused(tmp_path: Path) -> None:
    path = filled(tmp_path, records=2)
    head = head_path(path)
    saved = head.read_bytes()
    assert stat.S_IMODE(head.stat().st_mode) == 0o600
    head.unlink()
    with pytest.raises(PateError, match="head record ledger.jsonl.head is missing"):
        Ledger.open(path)
    head.write_text("{not json")
    with pytest.raises(PateError, match="not a valid ledger head record"):
        Ledger.open(path)
    forged = json.loads(saved)
    forged["digest"] = "0" * 64
    head.write_text(json.dumps(forged))
    with pytest.raises(PateError, match="record 2 does not match the digest in its head record"):
        Ledger.open(path)
    head.write_bytes(saved)
    assert Ledger.open(path).last_seq == 2


def test_head_one_record_behind_is_caught_up(tmp_path: Path) -> None:
    """A crash after an append's fsync but before the head's update: consistent, then repaired."""
    path = filled(tmp_path, records=2)
    saved = head_path(path).read_bytes()
    with Ledger.open(path) as ledger:
        ledger.append(batch(50))
    head_path(path).write_bytes(saved)  # the head update was lost
    with Ledger.open(path) as ledger:
        assert ledger.last_seq == 3
    assert json.loads(head_path(path).read_text())["seq"] == 3


def test_budget_changes_are_recorded_in_order(tmp_path: Path) -> None:
    path = filled(tmp_path, records=1)
    with Ledger.open(path) as ledger:
        ledger.append([], budget={"max_epsilon": 4.5})
        ledger.append(batch(70))
        with pytest.raises(PateError, match="expected {max_epsilon: number}"):
            ledger.append([], budget={"max_epsilon": "lots"})
    assert Ledger.open(path).budgets() == [{"seq": 2, "max_epsilon": 4.5}]


def test_a_killed_head_update_leaves_no_temporary_after_the_next_open(tmp_path: Path) -> None:
    path = filled(tmp_path, records=1)
    stale = tmp_path / ".ledger.jsonl.head.999999.tmp"  # what SIGKILL mid-update would leave
    stale.write_text("{")
    Ledger.open(path, read_only=True).close()
    assert stale.exists()  # a reader never deletes anything
    Ledger.open(path).close()
    assert not stale.exists() and head_path(path).exists()


@pytest.mark.parametrize("moment", ["creating", "head"])
def test_an_interrupt_while_a_temporary_exists_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """SIGINT and SIGTERM raise at the first bytecode after a system call: here the one that creates
    the ledger's temporary (``.<ledger>.<pid>.creating``) or fsyncs the head's (``...head...tmp``)."""
    real_open, real_fsync = os.open, os.fsync

    def open_then_interrupt(target, *args, **kwargs):
        fd = real_open(target, *args, **kwargs)
        if str(target).endswith(".creating"):
            raise KeyboardInterrupt
        return fd

    def fsync_then_interrupt(fd):
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise KeyboardInterrupt

    if moment == "creating":
        monkeypatch.setattr(os, "open", open_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            Ledger.create(tmp_path / "ledger.jsonl", HEADER)
    else:
        path = filled(tmp_path)
        monkeypatch.setattr(os, "fsync", fsync_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            with Ledger.open(path) as ledger:
                ledger.append(batch(100))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
