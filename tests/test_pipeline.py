"""``pate run``: a pipeline file runs the stages it names, resumes what is finished, refuses bad files."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import app
from pate.distill import DistillJob
from pate.pipeline import load_pipeline
from pate.teachers import TeachersJob, TrainConfig

PIPELINE = """
[dataset]
name = "adas"
out = "data"
vehicles = 40

[partition]
input = "data/private.h5"
out = "run/shards.h5"
num_teachers = 5

[train_teachers]
shards = "run/shards.h5"
out = "run/teachers"
epochs = 2
hidden = [16]

[label_and_distill]
teachers = "run/teachers"
public = "data/public.h5"
workspace = "run/workspace"
out = "run/release"
test = "data/test.h5"
sigma = 4
max_epsilon = 4
steps = 40
noise_seed = 3
"""


def run(*args, expect: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def test_a_pipeline_file_runs_every_stage_then_resumes(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "pipeline.toml").write_text(PIPELINE)
    first = json.loads(run("run", tmp_path / "pipeline.toml", "--json").output)
    assert first["stages"] == {
        "dataset": "done",
        "partition": "done",
        "train_teachers": "done",
        "label_and_distill": "done",
    }
    report = json.loads((tmp_path / "run" / "release" / "privacy.json").read_text())
    assert report["queries_answered"] > 0 and report["max_epsilon"] == 4.0
    # The release records the configuration it came from: public values only, no paths.
    assert (
        report["configuration"]["sigma"] == 4.0
        and report["configuration"]["student"]["steps"] == 40
    )
    assert not any("run/" in json.dumps(v) for v in report["configuration"].values())
    again = json.loads(run("run", tmp_path / "pipeline.toml", "--json").output)
    assert set(again["stages"].values()) == {"skipped"}


def test_print_config_lists_every_default_and_loads_back(tmp_path: Path):
    text = run("run", "--print-config").output
    raw = tomllib.loads(text)
    assert set(raw) == {"dataset", "partition", "train_teachers", "label_and_distill"}
    filled = text.replace('# input = ""  (required)', 'input = "p.h5"')
    for key in ("shards", "teachers", "public", "workspace"):
        filled = filled.replace(f'# {key} = ""  (required)', f'{key} = "{key}"')
    filled = filled.replace('# out = ""  (required)', 'out = "o"')
    filled = filled.replace('# num_teachers = ""  (required)', "num_teachers = 3")
    (tmp_path / "p.toml").write_text(filled)
    pipeline = load_pipeline(tmp_path / "p.toml")
    defaults = TrainConfig()
    assert pipeline.train_teachers.train == defaults
    assert pipeline.train_teachers == TeachersJob(
        shards=tmp_path / "shards", out=tmp_path / "o", train=defaults
    )
    job = pipeline.label_and_distill
    assert job == DistillJob(
        teachers=tmp_path / "teachers",
        public=tmp_path / "public",
        workspace=tmp_path / "workspace",
        out=tmp_path / "o",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nonsense]\nx = 1\n", "table [nonsense] is unknown"),
        (
            "[partition]\ninput = 'a'\nout = 'b'\nnum_teachers = 3\ncolour = 1\n",
            "key 'colour' is unknown",
        ),
        (
            "[partition]\ninput = 'a'\nout = 'b'\nnum_teachers = 'many'\n",
            "key 'num_teachers' is 'many'",
        ),
        ("[partition]\ninput = 'a'\n", "missing key(s) out, num_teachers"),
        (
            "[label_and_distill]\nteachers='t'\npublic='p'\nworkspace='w'\nout='o'\nsigma=-1\n",
            "sigma=-1",
        ),
        (
            "[dataset]\nname = 'adas'\nout = 'd'\ncolumns = 3\n",
            "key 'columns' is not used by dataset",
        ),
        ("not toml at all = = =\n", "not valid TOML"),
        ("", "names no stage"),
    ],
)
def test_a_bad_pipeline_file_gets_one_line(tmp_path: Path, text: str, message: str):
    (tmp_path / "p.toml").write_text(text)
    result = run("run", tmp_path / "p.toml", expect=2)
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    assert message in result.output and "p.toml" in result.output
