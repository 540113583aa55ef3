"""The workspace of ``label-and-distill`` (private: mode 0700, files 0600).

``votes.h5`` (the raw vote histograms, Q x C, cached), ``ledger.jsonl`` and its head record (the
write-ahead privacy ledger, :mod:`pate.ledger`), and ``warnings.txt`` (warnings about the private data).
Nothing here may be published.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pate.errors import PateError
from pate.io import atomic_file, h5_create, open_h5

if TYPE_CHECKING:
    from pate.teachers import Teachers

VOTES_FILE = "votes.h5"
VOTES_FORMAT = "pate-votes"


def compute_or_load_votes(
    workspace: Path, teachers: Teachers, features: np.ndarray, public_sha: str
):
    """Votes of every teacher on every public record, cached in the workspace (private)."""
    path = workspace / VOTES_FILE
    if path.exists():
        with open_h5(path, "votes file") as handle:
            found = (handle.attrs.get("teachers_sha256"), handle.attrs.get("public_sha256"))
            if found != (teachers.sha256, public_sha):
                raise PateError(
                    f"{path}: votes belong to another run (other teachers or public data); use a new "
                    "`workspace`"
                )
            return handle["votes"][()]
    votes = teachers.votes(features)
    with atomic_file(path, private=True) as tmp:
        with h5_create(tmp) as handle:
            handle.attrs.update(
                {
                    "format": VOTES_FORMAT,
                    "version": 1,
                    "teachers_sha256": teachers.sha256,
                    "public_sha256": public_sha,
                    "num_teachers": teachers.num_teachers,
                }
            )
            handle.create_dataset("votes", data=votes)
    return votes


PRIVATE_NOTES_FILE = "warnings.txt"


def write_private_notes(workspace: Path, notes: list[str]) -> None:
    """Keep warnings about the private data in the workspace (0600); never in the release."""
    path = workspace / PRIVATE_NOTES_FILE
    if not notes:
        return
    with atomic_file(path, private=True) as tmp:
        tmp.write_text("".join(f"{note}\n" for note in notes))
