"""Training the teacher ensemble: one teacher per shard, computed over a stacked teacher axis.

Teacher ``t``'s parameters are a function of its own shard, its own key and the public configuration
only (design rule 2; :mod:`.ensemble` says how, ``tests/test_teachers.py`` checks it bit for bit).

The package, one concern a module:

* :mod:`.config`       :class:`TrainConfig`, :class:`TeachersJob`, the strategies and every default
* :mod:`.keys`         the key tree and each teacher's batch order
* :mod:`.steps`        one teacher's jitted init, order, step and epoch; masked Adam
* :mod:`.runners`      a chunk of teachers, vectorised or one at a time (:class:`ChunkData` in,
  :class:`ChunkResult` out)
* :mod:`.mesh`         devices and processes the teacher axis is laid over
* :mod:`.checkpoints`  orbax checkpoints of a run, for resuming
* :mod:`.ensemble`     :func:`train_ensemble`, the loop over chunks
* :mod:`.shards`       reading (and re-verifying) the shards file
* :mod:`.votes`        predictions and vote histograms
* :mod:`.store`        the teachers file (:func:`save_teachers`, :func:`load_teachers`)
* :mod:`.stage`        :func:`train_teachers`: the stage as one call, as ``pate train-teachers`` runs it

Names are loaded on first use, so that importing :mod:`.config` (the command's defaults) does not
import JAX.
"""

from __future__ import annotations

from pate._lazy import lazy_exports

#: name -> (module, attribute): everything other modules, tests and scripts import from here.
_EXPORTS = {
    # config
    "AUTO_STRATEGY": ("config", "AUTO_STRATEGY"),
    "AUTO_VMAP_MAX_PARAMS": ("config", "AUTO_VMAP_MAX_PARAMS"),
    "CHUNK_MEMORY_BYTES": ("config", "CHUNK_MEMORY_BYTES"),
    "DEFAULT_HEAD_HIDDEN": ("config", "DEFAULT_HEAD_HIDDEN"),
    "DEFAULT_HIDDEN": ("config", "DEFAULT_HIDDEN"),
    "STRATEGIES": ("config", "STRATEGIES"),
    "TEACHER_MODELS": ("config", "TEACHER_MODELS"),
    "VECTORISED": ("config", "VECTORISED"),
    "TeachersJob": ("config", "TeachersJob"),
    "TrainConfig": ("config", "TrainConfig"),
    "resolve_strategy": ("config", "resolve_strategy"),
    # keys and steps
    "SHUFFLE_ROUNDS": ("keys", "SHUFFLE_ROUNDS"),
    "teacher_keys": ("keys", "teacher_keys"),
    "_shuffle_rows": ("keys", "shuffle_rows"),
    "_adam_init": ("steps", "adam_init"),
    "_masked_adam": ("steps", "masked_adam"),
    # runners, mesh
    "ChunkData": ("runners", "ChunkData"),
    "ChunkResult": ("runners", "ChunkResult"),
    "initialize_distributed": ("mesh", "initialize_distributed"),
    # ensemble
    "EnsembleResult": ("ensemble", "EnsembleResult"),
    "Progress": ("ensemble", "Progress"),
    "train_ensemble": ("ensemble", "train_ensemble"),
    # shards
    "Shards": ("shards", "Shards"),
    "ShardsFile": ("shards", "ShardsFile"),
    "fit_teacher_preprocessing": ("shards", "fit_teacher_preprocessing"),
    "load_shards": ("shards", "load_shards"),
    "open_shards": ("shards", "open_shards"),
    # votes
    "ensemble_predictions": ("votes", "ensemble_predictions"),
    "teacher_accuracy": ("votes", "teacher_accuracy"),
    "vote_histogram": ("votes", "vote_histogram"),
    # the teachers file
    "TEACHERS_FILE": ("store", "TEACHERS_FILE"),
    "TEACHERS_FORMAT": ("store", "TEACHERS_FORMAT"),
    "TEACHERS_VERSION": ("store", "TEACHERS_VERSION"),
    "Teachers": ("store", "Teachers"),
    "load_teacher_individuals": ("store", "load_teacher_individuals"),
    "load_teachers": ("store", "load_teachers"),
    "save_teachers": ("store", "save_teachers"),
    # the stage
    "TeachersResult": ("stage", "TeachersResult"),
    "train_teachers": ("stage", "train_teachers"),
}

__all__ = sorted(name for name in _EXPORTS if not name.startswith("_"))


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
