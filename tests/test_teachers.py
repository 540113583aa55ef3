"""Teacher training: isolation per strategy, strategy agreement, resume, the teachers file, bad input."""

from __future__ import annotations

import json
import stat

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from teacher_data import toy_dataset, toy_shards, write_shards

from cli.main import app as cli
from pate.errors import PateError
from pate.extractor import ExtractorConfig, fit_extractor
from pate.models import ModelConfig
from pate.teachers import (
    Progress,
    TrainConfig,
    _shuffle_rows,
    load_shards,
    load_teachers,
    open_shards,
    resolve_strategy,
    save_teachers,
    teacher_keys,
    train_ensemble,
    vote_histogram,
)

SIZES = [40, 25, 33, 10, 50]  # uneven on purpose
MLP = ModelConfig(kind="mlp", input_shape=(6,), num_classes=3, hidden=(16,))
IMAGE_SHAPE = (10, 10, 1)
CNN = ModelConfig(kind="cnn-small", input_shape=IMAGE_SHAPE, num_classes=3)
SMALL_EXTRACTOR = ExtractorConfig(
    patch=3, centroids=8, grid=2, iterations=3, sample_images=40, sample_patches=2000
)


@pytest.mark.parametrize(("n", "max_n"), [(1, 4), (2, 2), (7, 10), (1023, 1023), (1000, 1500)])
def test_batch_order_is_a_permutation_independent_of_padding(n, max_n):
    shuffle = jax.jit(_shuffle_rows, static_argnums=2)
    order = np.asarray(shuffle(jax.random.key(3), n, max_n))
    assert sorted(order[:n]) == list(range(n))
    assert list(order[n:]) == list(range(n, max_n))  # padded rows last, in index order
    # Padding further (another shard grew) leaves this teacher's order unchanged.
    np.testing.assert_array_equal(
        np.asarray(shuffle(jax.random.key(3), n, max_n + 77))[:n], order[:n]
    )


def test_batch_order_is_uniform():
    """All 24 orders of 4 rows, equally often (chi-square, 23 degrees of freedom, p ~ 1e-4 bound)."""
    shuffle = jax.jit(jax.vmap(_shuffle_rows, in_axes=(0, None, None)), static_argnums=2)
    draws = 12000
    orders = np.asarray(shuffle(jax.random.split(jax.random.key(0), draws), 4, 6))[:, :4]
    codes = orders @ np.array([64, 16, 4, 1])
    counts = np.unique(codes, return_counts=True)[1]
    assert len(counts) == 24
    expected = draws / 24
    assert np.sum((counts - expected) ** 2 / expected) < 55.0


def config(strategy: str, **kwargs) -> TrainConfig:
    return TrainConfig(
        epochs=kwargs.pop("epochs", 3),
        batch_size=8,
        learning_rate=1e-2,
        strategy=strategy,
        teacher_chunk=kwargs.pop("teacher_chunk", 2),
        **kwargs,
    )


def leaves(params) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(params)]


def teacher_slice(params, t: int) -> list[np.ndarray]:
    return [leaf[t] for leaf in leaves(params)]


@pytest.fixture(scope="module")
def mlp_shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlp")
    features, labels = toy_shards(folder / "shards.h5", SIZES)
    # The same shards but teacher 2's records replaced (different values, labels and size).
    rng = np.random.default_rng(7)
    changed_x = [x.copy() for x in features]
    changed_y = [y.copy() for y in labels]
    changed_x[2] = rng.normal(size=(21, 6)).astype(np.float32)
    changed_y[2] = rng.integers(0, 3, size=21)
    write_shards(folder / "changed.h5", changed_x, changed_y, 3)
    return folder


@pytest.fixture(scope="module")
def loop_reference(mlp_shards):
    return train_ensemble(open_shards(mlp_shards / "shards.h5"), MLP, config("loop"))


@pytest.mark.parametrize("strategy", ["loop", "scan", "vmap", "fold"])
def test_changing_one_shard_leaves_other_teachers_bit_identical(
    mlp_shards, loop_reference, strategy
):
    base = (
        loop_reference
        if strategy == "loop"
        else train_ensemble(open_shards(mlp_shards / "shards.h5"), MLP, config(strategy))
    )
    changed = train_ensemble(open_shards(mlp_shards / "changed.h5"), MLP, config(strategy))
    for t in range(len(SIZES)):
        same = all(
            np.array_equal(a, b)
            for a, b in zip(
                teacher_slice(base.params, t), teacher_slice(changed.params, t), strict=True
            )
        )
        assert same == (t != 2), f"teacher {t} under {strategy}"
    assert changed.steps[2] == 3 * np.ceil(21 / 8)  # its own size sets its own step count
    # Every strategy trains the same teachers: the per-step loop and the epoch scan bit for bit,
    # the vectorised programs to float rounding (XLA fuses the batched program differently).
    for a, b in zip(leaves(base.params), leaves(loop_reference.params), strict=True):
        if strategy == "scan":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(base.steps, 3 * np.ceil(np.array(SIZES) / 8))


