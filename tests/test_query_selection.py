"""The student chooses the next queries (pate.distill.selection): public inputs only, no repeats,
same charges as in order, resumable, and it labels more of a thin class than the public order does."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.aggregate import ConfidentGNMaxConfig, GNMaxConfig
from pate.distill import DistillJob
from pate.distill.selection import (
    RoundSelector,
    SelectionConfig,
    choose_round,
    public_embedding,
)
from pate.errors import PateError
from pate.labeling import BudgetConfig, run_labeling
from pate.ledger import Ledger
from pate.noise import make_noise
from pate.records import RunHeader

NUM_CLASSES = 4
RARE = 3


def _problem(num: int = 1200, seed: int = 0):
    """Public features in four Gaussian clusters; class 3 is 4% of the pool, spread through its order."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(NUM_CLASSES, size=num, p=[0.36, 0.32, 0.28, 0.04])
    centres = rng.normal(0.0, 2.2, (NUM_CLASSES, 8))
    features = (centres[truth] + rng.normal(0.0, 1.0, (num, 8))).astype(np.float32)
    return features, truth


def _votes(truth: np.ndarray, num_teachers: int = 50, seed: int = 1, spread: float = 0.8):
    """Teachers that mostly agree on the truth."""
    rng = np.random.default_rng(seed)
    probs = np.full((len(truth), NUM_CLASSES), (1 - spread) / (NUM_CLASSES - 1))
    probs[np.arange(len(truth)), truth] = spread
    return np.stack([rng.multinomial(num_teachers, p) for p in probs])


def _header(config, num_queries: int, selection: dict | None) -> RunHeader:
    return RunHeader(
        run_id="r",
        teachers_sha256="t",
        public_sha256="p",
        votes_sha256="v",
        num_queries=num_queries,
        num_classes=NUM_CLASSES,
        num_teachers=50,
        aggregator=config.to_dict(),
        delta=1e-5,
        max_epsilon=1.0,
        orders="default",
        conversion="improved",
        noise="seeded(seed=7), NOT PRIVATE",
        noise_private=False,
        noise_seed=7,
        stages=None,
        selection=selection,
    )


def _label(tmp_path, votes, config, budget, *, features=None, batch=64, name="l.jsonl", **kw):
    """run_labeling in order (``features`` None) or with uncertainty selection on ``features``."""
    chooser, selection = None, None
    if features is not None:
        chosen = SelectionConfig(method="uncertainty", batch=batch, seed=5)
        chooser, selection = RoundSelector(features, NUM_CLASSES, chosen), chosen.to_dict()
    return run_labeling(
        votes,
        config,
        budget,
        tmp_path / name,
        noise=make_noise(7),
        noise_seed=7,
        header=_header(config, len(votes), selection),
        choose_queries=chooser,
        **kw,
    )


# (1) Public inputs only ---------------------------------------------------------------------------


def test_selection_takes_no_private_input_and_ignores_the_votes(tmp_path):
    names = set(inspect.signature(choose_round).parameters)
    assert not names & {"votes", "entries", "ledger", "teachers", "logq"}
    features, truth = _problem()
    # Two vote arrays, very different counts, same winner by a margin sigma=1 noise never crosses:
    # the released labels are the same, so the choices must be too.
    strong = np.zeros((len(truth), NUM_CLASSES), dtype=np.int64)
    strong[np.arange(len(truth)), truth] = 50
    weak = np.full((len(truth), NUM_CLASSES), 4, dtype=np.int64)
    weak[np.arange(len(truth)), truth] = 38
    seen = []

    def spy(selector):
        def choose(asked, labels, count):
            seen.append((asked.copy(), labels.copy(), count))
            return selector(asked, labels, count)

        return choose

    runs = []
    for index, votes in enumerate((strong, weak)):
        seen.clear()
        chosen = SelectionConfig(method="uncertainty", batch=50, seed=5)
        outcome = run_labeling(
            votes,
            GNMaxConfig(1.0),
            BudgetConfig(max_epsilon=1e6, max_queries=300),
            tmp_path / f"{index}.jsonl",
            noise=make_noise(7),
            noise_seed=7,
            header=_header(GNMaxConfig(1.0), len(votes), chosen.to_dict()),
            batch_queries=25,
            choose_queries=spy(RoundSelector(features, NUM_CLASSES, chosen)),
        )
        # The chooser got the ledger's ids and released labels and nothing else.
        last_asked, last_labels, _ = seen[-1]
        assert last_labels.tolist() == [e.label for e in outcome.entries][: len(last_labels)]
        assert last_asked.tolist() == [e.q for e in outcome.entries][: len(last_asked)]
        runs.append(outcome)
    assert [e.label for e in runs[0].entries] == [e.label for e in runs[1].entries]
    assert [e.q for e in runs[0].entries] == [e.q for e in runs[1].entries]
    assert [e.logq for e in runs[0].entries] != [e.logq for e in runs[1].entries]


