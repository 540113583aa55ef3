"""End-to-end canary audit in one run (``pate audit canaries``): a lower bound on the epsilon of a whole
release, from one real run of the pipeline, held against the release's own claim.

Reference: T. Steinke, M. Nasr, M. Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023
(arXiv:2305.08846). :mod:`pate.audit` audits the aggregator alone; this module audits everything
between the private data and the release (partition, teachers, aggregator, noise, ledger, student) in
the one way that needs no model of any stage: by planting individuals and guessing, from the release
only, which of them were there.

The game.

1. ``m`` canary individuals are built, each a new individual id with ``records`` identical records. A
   canary sits on its own public query: its records copy the features of one public record (``m``
   distinct records, so no two canaries target the same query) and carry a *canary label*, drawn at
   random among the classes other than the public record's ``evaluation_labels`` when the public file
   has them (a label an honest model is unlikely to give there), else among all classes.
2. Each canary is included independently with probability 1/2 (the secret *inclusion bits*,
   ``S_i``). The included ones are appended to the private data, and the real pipeline runs once:
   :func:`pate.partitioning.partition` (the keyed-hash partition of the job), the teachers, and
   label-and-distill with the real aggregator, noise and ledger, on the public set with the canary
   queries moved to its front (so that the budget reaches them; the order is the audit's choice and
   public).
3. Each canary is scored from the release only, by a score fixed before the run: ``1`` if the
   released label of its query is its canary label (``0`` if another label was released or the query
   was not answered), plus the released student's probability of the canary label at the query (so
   the score is in ``[0, 2]``; the student breaks the ties of the labels). The ``k`` highest scores are
   guessed "included", the ``k`` lowest "excluded", the rest abstain (ties are broken by a random
   order drawn independently of the bits). ``k`` is fixed before the run (default ``floor(0.4 m)``).

The bound. Let ``r = 2k`` guesses be made and ``v`` of them be correct. Theorem 3.1 of the paper: if
the pipeline is ``eps``-DP with respect to each canary (adding or removing one individual), then
``v`` is stochastically dominated by ``Binomial(r, e^eps / (1 + e^eps))``. For ``(eps, delta)``-DP,
Section 5 (Theorem 5.2 and Corollary 5.4 in the arXiv version; ``p_value_DP_audit`` of its
Appendix D)::

    P[v' >= v] <= f(v) + 2 m delta * max_{i = 1..v} (f(v - i) - f(v)) / i,
    f(t) = P[Binomial(r, q) >= t],  q = e^eps / (1 + e^eps)

is the p-value of ``v`` correct guesses under the hypothesis "the pipeline is ``(eps, delta)``-DP"
(:func:`p_value`, written from the paper's formula). The lower bound at ``confidence`` is the
smallest ``eps`` that the observed ``v`` does not reject at level ``1 - confidence``
(:func:`epsilon_lower_bound`): with probability at least ``confidence`` the pipeline's true epsilon
at ``delta`` is at least that. The claim tested is the release's ``privacy.json`` (``epsilon`` at its
``delta``): the verdict is FAIL, exit status 5 as for :mod:`pate.audit`, when the lower bound exceeds
it; a correct pipeline is reported FAIL with probability at most ``1 - confidence``.

The unit of privacy is the individual, so the bound holds for the PATE claim as made: a canary is one
individual, the keyed-hash partition puts all its records in one shard, so it changes one teacher, so
at most one vote of its query (and of any other). **Expect a lower bound near 0 for a correct
pipeline.** One-run audits are weak for PATE: one vote among hundreds, under noise of tens of votes,
moves the released label on the canary's query rarely, and the bound can never exceed the *ceiling*
(:attr:`CanaryAuditResult.ceiling`, the bound if every guess were right: about ``ln(r / 3)`` for
``r`` guesses at 95%, 3.4 for 100). The audit catches gross bugs (a partition that puts an
individual in many shards, noise far below the claim), not a slightly optimistic accountant: for
that, see :mod:`pate.audit`.

Privacy of the audit. The audit knows its secrets on purpose: the inclusion bits, canary labels,
queries, scores and guesses are written to ``secrets.json`` and the result to ``audit.json`` in the
audit's own folder (0700, files 0600), next to the run it made (``data/``, ``run/``), never into a
release. The release it made is a test artefact: it was trained on canaries.

The audit's randomness (queries, labels, bits, tie-breaking, the canary ids' token) comes from the
OS CSPRNG when ``seed=None`` (the default): nothing that rebuilds the secrets is printed or stored, so
the bits are known only from ``secrets.json``. With a ``seed`` (experiments) it all derives from the
seed, and the result says the audit is reproducible: whoever knows the seed knows the bits.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from scipy import stats

from pate.audit import AUDIT_FAILED_EXIT
from pate.errors import PateError

__all__ = [
    "AUDIT_FAILED_EXIT",
    "CanaryAuditResult",
    "CanaryConfig",
    "audit_canaries",
    "ceiling",
    "epsilon_lower_bound",
    "guesses",
    "p_value",
]

AUDIT_FILE = "audit.json"
SECRETS_FILE = "secrets.json"
_EPSILON_MAX = 60.0  # beyond this q = 1 - e^-60: no count of guesses can reject it
_GRID = 0.01  # the scan for the first eps not rejected (then bisection inside that step)


# ----------------------------------------------------------------------------------------------------
# Statistics (Steinke, Nasr, Jagielski 2023)


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """The p-value of ``v`` correct guesses among ``r`` (``m`` canaries, each included with
    probability 1/2) under the hypothesis "``(epsilon, delta)``-DP": ``f(v) + 2 m delta max_{i=1..v}
    (f(v-i) - f(v)) / i`` with ``f(t) = P[Binomial(r, q) >= t]``, ``q = e^eps / (1 + e^eps)``
    (Steinke et al. 2023, Theorem 3.1 for ``delta = 0``, Corollary 5.4 / Appendix D otherwise).

    >>> round(p_value(100, 10, 10, 0.0, 0.0), 6)  # ten right guesses of fair coins: 2^-10
    0.000977
    >>> p_value(100, 10, 5, 0.0, 0.0) > 0.5
    True
    """
    _check_counts(m, r, v)
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    if delta == 0.0 or v == 0:
        return min(1.0, beta)
    i = np.arange(1, v + 1)
    gaps = stats.binom.sf(v - i - 1, r, q) - beta  # P[v - i <= Binomial(r, q) < v]
    alpha = float(np.max(gaps / i))
    return min(1.0, beta + alpha * delta * 2.0 * m)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float) -> float:
    """The smallest ``eps`` that ``v`` correct guesses among ``r`` do not reject at level
    ``1 - confidence``: with probability at least ``confidence``, the audited mechanism is not
    ``(eps', delta)``-DP for any ``eps' <`` this value. 0 when even ``eps = 0`` is not rejected.

    The p-value grows with ``eps`` through ``f``; the ``delta`` term need not be monotone, so the
    first ``eps`` not rejected is found on a grid of step 0.01 from 0 (not by a bisection over the
    whole range), then refined by bisection inside that step.

    >>> round(epsilon_lower_bound(1000, 100, 100, 0.0, 0.95), 3)  # 100 of 100 right
    3.493
    >>> epsilon_lower_bound(1000, 100, 50, 1e-5, 0.95)
    0.0
    """
    _check_counts(m, r, v)
    if not 0.0 < confidence < 1.0:
        raise PateError(f"`confidence`: {confidence!r}, expected a number in (0, 1)")
    level = 1.0 - confidence
    if r == 0 or p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    previous = 0.0
    grid = np.arange(_GRID, _EPSILON_MAX + _GRID, _GRID)
    for eps in grid:
        if p_value(m, r, v, float(eps), delta) >= level:
            low, high = previous, float(eps)
            for _ in range(30):
                middle = (low + high) / 2.0
                if p_value(m, r, v, middle, delta) < level:
                    low = middle
                else:
                    high = middle
            return low
        previous = float(eps)
    return _EPSILON_MAX


def ceiling(m: int, r: int, delta: float, confidence: float) -> float:
    """The largest bound ``r`` guesses can give: every one right (the audit's own limit)."""
    return epsilon_lower_bound(m, r, r, delta, confidence)


def _check_counts(m: int, r: int, v: int) -> None:
    if not 0 <= v <= r <= m:
        raise PateError(f"expected 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")


def guesses(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """+1 ("included") for the ``k`` highest scores, -1 ("excluded") for the ``k`` lowest, 0
    (abstain) for the rest; ties broken by a random order from ``rng`` (never from the bits)."""
    scores = np.asarray(scores, dtype=np.float64)
    m = len(scores)
    if not 0 <= 2 * k <= m:
        raise PateError(f"`guesses`: {k} on each side, expected at most half of the {m} canaries")
    order = np.lexsort((rng.permutation(m), scores))  # ascending by score, random among ties
    out = np.zeros(m, dtype=np.int64)
    if k:
        out[order[:k]] = -1
        out[order[m - k :]] = 1
    return out


# ----------------------------------------------------------------------------------------------------
# Configuration and result


@dataclass(frozen=True)
class CanaryConfig:
    """The canaries and the test.

    Attributes:
        canaries: ``m``, canary individuals (each on its own public query; at most the public set).
        records: records of each canary (all on its query point).
        guesses: ``k``, guesses on each side (``None``: ``floor(0.4 m)``).
        confidence: probability that the lower bound holds.
        seed: the audit's randomness (``None``: the OS CSPRNG, no seed printed or stored).
    """

    canaries: int = 100
    records: int = 4
    guesses: int | None = None
    confidence: float = 0.95
    seed: int | None = None

    def __post_init__(self) -> None:
        for name, low in (("canaries", 2), ("records", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise PateError(f"`{name}`: {value!r}, expected an integer >= {low}")
        k = self.guesses
        if k is not None and (
            isinstance(k, bool)
            or not isinstance(k, (int, np.integer))
            or not 1 <= 2 * k <= self.canaries
        ):
            raise PateError(
                f"`guesses`: {k!r}, expected an integer from 1 to {self.canaries // 2} (half the "
                "canaries)"
            )
        c = self.confidence
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < 1:
            raise PateError(f"`confidence`: {c!r}, expected a number in (0, 1)")
        if self.seed is not None and (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, (int, np.integer))
            or self.seed < 0
        ):
            raise PateError(f"`seed`: {self.seed!r}, expected an integer >= 0")

    @property
    def k(self) -> int:
        return self.guesses if self.guesses is not None else max(1, (2 * self.canaries) // 5)


@dataclass(frozen=True)
class CanaryAuditResult:
    """What one end-to-end audit measured. ``release`` is the folder of the run it made."""

    config: CanaryConfig
    canaries: int
    included: int
    guesses: int
    correct: int
    epsilon_lower: float
    ceiling: float
    claimed_epsilon: float
    delta: float
    p_value_at_claim: float
    queries_answered: int
    canary_queries_answered: int
    canary_labels_released: int
    release: str
    seed: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.epsilon_lower <= self.claimed_epsilon

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def ratio(self) -> float:
        return self.epsilon_lower / self.claimed_epsilon if self.claimed_epsilon > 0 else math.inf

    def failure_message(self) -> str:
        if self.passed:
            return ""
        return (
            f"canary audit FAILED: lower bound {self.epsilon_lower:.4g} > claimed epsilon "
            f"{self.claimed_epsilon:.4g} at delta={self.delta:g} ({self.correct} of {self.guesses} "
            f"guesses right, {self.canaries} canaries, confidence {self.config.confidence:g}): the "
            "pipeline leaks more than its release claims"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "epsilon_lower": self.epsilon_lower,
            "claimed_epsilon": self.claimed_epsilon,
            "delta": self.delta,
            "ratio": self.ratio,
            "ceiling": self.ceiling,
            "confidence": self.config.confidence,
            "p_value_at_claim": self.p_value_at_claim,
            "canaries": self.canaries,
            "records_per_canary": self.config.records,
            "included": self.included,
            "guesses": self.guesses,
            "correct": self.correct,
            "queries_answered": self.queries_answered,
            "canary_queries_answered": self.canary_queries_answered,
            "canary_labels_released": self.canary_labels_released,
            "release": self.release,
            "seed": self.seed,
            "reproducible": self.seed is not None,
            "reference": "Steinke, Nasr, Jagielski, Privacy Auditing with One (1) Training Run, "
            "NeurIPS 2023",
            **self.extra,
        }


# ----------------------------------------------------------------------------------------------------
# The run

#: The stages the audit runs, by name; a test may pass broken ones (``stages=``).
Stage = Callable[[Any], Any]


def default_stages() -> dict[str, Stage]:
    from pate.distill import label_and_distill
    from pate.partitioning import partition
    from pate.teachers import train_teachers

    return {
        "partition": partition,
        "train_teachers": train_teachers,
        "label_and_distill": label_and_distill,
    }


def _evaluation_labels(path: Path, n: int) -> np.ndarray | None:
    with h5py.File(path, "r") as handle:
        if "evaluation_labels" not in handle:
            return None
        labels = np.asarray(handle["evaluation_labels"][()], dtype=np.int64)
    return labels if labels.shape == (n,) else None


def _canary_ids(private_ids: np.ndarray, public_ids: np.ndarray, m: int, token: str) -> np.ndarray:
    """``m`` new ids, in neither the private nor the public set."""
    if private_ids.dtype.kind in "iu" and public_ids.dtype.kind in "iu":
        start = int(max(private_ids.max(), public_ids.max())) + 1
        return np.arange(start, start + m, dtype=np.int64)
    ids = np.array([f"canary-{token}-{i}" for i in range(m)], dtype=object)
    taken = set(map(str, private_ids)) | set(map(str, public_ids))
    if taken & set(ids):  # pragma: no cover (a 64-bit random token)
        raise PateError("canary ids collide with the data's ids; run again")
    return ids


def audit_canaries(
    config: CanaryConfig,
    *,
    partition: Any,
    teachers: Any,
    distill: Any,
    out: str | os.PathLike,
    stages: dict[str, Stage] | None = None,
) -> CanaryAuditResult:
    """Plant canaries, run the pipeline once, guess from the release, bound epsilon (module doc).

    ``partition``, ``teachers`` and ``distill`` are the jobs of the pipeline under audit
    (:class:`~pate.partitioning.PartitionJob`, :class:`~pate.teachers.TeachersJob`,
    :class:`~pate.distill.DistillJob`, e.g. from a pipeline file): every field is kept but the paths,
    which are redirected into ``out`` (``partition.input`` and ``distill.public`` are read: the
    private set the canaries join and the public set they sit on). ``out`` must not exist.
    ``stages`` replaces stage calls by name (tests pass deliberately broken ones).
    """
    from pate.distill.release import LABELS_FILE, REPORT_FILE, STUDENT_FILE, read_labels
    from pate.io import Dataset, ensure_private_dir, read_dataset, write_dataset
    from pate.outputs import check_output

    out = Path(out)
    if out.exists():
        raise PateError(f"{out}: already exists, expected a new folder for the audit", exit_code=4)
    inputs = {"partition.input": partition.input, "distill.public": distill.public}
    check_output(out, kinds=("audit",), folder=True, inputs=inputs, private=True)
    run_stages = {**default_stages(), **(stages or {})}
    private = read_dataset(partition.input, require_labels=True)
    public = read_dataset(distill.public)
    m = config.canaries
    if m > len(public):
        raise PateError(
            f"`canaries`: {m}, expected at most the {len(public)} records of {distill.public} (one "
            "public query per canary)"
        )
    if public.feature_shape != private.feature_shape:
        raise PateError(
            f"{distill.public}: features have shape {public.feature_shape}, expected "
            f"{private.feature_shape} as {partition.input}"
        )
    seed = config.seed
    # Without a seed, fresh 128-bit entropy from the OS CSPRNG, kept nowhere (secrets.json holds the
    # secrets themselves, never a seed that rebuilds them).
    entropy = seed if seed is not None else secrets.randbits(128)
    design_rng, bits_rng, tie_rng = map(
        np.random.default_rng, np.random.SeedSequence(entropy).spawn(3)
    )
    del entropy
    # The design (queries, labels, ids) is drawn first and independently of the bits.
    queries = design_rng.choice(len(public), size=m, replace=False)
    num_classes = private.num_classes
    truth = _evaluation_labels(Path(distill.public), len(public))
    if truth is not None:
        shift = design_rng.integers(1, num_classes, size=m)
        labels = (truth[queries] + shift) % num_classes  # uniform over the other classes
    else:
        labels = design_rng.integers(0, num_classes, size=m)
    token = f"{seed:x}" if seed is not None else secrets.token_hex(8)
    ids = _canary_ids(private.individual_id, public.individual_id, m, token)
    bits = bits_rng.integers(0, 2, size=m).astype(bool)

    ensure_private_dir(out)
    data, run = ensure_private_dir(out / "data"), out / "run"
    ensure_private_dir(run)
    # Private data with the included canaries appended (each canary: `records` copies of its query).
    n = config.records
    chosen = np.flatnonzero(bits)
    canary_features = np.repeat(public.features[queries[chosen]], n, axis=0)
    canary_features = canary_features.astype(private.features.dtype)
    private_ids = private.individual_id
    new_ids = np.repeat(ids[chosen], n)
    if private_ids.dtype.kind not in "iu":
        private_ids = private_ids.astype(object)
    augmented = dataclasses.replace(
        private,
        features=np.concatenate([private.features, canary_features]),
        labels=np.concatenate([private.labels, np.repeat(labels[chosen], n)]).astype(np.int64),
        individual_id=np.concatenate([private_ids, new_ids.astype(private_ids.dtype)]),
    )
    private_path, public_path = data / "private.h5", data / "public.h5"
    write_dataset(private_path, augmented, private=True)
    # Public set: the canary queries first (rows 0..m-1, in canary order), then the rest in order.
    rest = np.setdiff1d(np.arange(len(public)), queries)
    order = np.concatenate([queries, rest])
    extra = {"evaluation_labels": truth[order]} if truth is not None else None
    write_dataset(
        public_path,
        Dataset(
            public.features[order],
            None if public.labels is None else public.labels[order],
            public.individual_id[order],
            num_classes=public.num_classes,
            class_names=public.class_names,
            feature_names=public.feature_names,
            name=public.name,
            split=public.split,
            extra_attrs=public.extra_attrs,
        ),
        extra_arrays=extra,
    )

    shards, teachers_dir = run / "shards.h5", run / "teachers"
    workspace, release = run / "workspace", run / "release"
    run_stages["partition"](
        dataclasses.replace(partition, input=private_path, out=shards, force=False)
    )
    teachers_public = public_path if teachers.public is not None else None
    run_stages["train_teachers"](
        dataclasses.replace(
            teachers,
            shards=shards,
            out=teachers_dir,
            public=teachers_public,
            checkpoint_dir=None,
            force=False,
        )
    )
    run_stages["label_and_distill"](
        dataclasses.replace(
            distill,
            teachers=teachers_dir,
            public=public_path,
            workspace=workspace,
            out=release,
            force=False,
            raise_budget=False,
        )
    )

    # Scores, from the release only: released labels, the released student, the public features.
    from pate.export import load_student

    report = json.loads((release / REPORT_FILE).read_text())
    answered_ids, answered_labels = read_labels(release / LABELS_FILE)
    released = np.full(m, -1, dtype=np.int64)
    mine = answered_ids < m
    released[answered_ids[mine]] = answered_labels[mine]
    student, _ = load_student(release / STUDENT_FILE)
    probability = student.probabilities(public.features[queries])[np.arange(m), labels]
    scores = (released == labels).astype(np.float64) + probability
    guess = guesses(scores, config.k, tie_rng)
    truth_sign = np.where(bits, 1, -1)
    r = int(np.count_nonzero(guess))
    v = int(np.count_nonzero(guess * truth_sign == 1))
    claimed, delta = float(report["epsilon"]), float(report["delta"])
    lower = epsilon_lower_bound(m, r, v, delta, config.confidence)
    result = CanaryAuditResult(
        config=config,
        canaries=m,
        included=int(bits.sum()),
        guesses=r,
        correct=v,
        epsilon_lower=lower,
        ceiling=ceiling(m, r, delta, config.confidence),
        claimed_epsilon=claimed,
        delta=delta,
        p_value_at_claim=p_value(m, r, v, claimed, delta),
        queries_answered=int(report["queries_answered"]),
        canary_queries_answered=int(np.count_nonzero(released >= 0)),
        canary_labels_released=int(np.count_nonzero(released == labels)),
        release=str(release),
        seed=seed,
        extra={"audit_folder": str(out)},
    )
    _write_private_json(
        out / SECRETS_FILE,
        {
            **({"seed": seed} if seed is not None else {}),
            "reproducible": seed is not None,
            "note": "the audit's secrets: never publish (they say who is in the private data)",
            "canary_ids": [i if isinstance(i, str) else int(i) for i in ids],
            "public_rows": [int(q) for q in queries],  # rows of the original public file
            "canary_labels": [int(x) for x in labels],
            "included": [bool(b) for b in bits],
            "released_labels": [int(x) for x in released],
            "scores": [float(s) for s in scores],
            "guesses": [int(g) for g in guess],
        },
    )
    _write_private_json(out / AUDIT_FILE, result.to_dict())
    return result


def _write_private_json(path: Path, payload: dict) -> None:
    from pate.io import atomic_file

    with atomic_file(path, private=True) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
