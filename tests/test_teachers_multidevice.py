"""The teacher axis over a device mesh and over processes gives the one-device teachers.

Run in its own process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (``make test`` does);
skipped when fewer than 4 devices exist.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from teacher_data import toy_dataset, toy_shards

from pate.models import ModelConfig
from pate.teachers import TrainConfig, load_teachers, open_shards, train_ensemble

pytestmark = [
    pytest.mark.multidevice,
    pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices (XLA_FLAGS=...=4)"),
]

SIZES = [40, 25, 33, 10, 50, 17, 29]  # 7 teachers: the last chunk is padded
MLP = ModelConfig(kind="mlp", input_shape=(6,), num_classes=3, hidden=(16,))
ROOT = Path(__file__).resolve().parents[1]


def config(**kwargs) -> TrainConfig:
    return TrainConfig(
        epochs=3, batch_size=8, learning_rate=1e-2, strategy="vmap", teacher_chunk=4, **kwargs
    )


def assert_same_teachers(a, b) -> None:
    """Equal to float rounding: a device holds 1 teacher of the chunk instead of 4, and XLA may
    block the batched matrix products differently for the smaller per-device batch; no operation
    mixes teachers, so the difference is rounding only (it is zero where XLA keeps the blocking)."""
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_four_devices_train_the_one_device_teachers(tmp_path):
    toy_shards(tmp_path / "shards.h5", SIZES)
    source = open_shards(tmp_path / "shards.h5")
    one = train_ensemble(source, MLP, config())
    four = train_ensemble(source, MLP, config(devices=4))
    assert four.devices == 4 and four.teacher_chunk == 4
    assert_same_teachers(one.params, four.params)
    np.testing.assert_allclose(one.mean, four.mean)
    np.testing.assert_array_equal(one.steps, four.steps)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_the_one_process_teachers(tmp_path):
    """Two processes x 2 devices (jax.distributed on localhost) against one process."""
    toy_shards(tmp_path / "shards.h5", SIZES)
    test = toy_dataset(tmp_path / "test.h5", 50, (6,))
    common = [
        "-m",
        "cli.main",
        "train-teachers",
        str(tmp_path / "shards.h5"),
        "--test",
        str(test),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--hidden",
        "16",
        "--learning-rate",
        "0.01",
        "--strategy",
        "vmap",
        "--teacher-chunk",
        "4",
        "--no-checkpoints",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    address = f"127.0.0.1:{free_port()}"
    processes = [
        subprocess.Popen(
            [sys.executable, *common, "--out", str(tmp_path / "multi"), "--devices", "2"]
            + ["--coordinator", address, "--num-processes", "2", "--process-id", str(rank)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [process.communicate(timeout=240)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    single = subprocess.run(
        [sys.executable, *common, "--out", str(tmp_path / "single")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert single.returncode == 0, single.stderr
    multi, one = load_teachers(tmp_path / "multi"), load_teachers(tmp_path / "single")
    assert multi.attrs["processes"] == 2 and multi.attrs["devices"] == 4
    assert_same_teachers(one.params, multi.params)
    np.testing.assert_allclose(one.mean, multi.mean)
    np.testing.assert_array_equal(one.steps, multi.steps)
