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
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pate.aggregate import InteractiveGNMaxConfig
from pate.distill.config import STUDENT_MODELS, DistillJob
from pate.distill.release import (
    LABELS_FILE,
    REPORT_FILE,
    STUDENT_FILE,
    check_release_dir,
    write_labels,
)
from pate.distill.selection import RoundSelector
from pate.distill.workspace import VOTES_FILE, compute_or_load_votes, write_private_notes
from pate.errors import BudgetExhausted, PateError, PrivateDataWarning
from pate.export import public_schema, save_student
from pate.io import (
    Dataset,
    array_fingerprint,
    atomic_dir,
    ensure_private_dir,
    open_h5,
    read_dataset,
    refuse_overlap,
)
from pate.labeling import (
    LEDGER_FILE,
    LabelingOutcome,
    check_budget_covers_one,
    new_run_id,
    run_labeling,
)
from pate.model_ref import is_model_reference
from pate.models import ModelConfig, Preprocessing
from pate.noise import make_noise
from pate.outputs import check_output, output_lock
from pate.portable import PORTABLE_FILE, save_portable
from pate.records import QueryCharge, RunHeader
from pate.report import (
    SIGNIFICANCE,
    accuracy_interval,
    accuracy_text,
    beats_majority,
    majority_rate,
    privacy_report,
    write_report,
)
from pate.student import fit_student, resolve_method
from pate.teachers import load_teacher_individuals, load_teachers


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
    workspace: Path | None = None
    public_records: int | None = None
    test_records: int | None = None

    @property
    def labelled_text(self) -> str:
        """``57 of 420 public records labelled (stopped: budget)``: public quantities only."""
        report = self.report
        total = self.public_records if self.public_records is not None else report["queries_seen"]
        return (
            f"{report['queries_answered']} of {total} public records labelled "
            f"(stopped: {stop_text(report['stop_reason'])})"
        )

    @property
    def student_accuracy_text(self) -> str | None:
        """The student's test accuracy with its exact 95% interval, or None without a test set."""
        if self.student_accuracy is None or not self.test_records:
            return None
        return accuracy_text(self.student_accuracy, self.test_records)

    def summary(self) -> dict:
        """The run in plain values for the operator (the command's ``--json``). It holds the private
        data-dependent epsilon and private warnings: not for publication (the release is)."""
        report, outcome = self.report, self.outcome
        return {
            "release_dir": str(self.release_dir),
            "workspace": str(self.workspace),
            "epsilon": report["epsilon"],
            "delta": report["delta"],
            "mechanism": report["mechanism"],
            "labelled": self.labelled_text,
            "public_records": self.public_records,
            "queries_seen": report["queries_seen"],
            "queries_answered": report["queries_answered"],
            "resumed_queries": outcome.resumed_queries,
            "stop_reason": report["stop_reason"],
            "epsilon_data_dependent_private": outcome.spent.epsilon_data_dependent,
            "student_method": report["student"]["method"],
            "student_model": report["student"]["model"],
            "student_test_accuracy": self.student_accuracy,
            "student_test_interval": report.get("student_test_interval"),
            "student_beats_majority": report.get("student_beats_majority"),
            "test_records": self.test_records,
            "test_majority_rate": report.get("test_majority_rate"),
            "label_accuracy": self.label_accuracy,
            "private": report["private"],
            "warnings": self.warnings,
            "private_warnings": self.private_warnings,
        }


#: How the summary says each stop reason (``pate.labeling``'s words -> the user's).
STOP_TEXT = {"budget": "budget", "public set exhausted": "all asked", "max queries": "max queries"}


