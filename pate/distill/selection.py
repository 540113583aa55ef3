"""The student chooses the next queries: uncertainty sampling with a bias toward thin classes.

By default the aggregator is asked about the public records in their order (query ``q = 0, 1, 2,
...``). With ``query_selection = "uncertainty"`` labelling proceeds in **rounds** of
``selection_batch`` queries. The first round is a seeded random sample of the public set (no label
exists yet). Before each later round a cheap model is fitted on the labels released so far, and the
round asks about the not-yet-asked public records where that model is least sure, leaning toward
classes that are thin among the released labels:

* **model**: multinomial logistic regression (L2, L-BFGS) on the standardised public features and
  :data:`RANDOM_FEATURES` seeded random ReLU features of them (a fixed random hidden layer, so the
  fit stays convex and takes well under a second on two CPU cores for thousands of labels; the real
  student, a JAX network trained for thousands of steps, would cost more than the labelling itself);
* **score** of a record with predicted probabilities ``p``: ``(1 - thin_weight) * (1 - margin) +
  thin_weight * sum_c p_c w_c``, where ``margin`` is the gap between the two largest ``p_c`` and
  ``w_c = (min_k n_k + 1) / (n_c + 1)`` is 1 for the thinnest class among the ``n_c`` released labels
  of each class and smaller for the common ones;
* **diversity guard**: the round's records are the best-scored among a seeded random subset of
  ``CANDIDATES_PER_QUERY x selection_batch`` not-yet-asked records, so a round is not a cluster of
  near-duplicates sitting on one stretch of the decision boundary.

**Why it is free (the privacy argument).** :func:`choose_round` takes the public features, the
indices already asked, the labels already released (``-1`` for a declined query: whether a query was
answered is itself a released output of the mechanism, its threshold check is charged) and public
parameters (class count, batch size, seed). It does not receive the votes, the teachers, the
ledger's data-dependent bounds or any private record, so each choice is post-processing of outputs
the mechanism already released (plus public data and public randomness), and adaptively choosing a
mechanism's next query from its past outputs is covered by RDP's adaptive composition (Mironov 2017,
Proposition 1), the same composition that already covers the answers in order. Every query is charged
exactly as in order mode (the ledger's charge of a query depends on its votes and the mechanism only,
not on when it is asked) and the loop stops by the same data-independent worst case. So the ledger,
the epsilon and the stop are unchanged; only *which* public rows are charged differs.

**Resume.** Round ``r`` covers the ledger positions ``r * selection_batch`` to ``(r + 1) *
selection_batch - 1``. Its ranking is a deterministic function of the queries and labels recorded in
the ledger before the round began, the public features and ``(selection_seed, r)``; a resumed run
re-derives it and skips the records the ledger already holds, so it asks what an uninterrupted run
would have asked, never a query twice (:func:`pate.labeling._answer` also refuses repeats), and keeps
the ledger's answers (not re-noised). The selection parameters are in the ledger header, so a
workspace is resumed only with the same ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from pate.errors import PateError

QUERY_SELECTIONS = ("order", "uncertainty")
#: Width of the seeded random ReLU layer of the selection model.
RANDOM_FEATURES = 256
#: Public features of higher dimension are first projected (seeded Gaussian) to this many.
MAX_INPUT_DIM = 256
#: Size of a round's random candidate pool, in multiples of ``selection_batch`` (diversity guard).
CANDIDATES_PER_QUERY = 8
#: L-BFGS iterations of one fit of the selection model.
MAX_ITERATIONS = 100
#: L2 penalty of the selection model (on the standardised features, per released label).
L2 = 1e-3


@dataclass(frozen=True)
class SelectionConfig:
    """How the queries are chosen (every field public configuration)."""

    method: str = "order"
    batch: int = 256
    seed: int = 0
    thin_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in QUERY_SELECTIONS:
            raise PateError(
                f"Expected query_selection={self.method!r} in {', '.join(QUERY_SELECTIONS)}."
            )
        if self.batch < 1:
            raise PateError(f"Expected selection_batch={self.batch} >= 1.")
        if not 0.0 <= self.thin_weight <= 1.0:
            raise PateError(f"Expected selection_thin_weight={self.thin_weight} in [0, 1].")

    def to_dict(self) -> dict:
        return {**asdict(self), "candidates_per_query": CANDIDATES_PER_QUERY}


def public_embedding(features: np.ndarray, seed: int) -> np.ndarray:
    """The selection model's inputs for every public record: standardised features, then a seeded
    random ReLU layer of them (a function of the public features and the seed only)."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    rng = np.random.default_rng([seed, 0x5E1EC7])
    if x.shape[1] > MAX_INPUT_DIM:
        x = x @ rng.normal(0.0, 1.0 / np.sqrt(x.shape[1]), (x.shape[1], MAX_INPUT_DIM))
    weights = rng.normal(0.0, 1.0 / np.sqrt(x.shape[1]), (x.shape[1], RANDOM_FEATURES))
    hidden = np.maximum(x @ weights + rng.normal(0.0, 0.5, RANDOM_FEATURES), 0.0)
    return np.concatenate([x, hidden, np.ones((len(x), 1))], axis=1).astype(np.float64)


