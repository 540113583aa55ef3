"""How teachers are trained and what one run of the stage is: every default and choice in one place.

:class:`TrainConfig` (the same for every teacher) and :class:`TeachersJob` (one run of the stage:
paths, model choice, checkpoint options) hold the defaults and choices that the command's options take
theirs from. This module imports neither JAX nor flax, so that ``pate --help`` stays fast.

Strategies (``TrainConfig.strategy``), all training the same teachers with the same key tree
(:mod:`pate.teachers.keys`):

* ``loop``: a Python loop over teachers and over steps of one jitted train step (one dispatch per step:
  the honest baseline of "train the teachers one after another");
* ``scan``: a loop over teachers of one jitted *epoch* (``lax.scan`` over its steps);
* ``vmap``: one jitted epoch ``vmap``-ed over a chunk of teachers (for convolutional models on the
  CPU, one ``vmap``-ed step per dispatch: XLA's CPU backend runs convolutions inside a ``lax.scan``
  body slower than at top level);
* ``fold``: ``vmap`` with convolutions as image patches x a per-teacher kernel, a batched matrix
  product (see :mod:`pate.models`); the same as ``vmap`` for dense models;
* ``public``: a feature extractor learned from the public unlabeled data only (:mod:`pate.extractor`),
  then per-teacher dense heads ``vmap``-ed over the teacher axis. The teachers are then extractor +
  head; the head is ``ModelConfig(kind="mlp", input_shape=(features,), hidden=...)``;
* ``auto``: ``public`` when a public set is given, else :data:`AUTO_STRATEGY` for the backend and
  model, chosen from ``scripts/bench_teachers.py`` (figures in BENCHMARKS.md, "Teachers at scale").

``model`` may also name the user's own flax module factory, ``"package.module:factory"`` (contract:
:mod:`pate.model_ref`). Such teachers train with ``loop``, ``scan``, ``vmap`` and ``fold`` (the same as
``vmap`` there: the module's convolutions are its own); ``auto`` picks ``loop`` on the CPU (safe
whatever the module costs) and ``vmap`` elsewhere. The ``public`` strategy trains dense heads on
extractor features, not the model asked for, and refuses a custom model. Only the form of the
reference is checked here (no import); the stage imports it.

Errors name the field they are about in backquotes, as `teacher_chunk`; the command maps each field
to its flag.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pate.errors import PateError
from pate.model_ref import REFERENCE_FORM, check_reference, is_model_reference

if TYPE_CHECKING:
    from pate.models import ModelConfig

STRATEGIES = ("auto", "loop", "scan", "vmap", "fold", "public")
#: Strategies that train a chunk's teachers as one program over the teacher axis.
VECTORISED = ("vmap", "fold", "public")
#: Teacher architectures the stage offers; ``auto``: ``cnn`` for images, ``mlp`` otherwise. A
#: reference ``package.module:factory`` to the user's own module is accepted too.
TEACHER_MODELS = ("auto", "mlp", "cnn", "cnn-small")
#: Hidden widths when none are given: of an ``mlp`` teacher, and of a public-strategy head (linear).
DEFAULT_HIDDEN: tuple[int, ...] = (64,)
DEFAULT_HEAD_HIDDEN: tuple[int, ...] = ()
#: With ``teacher_chunk = 0``, a chunk holds as many teachers as fit in this many bytes of features
#: and parameters (with Adam's state).
CHUNK_MEMORY_BYTES = 256 * 2**20

#: ``strategy = "auto"`` without a public set: (backend, model kind) -> strategy, chosen from
#: ``scripts/bench_teachers.py`` on a 2-core x86 CPU (BENCHMARKS.md, "Teachers at scale"). On the CPU
#: a per-step loop beats every vectorised form for convolutions and for MLPs whose steps carry real
#: arithmetic; ``vmap`` wins where dispatch dominates a step: dense models up to
#: :data:`AUTO_VMAP_MAX_PARAMS` parameters. Other backends (GPU, TPU): ``vmap``. Kinds not listed
#: (``custom``: nothing is known of its cost) get ``loop`` on the CPU.
AUTO_STRATEGY: dict[tuple[str, str], str] = {
    ("cpu", "mlp"): "vmap",
    ("cpu", "cnn"): "loop",
    ("cpu", "cnn-small"): "loop",
}
#: Largest dense model for which ``auto`` picks ``vmap`` on the CPU (the measured crossover lies
#: between 784-64-10 and 784-128-10 MLPs; BENCHMARKS.md).
AUTO_VMAP_MAX_PARAMS = 64_000


@dataclass(frozen=True)
class TrainConfig:
    """How every teacher is trained (the same for all); stored in the teachers file as ``training``.

    The defaults are the command's (BENCHMARKS.md's figures were measured with them). ``devices``
    counts devices per process; ``teacher_chunk`` teachers are trained (and read from disk) together,
    0 sizing it from :data:`CHUNK_MEMORY_BYTES`. Neither changes what a teacher learns beyond float
    rounding.
    """

    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    strategy: str = "auto"
    devices: int = 1
    teacher_chunk: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise PateError(f"Expected epochs={self.epochs} >= 1.")
        if self.batch_size < 1:
            raise PateError(f"Expected batch_size={self.batch_size} >= 1.")
        if not (self.learning_rate > 0):
            raise PateError(f"Expected learning_rate={self.learning_rate} > 0.")
        if not (self.weight_decay >= 0):
            raise PateError(f"Expected weight_decay={self.weight_decay} >= 0.")
        if self.strategy not in STRATEGIES:
            raise PateError(f"Expected strategy={self.strategy!r} in {', '.join(STRATEGIES)}.")
        if self.devices < 1:
            raise PateError(f"Expected devices={self.devices} >= 1.")
        if self.teacher_chunk < 0:
            raise PateError(f"Expected teacher_chunk={self.teacher_chunk} >= 0.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclass(frozen=True)
class TeachersJob:
    """One run of the teachers stage (:func:`pate.teachers.train_teachers`).

    ``shards``: the ``pate-shards`` file; ``out``: the teachers folder to create (private), refused
    if it exists unless ``force``; ``test``: a labelled set for per-teacher accuracy; ``public``: the
    public unlabeled set the ``public`` strategy learns its extractor from. ``model`` is one of
    :data:`TEACHER_MODELS` or ``"package.module:factory"`` (the user's flax module, see
    :mod:`pate.model_ref`; it must stay importable to vote); ``hidden`` the MLP widths (``None``:
    :data:`DEFAULT_HIDDEN`, and for public-strategy heads :data:`DEFAULT_HEAD_HIDDEN`; ``()``:
    linear; unused by a custom model). With ``checkpoints``, progress
    is saved to ``checkpoint_dir`` (default ``OUT.checkpoints``) every ``checkpoint_every`` epochs
    (0: finished chunks only), a rerun resumes from it, and it is removed after success;
    ``checkpoint_dir`` is ignored without ``checkpoints``.
    """

    shards: Path
    out: Path
    test: Path | None = None
    public: Path | None = None
    model: str = "auto"
    hidden: tuple[int, ...] | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoints: bool = True
    checkpoint_dir: Path | None = None
    checkpoint_every: int = 5
    force: bool = False

    def __post_init__(self) -> None:
        for name in ("shards", "out", "test", "public", "checkpoint_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if self.hidden is not None:
            object.__setattr__(self, "hidden", tuple(int(width) for width in self.hidden))
            if any(width < 1 for width in self.hidden):
                raise PateError(f"`hidden`: {self.hidden}, expected positive widths or () (linear)")
        if is_model_reference(self.model):
            check_reference(self.model, "model")
        elif self.model not in TEACHER_MODELS:
            raise PateError(
                f"`model`: {self.model!r}, expected one of {', '.join(TEACHER_MODELS)} or a model "
                f"factory {REFERENCE_FORM}"
            )
        if not isinstance(self.train, TrainConfig):
            raise PateError(f"`train`: {type(self.train).__name__}, expected a TrainConfig")
        if self.checkpoint_every < 0:
            raise PateError(f"`checkpoint_every`: {self.checkpoint_every}, expected >= 0")
        check_public_strategy(self.train.strategy, public=self.public is not None)
        if self.custom_model and (self.train.strategy == "public" or self.public is not None):
            raise PateError(
                f"`model` {self.model!r}: the public strategy trains dense heads on extractor "
                "features, not a custom model; leave out `public` (strategy loop, scan, vmap or fold)"
            )

    @property
    def custom_model(self) -> bool:
        """Whether ``model`` names the user's own module (``package.module:factory``)."""
        return is_model_reference(self.model)

    @property
    def checkpoint_path(self) -> Path | None:
        """Where checkpoints go, or None without checkpoints."""
        if not self.checkpoints:
            return None
        return self.checkpoint_dir or Path(f"{str(self.out).rstrip(os.sep)}.checkpoints")