def stop_text(reason: str) -> str:
    """The stop reason as the summary says it: budget, all asked or max queries."""
    return STOP_TEXT.get(reason, reason)


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

    ``auto``: ``cnn-medium`` for images (a quarter of the ``cnn``'s arithmetic; BENCHMARKS.md has
    its MNIST figures); for tabular data an MLP with the teachers' widths when the
    teachers are MLPs on the same features, else ``hidden`` or (256, 256). ``package.module:factory``:
    the user's module (``ModelConfig(kind="custom")``: imported and checked here; ``hidden`` unused).
    """
    if is_model_reference(kind):
        return ModelConfig(
            kind="custom",
            factory=kind,
            input_shape=tuple(feature_shape),
            num_classes=num_classes,
            hidden=(),
        )
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


def label_and_distill(job: DistillJob, *, on_batch=None, on_phase=None) -> DistillResult:
    """Run the whole stage (:func:`_label_and_distill`) after the output policy, holding the
    workspace for the run.

    The policy (:func:`pate.outputs.check_output`) runs before anything is read or charged: the
    workspace and the release apart from every input and outside every run folder; the workspace a
    workspace, an empty folder or a new one (made with mode 0700; an existing folder keeps its
    permissions); the release a release or a new folder; both writable. Then a second run on the same
    workspace refuses at once (exit code 4) rather than training a duplicate student.
    """
    inputs = {"teachers": job.teachers, "public": job.public, "test": job.test}
    check_output(
        job.workspace,
        kinds=("workspace",),
        folder=True,
        inputs=inputs,
        private=True,
        exists_ok=True,
        name="workspace",
    )
    check_output(job.out, kinds=("release",), folder=True, inputs=inputs, exists_ok=True)
    with output_lock(job.workspace, "label-and-distill"):
        return _label_and_distill(job, on_batch=on_batch, on_phase=on_phase)


def _label_and_distill(job: DistillJob, *, on_batch=None, on_phase=None) -> DistillResult:
    """Run the whole stage; see the module docstring for what is written where.

    Every check that can fail on public facts (paths and their overlap, the release folder, shapes and
    label spaces of the inputs, the options) runs before the first query is charged. The release holds
    only functions of the public inputs, the configuration, the run's random id and the noisy answers
    (docs/release.md); warnings about the private data go to :attr:`DistillResult.private_warnings` and
    the workspace's ``warnings.txt``, never to the release.

    The student is trained by :func:`pate.student.fit_student` on the public features, the released
    labels and the indices of the answered rows only (no teacher, vote or private record), with
    ``job.student_method`` and the architecture ``job.student_model`` (see
    :func:`student_model_config`). ``on_batch(queries_done, spent)`` is called after each charged batch;
    ``on_phase(name, total)`` when a phase starts: ``computing votes`` (compiling the teachers and
    running them on the public set; ``loading votes`` when the workspace has them), ``answering
    queries`` (``total``: the most queries that may be asked), ``training student``, ``writing
    release``.
    """
    phase = on_phase or (lambda name, total=None: None)
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
    previous = check_release_dir(release_dir, ledger_path, force=force)

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
    write_private_notes(workspace, private_notes)
    public_sha = array_fingerprint(public.features, public.individual_id.astype(str))
    cached = (workspace / VOTES_FILE).exists()
    phase("loading votes" if cached else "computing votes", None)
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
        selection=None if job.query_selection == "order" else job.selection_config().to_dict(),
    )
    choose_queries = None
    if job.query_selection != "order":
        # Public inputs only: the public features and the configuration; the chooser then sees the
        # released labels (pate.distill.selection), never the votes.
        choose_queries = RoundSelector(
            public.features, teachers.num_classes, job.selection_config()
        )

    def student_probs_fn(entries: list[QueryCharge]) -> np.ndarray:
        ids = np.array([e.q for e in entries if e.answered], dtype=np.int64)
        labels = np.array([e.label for e in entries if e.answered], dtype=np.int64)
        model = fit_student(
            public.features, ids, labels, model_config, student_config, preprocessing=preprocessing
        )
        return model.probabilities(public.features)

    phase("answering queries", min(job.budget.max_queries or len(public), len(public)))
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
        choose_queries=choose_queries,
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
            "lower `threshold` or raise `max_epsilon`"
        )

    ids, labels = outcome.answered_ids, outcome.answered_labels
    phase("training student", None)
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
    report["configuration"] = job.public_configuration()
    report["public_records"] = len(public)
    report["student"] = {
        "method": student_config.method,
        "model": model_config.factory or model_config.kind,
        "steps": student_config.steps,
    }
    student_accuracy = None
    public_notes: list[str] = []
    if test is not None:
        student_accuracy = student.accuracy(test.features, test.labels)
        majority = majority_rate(test.labels, teachers.num_classes)
        n = len(test.labels)
        beats = beats_majority(student_accuracy, n, majority)
        report["student_test_accuracy"] = student_accuracy
        report["student_test_interval"] = list(accuracy_interval(student_accuracy * n, n))
        report["student_beats_majority"] = beats
        report["test_records"] = n
        report["test_majority_rate"] = majority
        if not beats:
            public_notes.append(
                f"the student's test accuracy {accuracy_text(student_accuracy, n)} does not beat "
                f"always predicting the test set's most common class ({majority:.4f}) "
                f"significantly (one-sided exact binomial test at {SIGNIFICANCE:.0%}); it may "
                "have learned nothing useful: more answers (a larger budget, more teachers) or "
                "better teachers are needed"
            )
    same_run = previous is not None and previous[0] == outcome.run_id
    phase("writing release", None)
    with atomic_dir(release_dir, force=force or same_run) as tmp:
        write_labels(tmp / LABELS_FILE, ids, labels, class_names)
        save_student(
            tmp / STUDENT_FILE,
            student,
            class_names=class_names,
            privacy=report,
            statement=report["statement"],
            schema=public_schema(public_path),
        )
        write_report(tmp / REPORT_FILE, report)
        save_portable(tmp / PORTABLE_FILE, student, public.features.dtype)
    label_accuracy = _label_accuracy(public_path, ids, labels)
    for note in private_notes:
        warnings.warn(note, PrivateDataWarning, stacklevel=2)
    return DistillResult(
        outcome,
        report,
        release_dir,
        student_accuracy,
        label_accuracy,
        public_notes,
        private_notes,
        workspace,
        public_records=len(public),
        test_records=None if test is None else len(test.labels),
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


def _label_accuracy(public_path, ids: np.ndarray, labels: np.ndarray) -> float | None:
    """Accuracy of the released labels against ground truth kept for experiments (if the file has it)."""
    with open_h5(public_path, "dataset file") as handle:
        if "evaluation_labels" not in handle or len(ids) == 0:
            return None
        truth = handle["evaluation_labels"][()]
    return float((truth[ids] == labels).mean())
