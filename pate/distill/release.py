"""The release folder: what it holds, reading it back, and what may replace it.

A release is public. Every value in it is a function of the public inputs, the configuration, the
run's random id or the noisy answers (docs/release.md lists each field and why it is public).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pate.errors import PateError
from pate.io import atomic_file, h5_create, ledger_inside, open_h5, require_format
from pate.labeling import read_header
from pate.ledger import Ledger

LABELS_FORMAT = "pate-labels"
REPORT_FILE = "privacy.json"
LABELS_FILE = "labels.h5"
STUDENT_FILE = "student.h5"


def write_labels(path: Path, ids: np.ndarray, labels: np.ndarray, class_names) -> None:
    """The released noisy labels: public query indices and their labels."""
    with atomic_file(path) as tmp:
        with h5_create(tmp) as handle:
            handle.attrs["format"] = LABELS_FORMAT
            handle.attrs["version"] = 1
            if class_names:
                handle.attrs["class_names"] = list(class_names)
            handle.create_dataset("query_index", data=ids)
            handle.create_dataset("labels", data=labels)


def read_labels(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The released labels written by :func:`write_labels`: (public query indices, labels)."""
    with open_h5(path, "released labels file") as handle:
        require_format(handle, path, LABELS_FORMAT)
        return handle["query_index"][:].astype(np.int64), handle["labels"][:].astype(np.int64)


def release_record(release_dir: Path) -> tuple[str, int] | None:
    """(run id, queries seen) of an existing release, if any."""
    report = release_dir / "privacy.json"
    if not report.exists():
        return None
    try:
        raw = json.loads(report.read_text())
        return (str(raw["run_id"]), int(raw["queries_seen"]))
    except (ValueError, KeyError, TypeError):
        return None


def check_release_dir(
    release_dir: Path, ledger_path: Path, *, force: bool
) -> tuple[str, int] | None:
    """Refuse, before anything is charged, a release folder this run may not write.

    Returns ``(run_id, queries_seen)`` of an existing release of this workspace's run (which the run
    may replace), ``None`` if there is none. Another run's release needs ``force``; a folder holding a
    ledger is never replaced.
    """
    parent = release_dir.parent if str(release_dir.parent) else Path(".")
    if not parent.is_dir():
        raise PateError(
            f"{release_dir}: folder {parent} does not exist, expected an existing parent"
        )
    if not release_dir.exists():
        return None
    if not release_dir.is_dir():
        raise PateError(f"{release_dir}: is a file, expected a release folder")
    holding = ledger_inside(release_dir)
    if holding is not None:
        raise PateError(
            f"{release_dir}: holds a privacy ledger ({holding}); a release never replaces a "
            "workspace, expected another `out`",
            exit_code=4,
        )
    previous = release_record(release_dir)
    run_id = None
    if ledger_path.exists():
        with Ledger.open(ledger_path, read_only=True) as ledger:
            run_id = read_header(ledger).run_id
    if previous is not None and previous[0] == run_id:
        return previous
    if not force:
        raise PateError(
            f"{release_dir}: already exists and holds another run; pass `force` to replace it",
            exit_code=4,
        )
    return None