def fit_probabilities(
    embedding: np.ndarray, rows: np.ndarray, labels: np.ndarray, num_classes: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Fit the selection model on ``embedding[rows]`` with ``labels``; returns ``rows -> probs``."""
    # Imported here: the command line imports this module (through DistillJob) for its defaults.
    from scipy.optimize import minimize

    x, y = embedding[rows], labels
    n, d = x.shape
    onehot = np.eye(num_classes)[y]

    # einsum, not BLAS: these products are small, and a multi-threaded BLAS on busy cores spends
    # most of its time waiting for its threads (measured: 7 s against 0.3 s per fit on 2 cores).
    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(d, num_classes)
        logits = np.einsum("nd,dc->nc", x, w)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -(onehot * logp).sum() / n + 0.5 * L2 * (w * w).sum()
        grad = np.einsum("nd,nc->dc", x, np.exp(logp) - onehot) / n + L2 * w
        return float(value), grad.reshape(-1)

    result = minimize(
        loss,
        np.zeros(d * num_classes),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": MAX_ITERATIONS},
    )
    w = result.x.reshape(d, num_classes)

    def probabilities(which: np.ndarray) -> np.ndarray:
        logits = np.einsum("nd,dc->nc", embedding[which], w)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    return probabilities


def scores(probs: np.ndarray, released: np.ndarray, thin_weight: float) -> np.ndarray:
    """Uncertainty (one minus the top-two margin) mixed with the expected thinness of the class."""
    num_classes = probs.shape[1]
    top2 = np.sort(probs, axis=1)[:, -2:] if num_classes > 1 else np.ones((len(probs), 2))
    uncertainty = 1.0 - (top2[:, 1] - top2[:, 0])
    counts = np.bincount(released, minlength=num_classes).astype(np.float64)
    thin = (counts.min() + 1.0) / (counts + 1.0)
    return (1.0 - thin_weight) * uncertainty + thin_weight * (probs @ thin)


def choose_round(
    embedding: np.ndarray,
    num_classes: int,
    asked: np.ndarray,
    labels: np.ndarray,
    size: int,
    *,
    round_index: int,
    seed: int,
    thin_weight: float = 0.5,
) -> np.ndarray:
    """The ``size`` public records round ``round_index`` asks about, best first.

    Public inputs only (see the module docstring): ``embedding`` (:func:`public_embedding` of the
    public features), the indices ``asked`` before the round and their released ``labels`` (``-1``:
    declined). Without a released label (the first round), a seeded random sample.
    """
    asked = np.asarray(asked, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if asked.shape != labels.shape:
        raise PateError(f"asked has {len(asked)} queries but labels {len(labels)}")
    free = np.ones(len(embedding), dtype=bool)
    free[asked] = False
    remaining = np.flatnonzero(free)
    size = min(size, len(remaining))
    rng = np.random.default_rng([seed, round_index])
    answered = labels >= 0
    if size == 0:
        return remaining[:0]
    if not answered.any():
        return rng.choice(remaining, size, replace=False)
    pool = rng.choice(remaining, min(len(remaining), CANDIDATES_PER_QUERY * size), replace=False)
    released = labels[answered]
    probs = fit_probabilities(embedding, asked[answered], released, num_classes)(pool)
    order = np.argsort(-scores(probs, released, thin_weight), kind="stable")
    return pool[order[:size]]


class RoundSelector:
    """A :data:`pate.labeling.QueryChooser` that asks in rounds chosen by :func:`choose_round`.

    Built from the public features and the :class:`SelectionConfig` only. Called with the queries
    asked so far and their released labels (never the votes), it returns the next ids of the current
    round, at most up to the round's end, so a ledger batch never spans two rounds.
    """

    def __init__(self, public_features: np.ndarray, num_classes: int, config: SelectionConfig):
        if config.method != "uncertainty":
            raise PateError(f"Expected query_selection='uncertainty', got {config.method!r}.")
        self.config = config
        self.num_classes = num_classes
        self.embedding = public_embedding(public_features, config.seed)
        self._round: tuple[int, np.ndarray] | None = None

    def ranking(self, asked: np.ndarray, labels: np.ndarray, round_index: int) -> np.ndarray:
        """Round ``round_index``'s records, from the ledger's state when the round began."""
        if self._round is None or self._round[0] != round_index:
            start = round_index * self.config.batch
            chosen = choose_round(
                self.embedding,
                self.num_classes,
                asked[:start],
                labels[:start],
                self.config.batch,
                round_index=round_index,
                seed=self.config.seed,
                thin_weight=self.config.thin_weight,
            )
            self._round = (round_index, chosen)
        return self._round[1]

    def __call__(self, asked: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
        position = len(asked)
        round_index = position // self.config.batch
        end = (round_index + 1) * self.config.batch
        ranking = self.ranking(asked, labels, round_index)
        # On resume, the round's records the ledger already holds are skipped (never asked twice).
        ranking = ranking[~np.isin(ranking, asked)]
        if len(ranking) == 0:  # the ledger holds the whole round: rank afresh from its state
            ranking = choose_round(
                self.embedding,
                self.num_classes,
                asked,
                labels,
                end - position,
                round_index=round_index,
                seed=self.config.seed,
                thin_weight=self.config.thin_weight,
            )
        return ranking[: min(count, end - position)]
