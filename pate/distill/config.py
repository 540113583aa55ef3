"""The job of ``label-and-distill``: every option of the stage, validated, with its default.

Imports no JAX, so that the command line takes its defaults and choices from here quickly.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from pate.aggregate import MECHANISMS, AggregatorConfig, aggregator_config
from pate.distill.selection import SelectionConfig
from pate.errors import PateError
from pate.labeling import BudgetConfig
from pate.model_ref import REFERENCE_FORM, is_model_reference, is_well_formed
from pate.student_config import STUDENT_METHODS, StudentConfig

STUDENT_MODELS = ("auto", "mlp", "cnn", "cnn-medium", "cnn-small")
AGGREGATORS = MECHANISMS  # the choices of `aggregator`, as pate.aggregate defines them


@dataclass(frozen=True)
class DistillJob:
    """Everything ``label-and-distill`` needs, validated; every default of the stage lives here.

    Paths: ``teachers`` (the private teachers folder), ``public`` (the unlabeled public set),
    ``workspace`` (private: votes and ledger), ``out`` (the release), ``test`` (optional, labelled).
    The aggregator is ``aggregator`` with its parameters; unset Confident-GNMax parameters default by
    :func:`pate.aggregate.confident_gnmax_defaults`. ``warmup_queries`` (Interactive-GNMax) defaults to
    a third of the queries considered. ``budget`` says when to stop and how epsilon is computed;
    ``student`` how the student is fitted (its ``method`` is replaced by ``student_method``).
    ``student_model`` is one of :data:`STUDENT_MODELS` or ``"package.module:factory"``, the user's
    flax module (:mod:`pate.model_ref`; only its form is checked here): the student bundle then names
    it, and loading the bundle needs that module importable.
    ``force`` replaces another run's release (never a folder holding a ledger); ``raise_budget``
    accepts a larger ``budget.max_epsilon`` than the workspace's budget in force.
    ``query_selection`` is ``"order"`` (the public set in its order) or ``"uncertainty"``: rounds of
    ``selection_batch`` queries, each chosen from the public features and the labels released so
    far by a cheap model's uncertainty and the classes still thin (:mod:`pate.distill.selection`,
    seeded by ``selection_seed``; public, costs no privacy, not with Interactive-GNMax).
    """

    teachers: str | os.PathLike
    public: str | os.PathLike
    workspace: str | os.PathLike
    out: str | os.PathLike
    test: str | os.PathLike | None = None
    aggregator: str = "gnmax"
    sigma: float = 40.0
    scale: float = 20.0
    threshold: float | None = None
    sigma1: float | None = None
    sigma2: float | None = None
    student_confidence: float = 0.9
    warmup_queries: int | None = None
    budget: BudgetConfig = BudgetConfig()
    noise_seed: int | None = None
    student: StudentConfig = StudentConfig()
    student_method: str = "auto"
    student_model: str = "auto"
    student_hidden: tuple[int, ...] | None = None
    batch_queries: int = 32
    force: bool = False
    raise_budget: bool = False
    query_selection: str = "order"
    selection_batch: int = 256
    selection_seed: int = 0

    def __post_init__(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise PateError(f"Expected aggregator={self.aggregator!r} in {', '.join(AGGREGATORS)}.")
        if self.student_method not in ("auto", *STUDENT_METHODS):
            raise PateError(
                f"Expected student_method={self.student_method!r} in auto, "
                f"{', '.join(STUDENT_METHODS)}."
            )
        if is_model_reference(self.student_model):
            if not is_well_formed(self.student_model):
                raise PateError(
                    f"Expected student_model={self.student_model!r} as {REFERENCE_FORM} (dotted "
                    "Python names on both sides of one ':')."
                )
        elif self.student_model not in STUDENT_MODELS:
            raise PateError(
                f"Expected student_model={self.student_model!r} in {', '.join(STUDENT_MODELS)} or "
                f"a model factory {REFERENCE_FORM}."
            )
        if self.batch_queries < 1:
            raise PateError(f"Expected batch_queries={self.batch_queries} >= 1.")
        self.selection_config()  # refuses a bad `query_selection` or `selection_batch`
        if self.query_selection != "order" and self.aggregator == "interactive-gnmax":
            raise PateError(
                f"`query_selection` {self.query_selection!r} is not available with `aggregator` "
                "interactive-gnmax (its student already decides which queries the teachers answer); "
                "use `query_selection` order"
            )
        if self.warmup_queries is not None and self.warmup_queries < 1:
            raise PateError(f"Expected warmup_queries={self.warmup_queries} >= 1.")
        if self.student_hidden is not None and not all(w >= 1 for w in self.student_hidden):
            raise PateError(f"Expected student_hidden={self.student_hidden} of widths >= 1.")
        for name in ("teachers", "public", "workspace", "out"):
            if not str(getattr(self, name)):
                raise PateError(f"Expected {name} to be a path, got an empty string.")
        # Build the aggregator once with a placeholder teacher count to refuse bad parameters now.
        self.aggregator_config(num_teachers=1)

    def public_configuration(self) -> dict[str, Any]:
        """The options of the job that may be published with the release: every field but the
        paths (which may name private places) and the operational flags ``force`` and
        ``raise_budget``. All are configuration, chosen by the user, never computed from data.
        """
        values = dataclasses.asdict(self)
        for name in ("teachers", "public", "workspace", "out", "test", "force", "raise_budget"):
            values.pop(name)
        values["student"].pop("method")  # replaced by student_method
        if values["student_hidden"] is not None:
            values["student_hidden"] = list(values["student_hidden"])
        return values

    def selection_config(self) -> SelectionConfig:
        """How the queries are chosen (public configuration)."""
        return SelectionConfig(
            method=self.query_selection, batch=self.selection_batch, seed=self.selection_seed
        )

    def aggregator_config(self, num_teachers: int) -> AggregatorConfig:
        """The aggregator for ``num_teachers`` teachers (a public count)."""
        return aggregator_config(
            self.aggregator,
            num_teachers,
            sigma=self.sigma,
            scale=self.scale,
            threshold=self.threshold,
            sigma1=self.sigma1,
            sigma2=self.sigma2,
            student_confidence=self.student_confidence,
        )

    def warmup(self, num_public: int) -> int:
        """Interactive-GNMax's warm-up length (0 for the other aggregators)."""
        if self.aggregator != "interactive-gnmax":
            return 0
        if self.warmup_queries is not None:
            return self.warmup_queries
        considered = min(num_public, self.budget.max_queries or num_public)
        return max(1, considered // 3)
