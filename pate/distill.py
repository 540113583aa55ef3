"""``label-and-distill`` as a library call: votes -> noisy answers (charged first) -> student -> release.

Folders:

* the **workspace** (private, mode 0700, files 0600): ``votes.h5`` (the raw vote histograms, Q x C)
  and ``ledger.jsonl`` (the write-ahead privacy ledger);
* the **release** (public): ``student.h5`` (the student bundle), ``labels.h5`` (the noisy answers:
  query indices and labels) and ``privacy.json`` (the report). Every value there is a function of the
  public inputs, the configuration, the run's random id or the noisy answers (docs/release.md lists each
  field and why it is public). The workspace's ``warnings.txt`` keeps warnings about the private data.

The release is rebuilt from the ledger, so a run killed at any moment and then resumed releases exactly
the answers it paid for, none twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pate.aggregate import AggregatorConfig, InteractiveGNMaxConfig, aggregator_config
from pate.errors import BudgetExhausted, PateError
from pate.export import save_student
from pate.io import (
    Dataset,
    array_fingerprint,
    atomic_dir,
    atomic_file,
    ensure_private_dir,
    open_h5,
    read_dataset,
    refuse_overlap,
    require_format,
)
from pate.labeling import (
    LEDGER_FILE,
    BudgetConfig,
    LabelingOutcome,
    check_budget_covers_one,
    new_run_id,
    read_header,
    run_labeling,
)
from pate.ledger import Ledger
from pate.models import ModelConfig, Preprocessing
from pate.noise import make_noise
from pate.records import QueryCharge, RunHeader
from pate.report import privacy_report, write_report
from pate.student import (
    STUDENT_METHODS,
    StudentConfig,
    TrainedModel,
    fit_model,
    fit_student,
    resolve_method,
)
from pate.teachers import Teachers, load_teacher_individuals, load_teachers

VOTES_FILE = "votes.h5"
VOTES_FORMAT = "pate-votes"
LABELS_FORMAT = "pate-labels"


@dataclass
class DistillResult:
    """What :func:`label_and_distill` produced.

    ``warnings`` may be shown anywhere; ``private_warnings`` speak about the private data (for example
    how many public individuals also appear in it): show them to the operator only, never publish them.
    """

    outcome: LabelingOutcome
    report: dict
    release_dir: Path
    student_accuracy: float | None
    label_accuracy: float | None
    warnings: list[str] = field(default_factory=list)
    private_warnings: list[str] = field(default_factory=list)


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
                    "--workspace"
                )
            return handle["votes"][()]
    votes = teachers.votes(features)
    with atomic_file(path, private=True) as tmp:
        with h5py.File(tmp, "w") as handle:
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


STUDENT_MODELS = ("auto", "mlp", "cnn", "cnn-medium", "cnn-small")
DEFAULT_STUDENT_HIDDEN = (256, 256)


def student_model_config(
    kind: str,
    feature_shape: tuple[int, ...],
    num_classes: int,
    *,
    teachers_model: ModelConfig | None = None,
    hidden: tuple[int, ...] | None = None,
) -> ModelConfig:
    """The student's architecture, chosen from the public data's shape (never from private data).

    ``auto``: ``cnn-medium`` for images (a quarter of the ``cnn``'s arithmetic; with VAT it reached
    98.7% on MNIST, BENCHMARKS.md); for tabular data an MLP with the teachers' widths when the
    teachers are MLPs on the same features, else ``hidden`` or (256, 256).
    """
    if kind not in STUDENT_MODELS:
        raise PateError(f"Expected student model={kind!r} in {', '.join(STUDENT_MODELS)}.")
    feature_shape = tuple(feature_shape)
    if kind == "auto":
        kind = "cnn-medium" if len(feature_shape) == 3 else "mlp"
    if hidden is None:
        same = (
            teachers_model is not None
            and teachers_model.kind == kind
            and tuple(teachers_model.input_shape) == feature_shape
        )
        hidden = teachers_model.hidden if same else DEFAULT_STUDENT_HIDDEN
    return ModelConfig(kind=kind, input_shape=feature_shape, num_classes=num_classes, hidden=hidden)


AGGREGATORS = ("gnmax", "lnmax", "confident-gnmax", "interactive-gnmax")


@dataclass(frozen=True)
class DistillJob:
    """Everything ``label-and-distill`` needs, validated; every default of the stage lives here.

    Paths: ``teachers`` (the private teachers folder), ``public`` (the unlabeled public set),
    ``workspace`` (private: votes and ledger), ``out`` (the release), ``test`` (optional, labelled).
    The aggregator is ``aggregator`` with its parameters; unset Confident-GNMax parameters default by
    :func:`pate.aggregate.confident_gnmax_defaults`. ``warmup_queries`` (Interactive-GNMax) defaults to
    a third of the queries considered. ``budget`` says when to stop and how epsilon is computed;
    ``student`` how the student is fitted (its ``method`` is replaced by ``student_method``).
    ``force`` replaces another run's release (never a folder holding a ledger); ``raise_budget``
    accepts a larger ``budget.max_epsilon`` than the workspace's budget in force.
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

    def __post_init__(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise PateError(f"Expected aggregator={self.aggregator!r} in {', '.join(AGGREGATORS)}.")
        if self.student_method not in ("auto", *STUDENT_METHODS):
            raise PateError(
                f"Expected student_method={self.student_method!r} in auto, "
                f"{', '.join(STUDENT_METHODS)}."
            )
        if self.student_model not in STUDENT_MODELS:
            raise PateError(
                f"Expected student_model={self.student_model!r} in {', '.join(STUDENT_MODELS)}."
            )
        if self.batch_queries < 1:
            raise PateError(f"Expected batch_queries={self.batch_queries} >= 1.")
        if self.warmup_queries is not None and self.warmup_queries < 1:
            raise PateError(f"Expected warmup_queries={self.warmup_queries} >= 1.")
        if self.student_hidden is not None and not all(w >= 1 for w in self.student_hidden):
            raise PateError(f"Expected student_hidden={self.student_hidden} of widths >= 1.")
        for name in ("teachers", "public", "workspace", "out"):
            if not str(getattr(self, name)):
                raise PateError(f"Expected {name} to be a path, got an empty string.")
        # Build the aggregator once with a placeholder teacher count to refuse bad parameters now.
        self.aggregator_config(num_teachers=1)

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


def label_and_distill(job: DistillJob, *, on_batch=None) -> DistillResult:
    """Run the whole stage; see the module docstring for what is written where.

    Every check that can fail on public facts (paths and their overlap, the release folder, shapes and
    label spaces of the inputs, the options) runs before the first query is charged. The release holds
    only functions of the public inputs, the configuration, the run's random id and the noisy answers
    (docs/release.md); warnings about the private data go to :attr:`DistillResult.private_warnings` and
    the workspace's ``warnings.txt``, never to the release.

    The student is trained by :func:`pate.student.fit_student` on the public features, the released
    labels and the indices of the answered rows only (no teacher, vote or private record), with
    ``job.student_method`` and the architecture ``job.student_model`` (see
    :func:`student_model_config`). ``on_batch(queries_done, spent)`` is called after each charged batch.
    """
    teachers_dir, public_path, test_path = job.teachers, job.public, job.test
    workspace, release_dir, budget = job.workspace, job.out, job.budget
    noise_seed, force = job.noise_seed, job.force
    refuse_overlap(
        inputs={"teachers": teachers_dir, "public": public_path, "test": test_path},
        outputs={"workspace": workspace, "out": release_dir},
    )
    private_notes: list[str] = []
    teachers = load_teachers(teachers_dir)
    public = read_dataset(public_path)
    if public.feature_shape != tuple(teachers.model.input_shape):
        raise PateError(
            f"{public_path}: features have shape {public.feature_shape}, expected "
            f"{tuple(teachers.model.input_shape)} as the teachers in {teachers_dir}"
        )
    check_label_space(public, teachers.num_classes, teachers.class_names, teachers_dir)
    test = None
    if test_path is not None:
        test = read_dataset(test_path, require_labels=True)
        if test.feature_shape != public.feature_shape:
            raise PateError(
                f"{test_path}: features have shape {test.feature_shape}, expected {public.feature_shape}"
            )
        check_label_space(test, teachers.num_classes, teachers.class_names, teachers_dir)
    class_names = public.class_names or tuple(str(c) for c in range(teachers.num_classes))
    overlap = np.intersect1d(load_teacher_individuals(teachers_dir), public.individual_id)
    if len(overlap):
        private_notes.append(
            f"{public_path}: {len(overlap)} individuals also appear in the private data; the public "
            "set should share no individuals with it (private: this count is not released)"
        )
    aggregator = job.aggregator_config(teachers.num_teachers)
    warmup_queries = job.warmup(len(public))
    check_budget_covers_one(aggregator, budget)
    workspace = Path(workspace)
    ledger_path = workspace / LEDGER_FILE
    release_dir = Path(release_dir)
    previous = _check_release_dir(release_dir, ledger_path, force=force)

    model_config = student_model_config(
        job.student_model,
        public.feature_shape,
        teachers.num_classes,
        teachers_model=teachers.model,
        hidden=job.student_hidden,
    )
    student_config = dataclasses.replace(
        job.student, method=resolve_method(job.student_method, public.feature_shape)
    )
    preprocessing = Preprocessing.fit(public.features)

    workspace = ensure_private_dir(workspace)
    _write_private_notes(workspace, private_notes)
    public_sha = array_fingerprint(public.features, public.individual_id.astype(str))
    votes = compute_or_load_votes(workspace, teachers, public.features, public_sha)
    noise = make_noise(noise_seed)
    interactive = isinstance(aggregator, InteractiveGNMaxConfig)
    with open_h5(teachers.path, "teachers file") as handle:
        unit = str(handle.attrs.get("unit_of_privacy", "individual"))
    header = RunHeader(
        run_id=new_run_id(),
        teachers_sha256=teachers.sha256,
        public_sha256=public_sha,
        votes_sha256=array_fingerprint(votes),
        num_queries=int(len(votes)),
        num_classes=int(votes.shape[1]),
        num_teachers=teachers.num_teachers,
        aggregator=aggregator.to_dict(),
        delta=budget.delta,
        max_epsilon=budget.max_epsilon,
        orders=budget.orders,
        conversion=budget.conversion,
        noise=noise.description,
        noise_private=bool(noise.private),
        noise_seed=noise_seed,
        stages={"warmup_queries": warmup_queries} if interactive else None,
        unit_of_privacy=unit,
    )

    def student_probs_fn(entries: list[QueryCharge]) -> np.ndarray:
        ids = np.array([e.q for e in entries if e.answered], dtype=np.int64)
        labels = np.array([e.label for e in entries if e.answered], dtype=np.int64)
        model = fit_student(
            public.features, ids, labels, model_config, student_config, preprocessing=preprocessing
        )
        return model.probabilities(public.features)

    outcome = run_labeling(
        votes,
        aggregator,
        budget,
        ledger_path,
        noise=noise,
        noise_seed=noise_seed,
        header=header,
        batch_queries=job.batch_queries,
        student_probs_fn=student_probs_fn if interactive else None,
        warmup_queries=warmup_queries,
        on_batch=on_batch,
        released=previous,
        raise_budget=job.raise_budget,
    )
    if outcome.new_queries == 0 and previous == (outcome.run_id, outcome.spent.queries_seen):
        raise BudgetExhausted(
            f"{ledger_path}: budget already spent (epsilon {outcome.spent.epsilon_data_independent:.4g} "
            f"of {outcome.max_epsilon:g}, stop: {outcome.stop_reason}); nothing answered, "
            f"the release in {release_dir} is complete"
        )
    if outcome.spent.queries_answered == 0:
        raise BudgetExhausted(
            f"no query was answered ({outcome.spent.queries_seen} seen, stop: {outcome.stop_reason}); "
            "lower --threshold or raise --max-epsilon"
        )

    ids, labels = outcome.answered_ids, outcome.answered_labels
    student = fit_student(
        public.features, ids, labels, model_config, student_config, preprocessing=preprocessing
    )
    report = privacy_report(
        header=outcome.header,
        spent=outcome.spent,
        stop_reason=outcome.stop_reason,
        include_private=False,
        max_epsilon_history=outcome.max_epsilon_history,
    )
    report["student"] = {
        "method": student_config.method,
        "model": model_config.kind,
        "steps": student_config.steps,
    }
    student_accuracy = None
    if test is not None:
        student_accuracy = student.accuracy(test.features, test.labels)
        report["student_test_accuracy"] = student_accuracy
    same_run = previous is not None and previous[0] == outcome.run_id
    with atomic_dir(release_dir, force=force or same_run) as tmp:
        write_labels(tmp / "labels.h5", ids, labels, class_names)
        save_student(
            tmp / "student.h5",
            student,
            class_names=class_names,
            privacy=report,
            statement=report["statement"],
        )
        write_report(tmp / "privacy.json", report)
    label_accuracy = _label_accuracy(public_path, ids, labels)
    for note in private_notes:
        warnings.warn(note, stacklevel=2)
    return DistillResult(
        outcome, report, release_dir, student_accuracy, label_accuracy, [], private_notes
    )


def check_label_space(
    data: Dataset, num_classes: int, class_names: tuple[str, ...], teachers_dir
) -> None:
    """Refuse a public or test set whose label space differs from the teachers'."""
    if data.num_classes != num_classes:
        raise PateError(
            f"{data.path}: attribute 'num_classes' is {data.num_classes}, expected {num_classes} as "
            f"the teachers in {teachers_dir}"
        )
    if data.class_names and class_names and tuple(data.class_names) != tuple(class_names):
        raise PateError(
            f"{data.path}: attribute 'class_names' is {list(data.class_names)}, expected "
            f"{list(class_names)} as the teachers in {teachers_dir}"
        )


def _check_release_dir(
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
    holding = _ledger_inside(release_dir)
    if holding is not None:
        raise PateError(
            f"{release_dir}: holds a privacy ledger ({holding}); a release never replaces a "
            "workspace, expected another --out",
            exit_code=4,
        )
    previous = _release_record(release_dir)
    run_id = None
    if ledger_path.exists():
        with Ledger.open(ledger_path, read_only=True) as ledger:
            run_id = read_header(ledger).run_id
    if previous is not None and previous[0] == run_id:
        return previous
    if not force:
        raise PateError(
            f"{release_dir}: already exists and holds another run; pass --force to replace it",
            exit_code=4,
        )
    return None


def _ledger_inside(folder: Path) -> Path | None:
    for root, _, files in os.walk(folder):
        if LEDGER_FILE in files:
            return Path(root) / LEDGER_FILE
    return None


PRIVATE_NOTES_FILE = "warnings.txt"


def _write_private_notes(workspace: Path, notes: list[str]) -> None:
    """Keep warnings about the private data in the workspace (0600); never in the release."""
    path = workspace / PRIVATE_NOTES_FILE
    if not notes:
        return
    with atomic_file(path, private=True) as tmp:
        tmp.write_text("".join(f"{note}\n" for note in notes))


def write_labels(path: Path, ids: np.ndarray, labels: np.ndarray, class_names) -> None:
    """The released noisy labels: public query indices and their labels."""
    with atomic_file(path) as tmp:
        with h5py.File(tmp, "w") as handle:
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


def _release_record(release_dir: Path) -> tuple[str, int] | None:
    """(run id, queries seen) of an existing release, if any."""
    report = release_dir / "privacy.json"
    if not report.exists():
        return None
    try:
        raw = json.loads(report.read_text())
        return (str(raw["run_id"]), int(raw["queries_seen"]))
    except (ValueError, KeyError, TypeError):
        return None


def _label_accuracy(public_path, ids: np.ndarray, labels: np.ndarray) -> float | None:
    """Accuracy of the released labels against ground truth kept for experiments (if the file has it)."""
    with open_h5(public_path, "dataset file") as handle:
        if "evaluation_labels" not in handle or len(ids) == 0:
            return None
        truth = handle["evaluation_labels"][()]
    return float((truth[ids] == labels).mean())


def train_baseline(
    private_path, test_path, model: ModelConfig, config: StudentConfig
) -> TrainedModel:
    """The non-private baseline: one model on all private records (for comparison only)."""
    private = read_dataset(private_path, require_labels=True)
    baseline = fit_model(private.features, private.labels, model, config)
    return baseline
