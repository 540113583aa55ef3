"""Orbax checkpoints of a run: every finished chunk once, and the chunk in progress every few epochs.

Layout of ``directory`` (mode 0700: teacher parameters are private)::

    chunks/<c>/      finished chunk c: {"params", "mean", "std", "loss", "seconds"} and meta
    progress/<s>/    the chunk in progress, s = c * epochs + epochs done: {"params", "opt_state"}
                     (only the latest is kept)

Every checkpoint carries the run's ``fingerprint`` (shards, model, training, strategy, chunk size,
teachers, extractor); checkpoints of another run are refused rather than mixed in. A rerun with the same
inputs resumes from them and ends with the same parameters as an uninterrupted run (everything random
derives from the key tree and the epoch; :mod:`pate.teachers.keys`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pate.errors import PateError
from pate.io import ensure_private_dir


class Checkpoints:
    """The checkpoints of one run in ``directory``; ``epochs`` per chunk numbers progress steps."""

    def __init__(self, directory: str | os.PathLike, fingerprint: dict, epochs: int) -> None:
        import orbax.checkpoint as ocp

        self.ocp = ocp
        self.directory = Path(directory).absolute()
        self.fingerprint = fingerprint
        self.epochs = epochs
        if jax.process_index() == 0:
            # teacher parameters are private: a folder made here is 0700; an existing one keeps
            # its permissions (the tool never changes those of a folder it did not create)
            ensure_private_dir(self.directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
        self.progress = ocp.CheckpointManager(self.directory / "progress", options=options)
        self.chunks = ocp.CheckpointManager(
            self.directory / "chunks",
            options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False),
        )

    def _check(self, meta: dict) -> None:
        if meta.get("fingerprint") != self.fingerprint:
            raise PateError(
                f"{self.directory}: holds checkpoints of another run "
                f"({meta.get('fingerprint')}), expected {self.fingerprint}; delete it or pass "
                "another `checkpoint_dir`"
            )

    def has_finished(self) -> bool:
        return bool(self.chunks.all_steps())

    def finished(self, template: Any) -> dict[int, Any]:
        """Every finished chunk's state, by chunk index (``template``: their shapes)."""
        ocp = self.ocp
        out = {}
        for step in self.chunks.all_steps():
            restored = self.chunks.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()
                ),
            )
            self._check(restored.meta)
            out[step] = jax.tree_util.tree_map(np.asarray, restored.state)
        return out

    def save_finished(self, chunk: int, state: Any) -> None:
        ocp = self.ocp
        self.chunks.save(
            chunk,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave({"fingerprint": self.fingerprint}),
            ),
        )

    def latest(self, chunk: int, template: Any) -> tuple[int, Any] | None:
        """(epochs done, state) of ``chunk`` if its progress was saved."""
        ocp = self.ocp
        step = self.progress.latest_step()
        if step is None or (step - 1) // self.epochs != chunk:
            return None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        restored = self.progress.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        self._check(restored.meta)
        return step - chunk * self.epochs, restored.state

    def save_progress(self, chunk: int, epochs_done: int, state: Any) -> None:
        ocp = self.ocp
        self.progress.save(
            chunk * self.epochs + epochs_done,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave({"fingerprint": self.fingerprint}),
            ),
        )

    def close(self) -> None:
        self.progress.close()
        self.chunks.close()