def test_padding_length_does_not_touch_other_teachers(mlp_shards, tmp_path):
    """Growing the largest shard pads every shard further; the others stay bit-identical."""
    shards = load_shards(mlp_shards / "shards.h5")
    features = [shards.features[t, : shards.sizes[t]] for t in range(len(SIZES))]
    labels = [shards.labels[t, : shards.sizes[t]] for t in range(len(SIZES))]
    features[4] = np.concatenate([features[4], features[4][:30]])
    labels[4] = np.concatenate([labels[4], labels[4][:30]])
    write_shards(tmp_path / "longer.h5", features, labels, 3)
    base = train_ensemble(shards, MLP, config("vmap"))
    longer = train_ensemble(open_shards(tmp_path / "longer.h5"), MLP, config("vmap"))
    assert longer.steps[4] > base.steps[4]
    for t in range(4):
        for a, b in zip(
            teacher_slice(base.params, t), teacher_slice(longer.params, t), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_patch_convolution_matches_xla_convolution():
    """Same parameters, same outputs and gradients: fold is only another way to compute."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, *IMAGE_SHAPE)).astype(np.float32)
    xla, patches = CNN.build(), CNN.build(conv="patches")
    shapes = jax.eval_shape(xla.init, jax.random.key(1), x)["params"]
    # The same parameter tree (names and shapes), so teachers can switch implementation.
    assert shapes == jax.eval_shape(patches.init, jax.random.key(1), x)["params"]
    params = jax.tree_util.tree_map(
        lambda s: (0.2 * rng.normal(size=s.shape)).astype(np.float32), shapes
    )

    def loss(module):
        return jax.jit(jax.value_and_grad(lambda p: module.apply({"params": p}, x).sum()))

    for a, b in zip(leaves(loss(xla)(params)), leaves(loss(patches)(params)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strategy", ["vmap", "fold"])
def test_convolutional_teachers_train_in_isolation(tmp_path, strategy):
    """vmap dispatches one vmapped step at a time on the CPU (convolutions), fold scans an epoch."""
    toy_shards(tmp_path / "images.h5", [12, 20, 9], shape=IMAGE_SHAPE)
    source = open_shards(tmp_path / "images.h5")
    folded = train_ensemble(source, CNN, config(strategy, epochs=2))
    assert np.isfinite(folded.train_loss).all()
    changed = train_ensemble(source.read([0, 1]), CNN, config(strategy, epochs=2))
    for t in (0, 1):  # dropping teacher 2 changes nothing for 0 and 1
        for a, b in zip(
            teacher_slice(folded.params, t), teacher_slice(changed.params, t), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_public_strategy_heads_are_isolated_and_extractor_sees_only_public(tmp_path):
    rng = np.random.default_rng(3)
    public = rng.integers(0, 256, size=(60, *IMAGE_SHAPE), dtype=np.uint8)
    extractor = fit_extractor(public, SMALL_EXTRACTOR)
    assert extractor.num_features == 2 * 2 * 8
    # Refitting on the same public data (and nothing else) gives the same extractor.
    again = fit_extractor(public, SMALL_EXTRACTOR)
    np.testing.assert_array_equal(extractor.centroids, again.centroids)
    features, labels = toy_shards(tmp_path / "images.h5", [12, 20, 9], shape=IMAGE_SHAPE)
    features[0] = rng.integers(0, 256, size=(15, *IMAGE_SHAPE), dtype=np.uint8)
    labels[0] = rng.integers(0, 3, size=15)
    write_shards(tmp_path / "changed.h5", features, labels, 3)
    base = train_ensemble(
        open_shards(tmp_path / "images.h5"), CNN, config("auto"), extractor=extractor
    )
    changed = train_ensemble(
        open_shards(tmp_path / "changed.h5"), CNN, config("auto"), extractor=extractor
    )
    assert base.strategy == "public" and base.model.input_shape == (32,)
    assert not np.array_equal(teacher_slice(base.params, 0)[0], teacher_slice(changed.params, 0)[0])
    for t in (1, 2):
        for a, b in zip(
            teacher_slice(base.params, t), teacher_slice(changed.params, t), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    # The teachers file keeps the extractor; votes go through it.
    save_teachers(
        tmp_path, base, CNN, config("auto"), open_shards(tmp_path / "images.h5"), np.ones(3)
    )
    loaded = load_teachers(tmp_path)
    assert loaded.extractor is not None and loaded.input_shape == IMAGE_SHAPE
    assert loaded.model == CNN and loaded.head == base.model
    np.testing.assert_array_equal(loaded.extractor.whitening, extractor.whitening)
    votes = loaded.votes(public[:7])
    assert votes.shape == (7, 3) and (votes.sum(axis=1) == 3).all()


def test_resume_after_interruption_ends_with_the_same_parameters(mlp_shards, tmp_path):
    source = open_shards(mlp_shards / "shards.h5")
    train = config("vmap", epochs=4)
    full = train_ensemble(source, MLP, train)

    class Interrupt(Exception):
        pass

    def interrupt(progress: Progress) -> None:
        # Stop inside the second chunk, after its 3rd epoch was checkpointed.
        if progress.teachers_done == 2 and progress.steps_done > full.steps[:2].sum() + 20:
            raise Interrupt

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(Interrupt):
        train_ensemble(
            source, MLP, train, checkpoint_dir=checkpoints, checkpoint_every=1, progress=interrupt
        )
    assert stat.S_IMODE(checkpoints.stat().st_mode) == 0o700
    seen: list[Progress] = []
    resumed = train_ensemble(
        source, MLP, train, checkpoint_dir=checkpoints, checkpoint_every=1, progress=seen.append
    )
    assert resumed.resumed_chunks == 1
    assert seen[0].teachers_done == 2 and seen[0].steps_done == full.steps[:2].sum()
    assert seen[-1].steps_done == seen[-1].steps_total == full.steps.sum()
    for a, b in zip(leaves(full.params), leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    # Checkpoints of another run are refused, not silently mixed in.
    with pytest.raises(PateError, match="checkpoints of another run"):
        train_ensemble(source, MLP, config("vmap", epochs=5), checkpoint_dir=checkpoints)


def test_key_tree_does_not_depend_on_the_number_of_teachers():
    a = jax.random.key_data(teacher_keys(0, 10))
    b = jax.random.key_data(teacher_keys(0, [3, 9]))
    np.testing.assert_array_equal(np.asarray(a)[[3, 9]], b)


def test_vote_histogram_counts_each_teacher_once():
    predictions = np.array([[0, 1, 2], [0, 2, 2], [1, 2, 2]])
    np.testing.assert_array_equal(vote_histogram(predictions, 3), [[2, 1, 0], [0, 1, 2], [0, 0, 3]])


def test_auto_strategy():
    assert resolve_strategy("auto", MLP, "cpu") == "vmap"
    big = ModelConfig(kind="mlp", input_shape=(784,), num_classes=10, hidden=(512,))
    assert resolve_strategy("auto", big, "cpu") == "loop"
    assert resolve_strategy("auto", CNN, "cpu") == "loop"
    assert resolve_strategy("auto", CNN, "gpu") == "vmap"
    assert resolve_strategy("auto", CNN, "cpu", public=True) == "public"
    with pytest.raises(PateError, match="needs `public`"):  # library errors name fields
        resolve_strategy("public", CNN, "cpu")
    with pytest.raises(PateError, match="only used by `strategy` public"):
        resolve_strategy("vmap", CNN, "cpu", public=True)


# ----------------------------------------------------------------------------------------------------
# The command and its teachers file


def test_cli_writes_a_private_teachers_file_with_the_report(mlp_shards, tmp_path):
    test = toy_dataset(tmp_path / "test.h5", 60, (6,))
    out = tmp_path / "teachers"
    result = CliRunner().invoke(
        cli,
        [
            "train-teachers",
            str(mlp_shards / "shards.h5"),
            "--out",
            str(out),
            "--test",
            str(test),
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--hidden",
            "16",
            "--teacher-chunk",
            "2",
            "--learning-rate",
            "0.01",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["teachers"] == 5 and report["strategy"] == "vmap"
    assert 0 <= report["accuracy_min"] <= report["accuracy_mean"] <= report["accuracy_max"] <= 1
    path = out / "teachers.h5"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "teachers.checkpoints").exists()  # removed after success
    teachers = load_teachers(out)
    assert teachers.num_teachers == 5
    np.testing.assert_array_equal(teachers.shard_size, SIZES)
    np.testing.assert_array_equal(teachers.steps, 3 * np.ceil(np.array(SIZES) / 8))
    assert np.isfinite(teachers.train_loss).all() and (teachers.seconds > 0).all()
    assert report["accuracy_mean"] == pytest.approx(teachers.accuracy.mean())
    with h5py.File(path) as handle:
        assert json.loads(handle.attrs["training"])["epochs"] == 3
        assert handle["params/Dense_0/kernel"].shape == (5, 6, 16)
    votes = teachers.votes(np.zeros((4, 6), np.float32))
    assert votes.shape == (4, 3) and (votes.sum(axis=1) == 5).all()


def run_cli(*args: str):
    return CliRunner().invoke(cli, ["train-teachers", *args])


def test_bad_input_is_refused_with_one_line(mlp_shards, tmp_path):
    shards = str(mlp_shards / "shards.h5")
    # A shards file from another dataset: its features do not match the test set.
    images_test = toy_dataset(tmp_path / "images-test.h5", 10, IMAGE_SHAPE)
    result = run_cli(shards, "--out", str(tmp_path / "a"), "--test", str(images_test))
    assert result.exit_code == 2
    assert "features have shape (10, 10, 1), expected (6,)" in result.output
    assert "Traceback" not in result.output
    # A model that does not fit the feature shape.
    result = run_cli(shards, "--out", str(tmp_path / "b"), "--model", "cnn")
    assert result.exit_code == 2 and "use --model mlp for tabular data" in result.output
    with pytest.raises(PateError, match=r"features have shape \(6,\), but the model expects"):
        train_ensemble(
            open_shards(shards),
            ModelConfig(kind="mlp", input_shape=(7,), num_classes=3),
            config("vmap"),
        )
    # A public set of other images than the shards'.
    public = toy_dataset(tmp_path / "public.h5", 20, IMAGE_SHAPE, labelled=False)
    result = run_cli(shards, "--out", str(tmp_path / "c"), "--public", str(public))
    assert result.exit_code == 2
    # Zero-record shards.
    x = np.zeros((3, 6), np.float32)
    write_shards(tmp_path / "empty.h5", [x, x[:0], x], [np.zeros(3), np.zeros(0), np.zeros(3)], 3)
    result = run_cli(str(tmp_path / "empty.h5"), "--out", str(tmp_path / "d"))
    assert (
        result.exit_code == 2 and "shard 1 has no records, expected at least one" in result.output
    )
    # Not a shards file at all (a dataset file).
    result = run_cli(str(images_test), "--out", str(tmp_path / "e"))
    assert result.exit_code == 2 and "expected 'pate-shards'" in result.output
    # A shards file with labels outside the classes.
    write_shards(tmp_path / "labels.h5", [x, x], [np.zeros(3), np.full(3, 5)], 3)
    result = run_cli(str(tmp_path / "labels.h5"), "--out", str(tmp_path / "f"))
    assert result.exit_code == 2 and "outside 0..2" in result.output
    # Options.
    result = run_cli(shards, "--out", str(tmp_path / "g"), "--devices", "64")
    assert result.exit_code == 2 and "--devices: 64, expected at most" in result.output
    result = run_cli(shards, "--out", str(tmp_path / "h"), "--strategy", "public")
    assert result.exit_code == 2 and "needs --public" in result.output
    for folder in "abcdefgh":
        assert not (tmp_path / folder).exists()


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_masked_adam_is_adam_where_active_and_a_no_op_elsewhere(weight_decay):
    import optax

    from pate.teachers import _adam_init, _masked_adam

    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2)).astype(np.float32), "b": np.zeros(2, np.float32)}
    reference = optax.adamw(0.01, weight_decay=weight_decay) if weight_decay else optax.adam(0.01)
    ours, state = params, _adam_init(params)
    theirs, their_state = params, reference.init(params)
    for _ in range(3):
        grads = jax.tree_util.tree_map(
            lambda p: rng.normal(size=p.shape).astype(np.float32), params
        )
        ours, state = _masked_adam(ours, state, grads, jnp.bool_(True), 0.01, weight_decay)
        updates, their_state = reference.update(grads, their_state, theirs)
        theirs = optax.apply_updates(theirs, updates)
        kept, kept_state = _masked_adam(ours, state, grads, jnp.bool_(False), 0.01, weight_decay)
        for a, b in zip(leaves((ours, state)), leaves((kept, kept_state)), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(ours), leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_progress_counts_every_step_once(mlp_shards, strategy):
    seen: list[Progress] = []
    result = train_ensemble(
        open_shards(mlp_shards / "shards.h5"), MLP, config(strategy), progress=seen.append
    )
    done = [p.steps_done for p in seen]
    assert done == sorted(done) and done[0] == 0 and done[-1] == result.steps.sum()
    assert len(seen) > len(SIZES)  # finer than one report per teacher
    assert seen[-1].teachers_done == seen[-1].teachers_total == len(SIZES)