def test_choose_round_is_a_function_of_public_inputs_and_labels():
    features, truth = _problem()
    embedding = public_embedding(features, seed=5)
    asked = np.arange(0, 400, 2)
    labels = truth[asked]
    first = choose_round(embedding, NUM_CLASSES, asked, labels, 60, round_index=3, seed=5)
    again = choose_round(embedding.copy(), NUM_CLASSES, asked, labels, 60, round_index=3, seed=5)
    assert first.tolist() == again.tolist()
    flipped = labels.copy()
    flipped[labels == 0] = 1  # other released labels: another choice
    other = choose_round(embedding, NUM_CLASSES, asked, flipped, 60, round_index=3, seed=5)
    assert first.tolist() != other.tolist()


# (2) No repeats, batch sizes, first round without labels ----------------------------------------


def test_rounds_never_repeat_and_respect_their_sizes(tmp_path):
    features, truth = _problem(num=500)
    votes = _votes(truth)
    calls = []
    chosen = SelectionConfig(method="uncertainty", batch=48, seed=5)
    selector = RoundSelector(features, NUM_CLASSES, chosen)

    def choose(asked, labels, count):
        ids = selector(asked, labels, count)
        calls.append((len(asked), len(ids), count))
        return ids

    outcome = run_labeling(
        votes,
        ConfidentGNMaxConfig(threshold=30, sigma1=10, sigma2=4),
        BudgetConfig(max_epsilon=1e6),
        tmp_path / "l.jsonl",
        noise=make_noise(7),
        noise_seed=7,
        header=_header(ConfidentGNMaxConfig(30, 10, 4), len(votes), chosen.to_dict()),
        batch_queries=20,
        choose_queries=choose,
    )
    ids = [e.q for e in outcome.entries]
    assert sorted(ids) == list(range(500))  # every record once, none twice
    assert ids != list(range(500))
    assert outcome.stop_reason == "public set exhausted"
    for position, size, count in calls:
        assert 1 <= size <= min(count, 20)
        # a ledger batch never spans two rounds
        assert position // 48 == (position + size - 1) // 48
    # The first round is chosen without labels: a seeded sample, whatever the votes say.
    embedding = public_embedding(features, 5)
    empty = np.zeros(0, dtype=np.int64)
    first = choose_round(embedding, NUM_CLASSES, empty, empty, 48, round_index=0, seed=5)
    assert ids[:48] == first.tolist()
    assert ids[:48] != list(range(48))


def test_a_chooser_that_repeats_a_query_is_refused(tmp_path):
    features, truth = _problem(num=100)
    with pytest.raises(PateError, match="asked twice"):
        run_labeling(
            _votes(truth),
            GNMaxConfig(1.0),
            BudgetConfig(max_epsilon=1e6),
            tmp_path / "l.jsonl",
            noise=make_noise(7),
            noise_seed=7,
            header=_header(GNMaxConfig(1.0), 100, {"method": "x"}),
            batch_queries=10,
            choose_queries=lambda asked, labels, count: np.arange(count) % 5,
        )


# (3) More of the thin class for the same number of queries ---------------------------------------


def test_uncertainty_selection_labels_more_of_a_thin_class(tmp_path):
    features, truth = _problem(num=3000, seed=2)
    votes = _votes(truth)
    budget = BudgetConfig(max_epsilon=1e6, max_queries=400)
    order = _label(tmp_path, votes, GNMaxConfig(2.0), budget, name="o.jsonl")
    chosen = _label(tmp_path, votes, GNMaxConfig(2.0), budget, features=features, batch=50)
    assert order.spent.queries_seen == chosen.spent.queries_seen == 400
    rare_order = int((truth[order.answered_ids] == RARE).sum())
    rare_chosen = int((truth[chosen.answered_ids] == RARE).sum())
    assert rare_chosen >= 2 * rare_order + 10, (rare_order, rare_chosen)


# (4) Resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["max_queries", "killed mid-round"])
def test_resume_asks_what_an_uninterrupted_run_asks(tmp_path, how):
    features, truth = _problem(num=600)
    votes = _votes(truth, spread=0.6)
    config = ConfidentGNMaxConfig(threshold=30, sigma1=12, sigma2=5)
    budget = BudgetConfig(max_epsilon=1e3, max_queries=400)
    run = dict(features=features, batch=64, batch_queries=16)
    full = _label(tmp_path, votes, config, budget, name="full.jsonl", **run)
    if how == "max_queries":  # two rounds, then resumed with the larger max
        part = BudgetConfig(max_epsilon=1e3, max_queries=128)
        first = _label(tmp_path, votes, config, part, name="part.jsonl", **run)
        assert first.spent.queries_seen == 128
    else:

        class Stop(Exception):
            pass

        def stop(done, state):
            if done >= 96:  # in the middle of the second round
                raise Stop

        with pytest.raises(Stop):
            _label(tmp_path, votes, config, budget, name="part.jsonl", on_batch=stop, **run)
    resumed = _label(tmp_path, votes, config, budget, name="part.jsonl", **run)
    assert resumed.resumed_queries in (128, 96)
    assert resumed.entries == full.entries  # same ids, same answers, none re-noised or paid twice
    assert len({e.q for e in resumed.entries}) == len(resumed.entries)
    assert resumed.spent.epsilon_data_independent == full.spent.epsilon_data_independent
    assert resumed.spent.epsilon_data_dependent == full.spent.epsilon_data_dependent


