"""The README's Python example runs as written in an empty folder (on a smaller fleet and shorter
training)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_pipeline() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if "label_and_distill(DistillJob(" in b]
    return block


def test_the_readme_pipeline_runs(tmp_path, monkeypatch):
    code = readme_pipeline()
    # Smaller and faster than the README's numbers, the same calls.
    code = code.replace("vehicles=200", "vehicles=40").replace("num_teachers=20", "num_teachers=5")
    code = code.replace('test=data["test"]))', 'test=data["test"], train=TrainConfig(epochs=2)))')
    code = code.replace("sigma=10,", "sigma=10, noise_seed=1, student=StudentConfig(steps=30),")
    code = (
        "from pate.student_config import StudentConfig\nfrom pate.teachers import TrainConfig\n"
        + code
    )
    monkeypatch.chdir(tmp_path)  # an empty folder, as a newcomer has it: the calls make data/, run/
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    assert namespace["result"].report["queries_answered"] > 0
    assert len(namespace["predictions"].labels) > 0
    assert (tmp_path / "run" / "release" / "student.jax").exists()


@pytest.mark.parametrize("name", ["partition", "train_teachers", "label_and_distill", "predict"])
def test_every_stage_is_importable_from_pate(name):
    import pate

    assert callable(getattr(pate, name))
