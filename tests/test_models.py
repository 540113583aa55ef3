"""Models: the built-in architectures, ModelConfig's checks and JSON, and the user's own flax module
(``package.module:factory``) as teachers and student, from Python and from the command line.

The custom model used here is defined in this module. It is referred to as ``f"{__name__}:..."``: the
name under which pytest imported this module (``test_models`` with the default rootdir-based
``prepend`` import mode, which puts ``tests/`` on ``sys.path``, as ``teacher_data`` relies on), so the
reference resolves, without importing a second copy, whatever the import mode. The command line runs
in this process (``CliRunner``), where the same name is importable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import flax.linen as nn
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from teacher_data import toy_dataset, toy_shards

from cli.main import app
from pate import TeachersJob, train_teachers
from pate.distill import DistillJob, label_and_distill
from pate.errors import PateError
from pate.export import load_student
from pate.io import read_dataset
from pate.labeling import BudgetConfig
from pate.models import ModelConfig
from pate.student import StudentConfig, fit_student
from pate.teachers import TrainConfig, load_teachers
from pate.teachers.config import parameter_count, resolve_strategy

# ----------------------------------------------------------------------------------------------------
# A user's own model, and factories that break the contract one way each


class TinyMLP(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        hidden = nn.tanh(nn.Dense(8)(x.reshape((x.shape[0], -1))))
        return nn.Dense(self.num_classes)(hidden)


def tiny_factory(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return TinyMLP(num_classes)


class WrongWidth(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_classes + 1)(x.reshape((x.shape[0], -1)))


class WithBatchNorm(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=False)(x.reshape((x.shape[0], -1)))
        return nn.Dense(3)(x)


class NeedsTrainFlag(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        return nn.Dense(3)(x)


class WithDropout(nn.Module):
    """Initialises (flax falls back on the `params` RNG) but cannot be applied without a dropout RNG."""

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(4)(x.reshape((x.shape[0], -1)))
        return nn.Dense(3)(nn.Dropout(0.5, deterministic=False)(x))


class IntegerParameter(nn.Module):
    """Applies, but cannot be differentiated: an integer parameter."""

    @nn.compact
    def __call__(self, x):
        shift = self.param("shift", lambda key, shape: jnp.zeros(shape, jnp.int32), (3,))
        return nn.Dense(3)(x.reshape((x.shape[0], -1))) + shift


class NoParameters(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x[:, :3]


def returns_a_string(input_shape, num_classes):
    return "not a module"


def raises(input_shape, num_classes):
    raise ValueError("no model for you\nsecond line")


def wrong_width(input_shape, num_classes):
    return WrongWidth(num_classes)


def with_batch_norm(input_shape, num_classes):
    return WithBatchNorm()


def needs_train_flag(input_shape, num_classes):
    return NeedsTrainFlag()


def with_dropout(input_shape, num_classes):
    return WithDropout()


def integer_parameter(input_shape, num_classes):
    return IntegerParameter()


def no_parameters(input_shape, num_classes):
    return NoParameters()


NOT_CALLABLE = 3
MODEL = f"{__name__}:tiny_factory"
SHARD_SIZES = [30, 24, 30, 26, 28]
TRAIN = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, strategy="loop")
CLI_TRAIN = ["--epochs", "2", "--batch-size", "8", "--learning-rate", "0.01"]
DISTILL = ["--sigma", "2", "--max-epsilon", "30", "--max-queries", "40", "--noise-seed", "5"]


def ref(name: str) -> str:
    return f"{__name__}:{name}"


def custom(factory: str = MODEL, shape=(6,), classes: int = 3) -> ModelConfig:
    return ModelConfig(kind="custom", factory=factory, input_shape=shape, num_classes=classes)


def cli(*args, expect: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


# ----------------------------------------------------------------------------------------------------
# Built-in models


BUILT_IN = {
    "mlp": ModelConfig("mlp", (5,), 3, hidden=(7, 4)),
    "cnn": ModelConfig("cnn", (8, 8, 1), 3),
    "cnn-medium": ModelConfig("cnn-medium", (8, 8, 2), 3),
    "cnn-small": ModelConfig("cnn-small", (9, 8, 1), 3),
}


@pytest.mark.parametrize(
    ("kind", "params"),
    [("cnn", 857_738), ("cnn-medium", 215_370), ("cnn-small", 54_314), ("mlp", 269_322)],
)
def test_parameter_counts_are_the_documented_ones(kind, params):
    # On 28x28x1 (the module docstring's figures; an MLP 784-256-256-10), from shapes only.
    assert parameter_count(ModelConfig(kind, (28, 28, 1), 10)) == params


@pytest.mark.parametrize("kind", sorted(BUILT_IN))
def test_built_in_modules_give_logits_and_round_trip_as_json(kind):
    model = BUILT_IN[kind]
    x = np.random.default_rng(0).normal(size=(2, *model.input_shape)).astype(np.float32)
    params = jax.jit(model.build().init)(jax.random.key(0), x)["params"]
    logits = jax.jit(model.build().apply)({"params": params}, x)
    assert logits.shape == (2, 3) and np.isfinite(np.asarray(logits)).all()
    if model.is_convolutional:  # the patches implementation: same parameters, same logits
        patches = jax.jit(model.build(conv="patches").apply)({"params": params}, x)
        np.testing.assert_allclose(logits, patches, rtol=1e-4, atol=1e-4)
    raw = json.loads(model.to_json())
    assert "factory" not in raw  # what built-in kinds always wrote: old files read back the same
    assert ModelConfig.from_json(model.to_json()) == model
    assert model.is_convolutional == (kind != "mlp")
    assert parameter_count(model) == sum(leaf.size for leaf in leaves(params))


def test_old_json_without_factory_still_loads():
    old = '{"kind": "mlp", "input_shape": [6], "num_classes": 3, "hidden": [16]}'
    assert ModelConfig.from_json(old) == ModelConfig("mlp", (6,), 3, hidden=(16,))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "rnn"}, "Expected model='rnn' in mlp, cnn, cnn-medium, cnn-small, custom"),
        ({"num_classes": 1}, "num_classes=1 >= 2"),
        ({"kind": "cnn"}, "needs images of shape"),
        ({"kind": "cnn", "input_shape": (4, 4, 1)}, "at least 8x8"),
        ({"hidden": (16, 0)}, "positive widths"),
        ({"factory": MODEL}, "`factory` '.*:tiny_factory': only for model kind 'custom'"),
        ({"kind": "custom"}, "`factory`: missing, expected package.module:factory"),
        ({"kind": "custom", "factory": "tiny_factory"}, "expected a model factory as package"),
        ({"kind": "custom", "factory": "a b:c"}, "expected a model factory as package"),
        ({"kind": "custom", "factory": "a:b:c"}, "expected a model factory as package"),
    ],
)
def test_model_config_refuses_bad_fields(kwargs, message):
    fields = {"kind": "mlp", "input_shape": (6,), "num_classes": 3, **kwargs}
    with pytest.raises(PateError, match=message):
        ModelConfig(**fields)


# ----------------------------------------------------------------------------------------------------
# The custom model as a config


def test_custom_config_builds_the_factorys_module_and_round_trips():
    model = ModelConfig("custom", [6], 3, hidden=(99,), factory=MODEL)
    assert model.hidden == () and model.input_shape == (6,)  # hidden means nothing there
    assert isinstance(model.build(), TinyMLP) and model.build(conv="patches") is model.build()
    raw = json.loads(model.to_json())
    assert raw == {
        "kind": "custom",
        "input_shape": [6],
        "num_classes": 3,
        "hidden": [],
        "factory": MODEL,
    }
    assert ModelConfig.from_json(model.to_json()) == model
    assert parameter_count(model) == 6 * 8 + 8 + 8 * 3 + 3
    assert not model.is_convolutional and custom(shape=(8, 8, 1)).is_convolutional
    assert resolve_strategy("auto", model, "cpu") == "loop"  # nothing known of its cost: safe
    assert resolve_strategy("auto", model, "gpu") == "vmap"


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("nosuch.module:f", "cannot import module nosuch.module \\(ModuleNotFoundError: No module"),
        ("os:nosuch", "module os has no attribute nosuch"),
        (
            ref("NOT_CALLABLE"),
            "is a int, expected a callable factory\\(input_shape, num_classes\\)",
        ),
        ("os:getcwd", "calling it with input_shape \\(6,\\) and num_classes 3 raised TypeError"),
        (ref("raises"), "calling it .* raised ValueError: no model for you; expected a flax"),
        (ref("returns_a_string"), "returned a str, expected a flax.linen.Module"),
        (
            ref("wrong_width"),
            "its module returns shape \\(2, 4\\) on a batch of shape \\(2, 6\\), expected logits",
        ),
        (
            ref("with_batch_norm"),
            "its module has variable collections batch_stats, expected only 'params'",
        ),
        (ref("needs_train_flag"), "its module fails on a batch of shape \\(2, 6\\) \\(TypeError"),
        (ref("no_parameters"), "its module has no parameters to train"),
        (
            ref("with_dropout"),
            "its module fails when called as module.apply\\({'params': p}, x\\) on a batch of shape "
            "\\(2, 6\\), with no RNG and no train flag, and differentiated \\(InvalidRngError: "
            'Dropout_0 needs PRNG for "dropout"',
        ),
        (ref("integer_parameter"), "its module fails when called as .*differentiated \\(TypeError"),
    ],
)
def test_a_bad_factory_is_refused_in_one_line_naming_the_field(factory, message):
    with pytest.raises(PateError, match=f"^`factory` '{factory}': {message}") as error:
        custom(factory)
    assert "\n" not in str(error.value)


def test_jobs_check_the_references_form_without_importing_it():
    TeachersJob(shards="s.h5", out="t", model="nosuch.module:f")  # imported by the stage only
    with pytest.raises(PateError, match="`model` 'foo:': expected a model factory as package"):
        TeachersJob(shards="s.h5", out="t", model="foo:")
    with pytest.raises(PateError, match="`model`: 'foo', expected one of auto, .* or a model"):
        TeachersJob(shards="s.h5", out="t", model="foo")
    with pytest.raises(PateError, match="`model` .*: the public strategy trains dense heads"):
        TeachersJob(shards="s.h5", out="t", model=MODEL, public="p.h5")
    with pytest.raises(PateError, match="`model` .*: the public strategy"):
        TeachersJob(
            shards="s.h5", out="t", model=MODEL, public="p.h5", train=TrainConfig(strategy="public")
        )
    paths = {"teachers": "t", "public": "p", "workspace": "w", "out": "o"}
    assert DistillJob(**paths, student_model="nosuch.module:f").student_model == "nosuch.module:f"
    with pytest.raises(PateError, match="student_model='a b:c' as package.module:factory"):
        DistillJob(**paths, student_model="a b:c")
    with pytest.raises(PateError, match="or a model factory package.module:factory"):
        DistillJob(**paths, student_model="foo")


@pytest.mark.parametrize("method", ["supervised", "self-train", "vat"])
def test_every_student_method_trains_a_custom_model(method):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 6)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(np.int64) + (features[:, 1] > 1)
    config = StudentConfig(steps=30, method=method, ensemble=2)
    student = fit_student(features, np.arange(30), labels[:30], custom(), config)
    assert student.model == custom() and isinstance(student.params["Dense_0"], dict)
    probabilities = student.probabilities(features[:7])  # a batch size never seen in training
    assert probabilities.shape == (7, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# Teachers and student of a custom model, from Python and from the command line


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("custom")
    toy_shards(folder / "shards.h5", SHARD_SIZES)
    toy_dataset(folder / "public.h5", 80, (6,), labelled=False)
    toy_dataset(folder / "test.h5", 60, (6,))
    return folder


@pytest.fixture(scope="module")
def library_run(data):
    """Teachers (loop strategy) and a VAT student of the custom model, through the library calls."""
    teachers = train_teachers(
        TeachersJob(
            shards=data / "shards.h5",
            out=data / "lib" / "teachers",
            test=data / "test.h5",
            model=MODEL,
            train=TRAIN,
        )
    )
    distilled = label_and_distill(
        DistillJob(
            teachers=data / "lib" / "teachers",
            public=data / "public.h5",
            workspace=data / "lib" / "ws",
            out=data / "lib" / "release",
            test=data / "test.h5",
            sigma=2.0,
            budget=BudgetConfig(max_epsilon=30.0, max_queries=40),
            noise_seed=5,
            student=StudentConfig(steps=30),
            student_method="vat",
            student_model=MODEL,
        )
    )
    return teachers, distilled


def test_the_library_trains_teachers_and_student_of_a_custom_model(data, library_run):
    teachers, distilled = library_run
    assert teachers.model == MODEL and teachers.ensemble.strategy == "loop"
    loaded = load_teachers(teachers.path)
    assert loaded.model == custom() and loaded.num_teachers == len(SHARD_SIZES)
    assert loaded.params["Dense_0"]["kernel"].shape == (len(SHARD_SIZES), 6, 8)
    np.testing.assert_array_equal(
        loaded.predictions(np.zeros((2, 6), np.float32)).shape, (len(SHARD_SIZES), 2)
    )
    assert distilled.outcome.spent.queries_answered > 0
    assert distilled.report["student"] == {"method": "vat", "model": MODEL, "steps": 30}
    student, attrs = load_student(data / "lib" / "release" / "student.h5")
    assert student.model == custom() and attrs["class_names"] == ("0", "1", "2")
    test = read_dataset(data / "test.h5")
    assert student.accuracy(test.features, test.labels) == pytest.approx(distilled.student_accuracy)


def test_the_command_line_takes_a_custom_model(data, library_run, tmp_path):
    shards, public, test = data / "shards.h5", data / "public.h5", data / "test.h5"
    cli("train-teachers", shards, "--out", tmp_path / "teachers", "--model", MODEL, "--strategy",
        "vmap", *CLI_TRAIN)  # fmt: skip
    with h5py.File(tmp_path / "teachers" / "teachers.h5") as handle:
        assert json.loads(handle.attrs["model"])["factory"] == MODEL
    # vmap trains the same teachers as the library's loop did (float rounding aside).
    lib, cmd = load_teachers(library_run[0].path), load_teachers(tmp_path / "teachers")
    for a, b in zip(leaves(lib.params), leaves(cmd.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    out = cli("label-and-distill", tmp_path / "teachers", "--public", public, "--workspace",
              tmp_path / "ws", "--out", tmp_path / "release", "--test", test, "--student-model",
              MODEL, "--student-steps", "30", "--json", *DISTILL)  # fmt: skip
    summary = json.loads(out.output)
    assert summary["student_model"] == MODEL and summary["queries_answered"] > 0
    predicted = cli("predict", tmp_path / "release" / "student.h5", test, "--json")
    assert json.loads(predicted.output)["accuracy"] == pytest.approx(
        summary["student_test_accuracy"]
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("nosuch.module:f", "error: --model 'nosuch.module:f': cannot import module nosuch.module"),
        ("os:getcwd", "error: --model 'os:getcwd': calling it with input_shape (6,) and"),
        (
            ref("with_dropout"),
            f"error: --model '{ref('with_dropout')}': its module fails when called",
        ),
        ("foo", "Error: Invalid value for '--model': 'foo', expected one of auto, mlp, cnn"),
        ("foo:", "Error: Invalid value for '--model': 'foo:', expected one of auto, mlp, cnn"),
    ],
)
def test_the_command_line_refuses_a_bad_model_in_one_line_writing_nothing(
    data, library_run, tmp_path, model, message
):
    result = cli("train-teachers", data / "shards.h5", "--out", tmp_path / "t", "--model", model,
                 *CLI_TRAIN, expect=2)  # fmt: skip
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(message), result.output
    assert "Traceback" not in result.output
    student = message.replace("--model", "--student-model")
    result = cli("label-and-distill", data / "lib" / "teachers", "--public", data / "public.h5",
                 "--workspace", tmp_path / "ws", "--out", tmp_path / "release", "--student-model",
                 model, *DISTILL, expect=2)  # fmt: skip
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(student), result.output
    assert os.listdir(tmp_path) == []  # no teachers, checkpoints, workspace or release


def test_the_public_strategy_refuses_a_custom_model(data, tmp_path):
    result = cli("train-teachers", data / "shards.h5", "--out", tmp_path / "t", "--model", MODEL,
                 "--public", data / "public.h5", expect=2)  # fmt: skip
    assert result.output.startswith(
        f"error: --model '{MODEL}': the public strategy trains dense heads on extractor features, "
        "not a custom model; leave out --public"
    )
    assert len(result.output.strip().splitlines()) == 1 and os.listdir(tmp_path) == []


def test_files_naming_a_module_that_is_gone_are_refused_in_one_line(data, library_run, tmp_path):
    gone = json.dumps({**json.loads(custom().to_json()), "factory": "nosuch.module:f"})
    teachers = tmp_path / "teachers.h5"
    teachers.write_bytes(Path(library_run[0].path).read_bytes())
    with h5py.File(teachers, "a") as handle:
        handle.attrs["model"] = gone
    with pytest.raises(PateError, match="attribute 'model' cannot be rebuilt: 'factory'") as error:
        load_teachers(teachers)
    assert "\n" not in str(error.value) and "cannot import module nosuch.module" in str(error.value)
    student = tmp_path / "student.h5"
    student.write_bytes((data / "lib" / "release" / "student.h5").read_bytes())
    with h5py.File(student, "a") as handle:
        handle.attrs["model"] = gone
    result = cli("predict", student, data / "test.h5", expect=2)
    assert "attribute 'model' is not a valid model ('factory' 'nosuch.module:f': cannot import" in (
        result.output
    )
    assert len(result.output.strip().splitlines()) == 1
    with h5py.File(student, "a") as handle:
        handle.attrs["model"] = json.dumps({**json.loads(gone), "factory": 3})
    with pytest.raises(PateError, match="attribute 'model' has factory 3, expected a string"):
        load_student(student)