def test_a_workspace_is_resumed_only_with_the_same_selection(tmp_path):
    features, truth = _problem(num=200)
    votes = _votes(truth)
    budget = BudgetConfig(max_epsilon=1e6, max_queries=50)
    _label(tmp_path, votes, GNMaxConfig(2.0), budget, features=features, batch=25)
    with pytest.raises(PateError, match="selection"):
        _label(tmp_path, votes, GNMaxConfig(2.0), budget)  # the same ledger, in order


# (6) The ledger is unchanged ----------------------------------------------------------------------


def test_charges_are_those_of_the_same_queries_in_order(tmp_path):
    features, truth = _problem(num=800)
    votes = _votes(truth, spread=0.5)
    budget = BudgetConfig(max_epsilon=1e6)
    for config in (GNMaxConfig(3.0), ConfidentGNMaxConfig(threshold=30, sigma1=12, sigma2=5)):
        name = config.mechanism
        order = _label(tmp_path, votes, config, budget, name=f"{name}-o.jsonl")
        chosen = _label(tmp_path, votes, config, budget, name=f"{name}-s.jsonl", features=features)
        by_id = {e.q: e for e in order.entries}
        for entry in chosen.entries:
            same = by_id[entry.q]
            assert entry.logq_check == same.logq_check and entry.checked == same.checked
            if entry.teacher and same.teacher:
                assert entry.logq == same.logq
        if isinstance(config, GNMaxConfig):  # every query pays the same step: identical totals
            assert chosen.spent.epsilon_data_independent == order.spent.epsilon_data_independent
            assert chosen.spent.epsilon_data_dependent == pytest.approx(
                order.spent.epsilon_data_dependent
            )


def test_the_worst_case_stop_does_not_move(tmp_path):
    features, truth = _problem(num=800)
    votes = _votes(truth)
    budget = BudgetConfig(max_epsilon=2.0)
    order = _label(tmp_path, votes, GNMaxConfig(20.0), budget, name="o.jsonl")
    chosen = _label(tmp_path, votes, GNMaxConfig(20.0), budget, features=features)
    assert order.stop_reason == chosen.stop_reason == "budget"
    assert order.spent.queries_seen == chosen.spent.queries_seen
    assert order.spent.epsilon_data_independent == chosen.spent.epsilon_data_independent


# The job and the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_selection": "random"}, "query_selection"),
        ({"query_selection": "uncertainty", "selection_batch": 0}, "selection_batch"),
        (
            {"query_selection": "uncertainty", "aggregator": "interactive-gnmax"},
            "`query_selection` 'uncertainty' is not available with `aggregator` interactive",
        ),
    ],
)
def test_job_refuses_bad_selection(kwargs, message):
    with pytest.raises(PateError, match=message):
        DistillJob(teachers="t", public="p", workspace="w", out="o", **kwargs)
    assert DistillJob(teachers="t", public="p", workspace="w", out="o").query_selection == "order"


def _cli(*args, expect: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def test_label_and_distill_with_selection_end_to_end(tiny_adas, tmp_path):
    _cli("partition", tiny_adas["private"], "--teachers", 5, "--out", tmp_path / "shards.h5")
    _cli("train-teachers", tmp_path / "shards.h5", "--out", tmp_path / "t", "--epochs", 2)
    common = [
        "label-and-distill",
        tmp_path / "t",
        "--public",
        tiny_adas["public"],
        "--workspace",
        tmp_path / "ws",
        "--out",
        tmp_path / "rel",
        "--sigma",
        "3",
        "--max-epsilon",
        "1000",
        "--student-steps",
        "50",
        "--student-method",
        "supervised",
        "--noise-seed",
        "3",
        "--query-selection",
        "uncertainty",
        "--selection-batch",
        "40",
        "--batch-queries",
        "20",
        "--json",
    ]
    first = json.loads(_cli(*common, "--max-queries", "80").output)
    assert first["queries_seen"] == 80
    resumed = json.loads(_cli(*common, "--max-queries", "160").output)
    assert resumed["queries_seen"] == 160 and resumed["resumed_queries"] == 80
    ledger = Ledger.open(tmp_path / "ws" / "ledger.jsonl", read_only=True)
    ids = [e["q"] for e in ledger.entries()]
    assert len(set(ids)) == 160 and ids != list(range(160))
    assert ledger.header["selection"]["method"] == "uncertainty"
    report = json.loads((tmp_path / "rel" / "privacy.json").read_text())
    assert report["configuration"]["query_selection"] == "uncertainty"
    assert report["configuration"]["selection_batch"] == 40
    # In order on the same workspace: refused in one line naming the flag.
    changed = [a if a != "uncertainty" else "order" for a in common]
    result = _cli(*changed, "--max-queries", "200", expect=2)
    assert "selection" in result.output and "Traceback" not in result.output
    bad = _cli(*common[:-1], "--selection-batch", "0", expect=2)
    assert "--selection-batch" in bad.output and "Traceback" not in bad.output