def check_public_strategy(strategy: str, *, public: bool) -> None:
    """A public set goes with the ``public`` strategy (or ``auto``), and ``public`` needs one."""
    if strategy == "public" and not public:
        raise PateError(
            "`strategy` public: needs `public`, a public unlabeled set to learn the extractor from"
        )
    if public and strategy not in ("public", "auto"):
        raise PateError(
            f"`public`: only used by `strategy` public or auto, found `strategy` {strategy}"
        )


def resolve_strategy(
    strategy: str, model: ModelConfig, backend: str | None = None, *, public: bool = False
) -> str:
    """The strategy ``auto`` stands for: ``public`` with a public set, else :data:`AUTO_STRATEGY`
    (``loop`` for dense models over :data:`AUTO_VMAP_MAX_PARAMS` parameters); ``backend`` defaults
    to JAX's. Other strategies are returned as they are, after :func:`check_public_strategy`."""
    check_public_strategy(strategy, public=public)
    if strategy != "auto":
        return strategy
    if public:
        return "public"
    if backend is None:
        import jax

        backend = jax.default_backend()
    if backend != "cpu":
        return "vmap"
    chosen = AUTO_STRATEGY.get((backend, model.kind), "loop")
    if chosen == "vmap" and parameter_count(model) > AUTO_VMAP_MAX_PARAMS:
        return "loop"
    return chosen


@functools.lru_cache(maxsize=64)
def parameter_count(model: ModelConfig) -> int:
    """Parameters of ``model`` (from shapes only; nothing is computed)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    dummy = jnp.zeros((1, *model.input_shape), jnp.float32)
    shapes = jax.eval_shape(lambda: model.build().init(jax.random.key(0), dummy))
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes)))
