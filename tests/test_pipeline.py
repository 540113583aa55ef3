"""``pate run``: a pipeline file runs the stages it names, resumes what is finished, refuses bad files."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import app
from pate.distill import DistillJob
from pate.io import read_dataset
from pate.labeling import BudgetConfig
from pate.pipeline import load_pipeline
from pate.student_config import StudentConfig
from pate.teachers import TeachersJob, TrainConfig


def run(*args, expect: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def test_print_config_lists_every_field_and_loads_back(tmp_path: Path):
    """The printed file loads as it is: the demo's values set, every other field of every job
    listed (commented out) with its default, and the jobs otherwise at their defaults."""
    text = run("run", "--print-config").output
    raw = tomllib.loads(text)
    assert set(raw) == {"dataset", "partition", "train_teachers", "label_and_distill"}
    for stage, classes in (
        ("train_teachers", (TeachersJob, TrainConfig)),
        ("label_and_distill", (DistillJob, BudgetConfig, StudentConfig)),
    ):
        section = text.split(f"[{stage}]")[1].split("\n[")[0]
        for cls in classes:
            for f in dataclasses.fields(cls):
                if f.name not in ("train", "budget", "student", "method"):
                    assert re.search(rf"^(# )?{f.name} =", section, re.M), (stage, f.name)
    (tmp_path / "p.toml").write_text(text)
    pipeline = load_pipeline(tmp_path / "p.toml")
    assert pipeline.train_teachers == TeachersJob(
        shards=tmp_path / "demo" / "shards.h5",
        out=tmp_path / "demo" / "teachers",
        test=tmp_path / "demo" / "data" / "test.h5",
        hidden=(16,),
        train=TrainConfig(epochs=5),
    )
    assert pipeline.label_and_distill == DistillJob(
        teachers=tmp_path / "demo" / "teachers",
        public=tmp_path / "demo" / "data" / "public.h5",
        workspace=tmp_path / "demo" / "workspace",
        out=tmp_path / "demo" / "release",
        test=tmp_path / "demo" / "data" / "test.h5",
        sigma=20.0,
        budget=BudgetConfig(max_epsilon=4.0),
        student=StudentConfig(steps=300),
    )
    # In an empty folder it passes every check made before the first stage, unchanged.
    from pate.pipeline import check_pipeline

    assert check_pipeline(pipeline) == dict.fromkeys(pipeline.stages(), "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.toml"]


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


# ----------------------------------------------------------------------------------------------------
# The printed demo, run as it is; changes to its finished stages


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """`pate run --print-config > pipeline.toml && pate run pipeline.toml` in an empty folder (the
    command runs from another folder: every path is read from the file's)."""
    folder = tmp_path_factory.mktemp("demo")
    (folder / "pipeline.toml").write_text(run("run", "--print-config").output)
    result = run("run", folder / "pipeline.toml")
    out = result.output
    # Each stage prints what its command prints, then the release's summary as `pate inspect` does.
    for said in (
        " private: ",  # pate dataset
        "shards written to",  # pate partition
        "trained 50 mlp teachers",  # pate train-teachers
        "public records labelled",  # pate label-and-distill
        "asked (gnmax)",
        "student test accuracy = ",
        "release written to",
        "Privacy budget of",  # pate inspect RELEASE
        "differential privacy",  # the release's statement
        "majority rate",
    ):
        assert said in out, (said, out)
    return folder


def copy_of(demo: Path, tmp_path: Path, **changes: str) -> Path:
    """A copy of the finished demo whose pipeline file has the lines ``changes`` replaced
    (``key="new line"``; the first line starting with ``key =``)."""
    folder = tmp_path / "run"
    shutil.copytree(demo, folder)
    text = (folder / "pipeline.toml").read_text()
    for key, line in changes.items():
        text, count = re.subn(rf"^{key} = .*$", line, text, count=1, flags=re.M)
        assert count == 1, key
    (folder / "pipeline.toml").write_text(text)
    return folder


def test_a_pipeline_file_runs_every_stage_then_resumes(demo: Path, tmp_path: Path):
    folder = copy_of(demo, tmp_path)
    report = json.loads((folder / "demo" / "release" / "privacy.json").read_text())
    assert report["queries_answered"] > 0 and report["max_epsilon"] == 4.0
    # The release records the configuration it came from: public values only, no paths.
    assert (
        report["configuration"]["sigma"] == 20.0
        and report["configuration"]["student"]["steps"] == 300
    )
    assert not any(str(demo) in json.dumps(v) for v in report["configuration"].values())
    again = json.loads(run("run", folder / "pipeline.toml", "--json").stdout)
    assert again["stages"] == dict.fromkeys(
        ("dataset", "partition", "train_teachers", "label_and_distill"), "skipped"
    )
    assert again["release"]["epsilon"] == report["epsilon"]
    assert again["release"]["student_test_accuracy"] == report["student_test_accuracy"]
    assert json.loads((folder / "demo" / "release" / "privacy.json").read_text()) == report


@pytest.mark.parametrize(
    ("key", "line", "said"),
    [
        ("vehicles", "vehicles = 501", "[dataset] vehicles is 501 but"),
        ("num_teachers", "num_teachers = 51", "[partition] num_teachers is 51 but"),
        ("epochs", "epochs = 6", "[train_teachers] epochs is 6 but"),
        ("hidden", 'hidden = "16,8"', "[train_teachers] hidden is [16, 8] but"),
        ("sigma", "sigma = 21.0", "[label_and_distill] sigma is 21.0 but"),
        ("steps", "steps = 400", "[label_and_distill] steps is 400 but"),
        ("max_epsilon", "max_epsilon = 4.0\nmax_queries = 2", "max_queries is 2 but"),
    ],
)
def test_a_changed_parameter_of_a_finished_stage_is_refused(
    demo: Path, tmp_path: Path, key: str, line: str, said: str
):
    folder = copy_of(demo, tmp_path, **{key: line})
    before = (folder / "demo" / "release" / "privacy.json").read_text()
    result = run("run", folder / "pipeline.toml", expect=4)
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    assert said in result.output and "skipped" not in result.output
    assert "made with" in result.output and "pipeline.toml" in result.output
    assert (folder / "demo" / "release" / "privacy.json").read_text() == before


def test_force_remakes_a_changed_partition_and_what_follows_must_be_made_anew(
    demo: Path, tmp_path: Path
):
    from pate.pipeline import check_pipeline

    folder = copy_of(demo, tmp_path, num_teachers="num_teachers = 51\nforce = true")
    path = folder / "pipeline.toml"
    result = run("run", path, expect=4)  # the teachers were made from the old shards
    assert "[train_teachers] out" in result.output and "[partition] runs before it" in result.output
    text = path.read_text().replace(
        'out = "demo/teachers"', 'out = "demo/teachers"\nforce = true', 1
    )
    text = text.replace('workspace = "demo/workspace"', 'workspace = "demo/workspace2"')
    path.write_text(text.replace('out = "demo/release"', 'out = "demo/release2"'))
    assert check_pipeline(load_pipeline(path)) == {
        "dataset": "skipped",
        "partition": "run",
        "train_teachers": "run",
        "label_and_distill": "run",
    }


def test_max_epsilon_is_raised_only_as_label_and_distill_raises_it(demo: Path, tmp_path: Path):
    folder = copy_of(demo, tmp_path, max_epsilon="max_epsilon = 6.0")
    before = json.loads((folder / "demo" / "release" / "privacy.json").read_text())
    result = run("run", folder / "pipeline.toml", expect=2)
    assert "max_epsilon is 6 but the budget in force" in result.output
    assert "raise_budget = true" in result.output
    lower = folder / "lower.toml"
    text = (folder / "pipeline.toml").read_text()
    lower.write_text(text.replace("max_epsilon = 6.0", "max_epsilon = 3.0\nraise_budget = true"))
    result = run("run", lower, expect=2)
    assert "a spent budget cannot be lowered" in result.output
    (folder / "pipeline.toml").write_text(
        text.replace("max_epsilon = 6.0", "max_epsilon = 6.0\nraise_budget = true")
    )
    raised = json.loads(run("run", folder / "pipeline.toml", "--json").stdout)
    assert raised["stages"]["label_and_distill"] == "done"
    assert set(list(raised["stages"].values())[:3]) == {"skipped"}
    report = json.loads((folder / "demo" / "release" / "privacy.json").read_text())
    assert report["max_epsilon"] == 6.0 and report["run_id"] == before["run_id"]
    assert report["queries_seen"] > before["queries_seen"]
    assert raised["results"]["label_and_distill"]["epsilon"] == report["epsilon"]
    assert raised["release"]["epsilon"] == report["epsilon"]
    # Raised and recorded: the same file is then finished.
    again = json.loads(run("run", folder / "pipeline.toml", "--json").stdout)
    assert set(again["stages"].values()) == {"skipped"}


def test_a_finished_stage_after_one_that_runs_again_is_refused(demo: Path, tmp_path: Path):
    folder = copy_of(demo, tmp_path)
    shutil.rmtree(
        folder / "demo" / "data"
    )  # the dataset would be made anew, the shards were made from the old
    result = run("run", folder / "pipeline.toml", expect=4)
    assert "[partition] out" in result.output and "[dataset] runs before it" in result.output
    assert not (folder / "demo" / "data").exists()
    # Teachers to be made anew while the workspace holds a ledger charged for the old ones.
    shutil.copytree(demo / "demo" / "data", folder / "demo" / "data")
    shutil.rmtree(folder / "demo" / "release")
    shutil.rmtree(folder / "demo" / "teachers")
    result = run("run", folder / "pipeline.toml", expect=4)
    assert "[label_and_distill] workspace" in result.output and "holds a ledger" in result.output


def test_each_stage_prints_its_commands_warnings(demo: Path, tmp_path: Path):
    """The private data given as the public set: label-and-distill's private warning goes to the
    terminal (stderr) as the command prints it, and the run ends with the release's summary."""
    folder = copy_of(demo, tmp_path, workspace='workspace = "demo/workspace2"')
    text = (folder / "pipeline.toml").read_text()
    text = text.replace('public = "demo/data/public.h5"', 'public = "demo/data/private.h5"')
    (folder / "pipeline.toml").write_text(
        text.replace('out = "demo/release"', 'out = "demo/release2"')
    )
    result = run("run", folder / "pipeline.toml")
    warned = [line for line in result.stderr.splitlines() if "kept out of the release" in line]
    assert warned and warned[0].startswith("warning (private, kept out of the release): ")
    assert "also appear in the private data" in warned[0]
    assert "label_and_distill: skipped" not in result.stdout
    assert "release written to" in result.stdout and "Privacy budget of" in result.stdout
    assert "also appear" not in (folder / "demo" / "release2" / "privacy.json").read_text()


def test_an_output_that_is_an_input_is_refused_not_skipped(demo: Path, tmp_path: Path):
    folder = copy_of(demo, tmp_path)
    text = (folder / "pipeline.toml").read_text()
    only = "[partition]" + text.split("[partition]")[1].split("[train_teachers]")[0]
    (folder / "p.toml").write_text(
        only.replace('out = "demo/shards.h5"', 'out = "demo/data/private.h5"')
    )
    before = (folder / "demo" / "data" / "private.h5").read_bytes()
    result = run("run", folder / "p.toml", expect=2)
    assert "[partition] out is the same path as [partition] input" in result.output
    assert "skipped" not in result.output
    assert (folder / "demo" / "data" / "private.h5").read_bytes() == before


def test_every_stage_is_checked_before_the_first_runs(tmp_path: Path):
    printed = run("run", "--print-config").output
    # A bad input path in the last table: found before the dataset is made.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "p.toml").write_text(
        printed.replace('public = "demo/data/public.h5"', 'public = "demo/data/pubic.h5"')
    )
    result = run("run", tmp_path / "a" / "p.toml", expect=2)
    assert (
        "[label_and_distill] public" in result.output and "pubic.h5 does not exist" in result.output
    )
    assert "no earlier stage makes it" in result.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["p.toml"]
    # An output of another kind already there.
    (tmp_path / "b" / "demo" / "teachers").mkdir(parents=True)
    (tmp_path / "b" / "demo" / "teachers" / "notes.txt").write_text("mine")
    (tmp_path / "b" / "p.toml").write_text(printed)
    result = run("run", tmp_path / "b" / "p.toml", expect=4)
    assert "[train_teachers] out" in result.output and "is not a teachers folder" in result.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["demo", "p.toml"]
    assert sorted(p.name for p in (tmp_path / "b" / "demo").iterdir()) == ["teachers"]
    # A workspace that is some other folder.
    (tmp_path / "b2" / "demo" / "workspace").mkdir(parents=True)
    (tmp_path / "b2" / "demo" / "workspace" / "notes.txt").write_text("mine")
    (tmp_path / "b2" / "p.toml").write_text(printed)
    result = run("run", tmp_path / "b2" / "p.toml", expect=4)
    assert "[label_and_distill] workspace" in result.output and "not a workspace" in result.output
    assert sorted(p.name for p in (tmp_path / "b2" / "demo").iterdir()) == ["workspace"]
    # An output that overlaps another stage's.
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "p.toml").write_text(
        printed.replace('workspace = "demo/workspace"', 'workspace = "demo/teachers/ws"')
    )
    result = run("run", tmp_path / "c" / "p.toml", expect=2)
    assert "[label_and_distill] workspace" in result.output and "lies inside" in result.output
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["p.toml"]
    # An output under a file.
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "afile").write_text("x")
    (tmp_path / "e" / "p.toml").write_text(
        printed.replace('out = "demo/release"', 'out = "afile/release"')
    )
    result = run("run", tmp_path / "e" / "p.toml", expect=2)
    assert "[label_and_distill] out" in result.output and "afile is not a folder" in result.output
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["afile", "p.toml"]
    # Without the [dataset] table, nothing makes the partition's input.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "p.toml").write_text("[partition]" + printed.split("[partition]")[1])
    result = run("run", tmp_path / "d" / "p.toml", expect=2)
    assert "[partition] input" in result.output and "private.h5 does not exist" in result.output


# ----------------------------------------------------------------------------------------------------
# The [dataset] table: paths from the file's folder, every value type-checked, nothing half-made


def table(first: int, rows: int) -> str:
    """A small CSV: one record per person ``first``, ``first + 1``, ..."""
    return "person,region,plan,age,y\n" + "".join(
        f"{i},{'north' if i % 2 else 'south'},{'a' if i % 3 else 'b'},{20 + i % 40},{i % 2}\n"
        for i in range(first, first + rows)
    )


def csv_pipeline(folder: Path, extra: str = "", private_rows: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, first, rows in (
        ("private", 1, private_rows),
        ("public", 101, 10),
        ("test", 201, 12),
    ):
        (folder / f"{split}.csv").write_text(table(first, rows))
    path = folder / "p.toml"
    path.write_text(
        '[dataset]\nname = "csv"\nout = "data"\nprivate = "private.csv"\npublic = "public.csv"\n'
        'test = "test.csv"\nlabel_column = "y"\nindividual_column = "person"\n' + extra
    )
    return path


def test_dataset_paths_are_read_from_the_files_folder(tmp_path: Path, monkeypatch):
    path = csv_pipeline(tmp_path / "project")
    # Another folder holding other files of the same names: the run must not read them.
    elsewhere = tmp_path / "elsewhere"
    csv_pipeline(elsewhere, private_rows=40)
    monkeypatch.chdir(elsewhere)
    result = json.loads(run("run", path, "--json").stdout)
    assert len(read_dataset(tmp_path / "project" / "data" / "private.h5")) == 30
    private = result["results"]["dataset"]["private"]
    assert private["records"] == 30 and private["path"].startswith(str(tmp_path / "project"))
    assert not (elsewhere / "data").exists()
    job = load_pipeline(path).dataset
    assert job.options["private"] == tmp_path / "project" / "private.csv"
    assert job.out == tmp_path / "project" / "data"


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('seed = "abc"', "key 'seed' is 'abc', expected an integer"),
        ("seed = true", "key 'seed' is True, expected an integer"),
        ('public_fraction = "x"', "key 'public_fraction' is 'x', expected a number"),
        (
            "records_are_individuals = 1",
            "key 'records_are_individuals' is 1, expected true or false",
        ),
        ("categorical_columns = 3", "key 'categorical_columns' is 3, expected a list of strings"),
        ("categorical_columns = [1, 2]", "key 'categorical_columns' is 1, expected a string"),
        ("classes = {a = 1}", "key 'classes' is {'a': 1}, expected"),
        ('missing = ["fill"]', "key 'missing' is ['fill'], expected a string"),
    ],
)
def test_every_dataset_value_is_type_checked(tmp_path: Path, line: str, said: str):
    path = csv_pipeline(tmp_path, line + "\n")
    result = run("run", path, expect=2)
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    assert said in result.output and "p.toml: [dataset]" in result.output
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("vehicles = 1.5", "key 'vehicles' is 1.5, expected an integer"),
        ('seed = "abc"', "key 'seed' is 'abc', expected an integer"),
        ("out = 3", "key 'out' is 3, expected a path (a string)"),
        ("name = 7", "key 'name' is 7, expected one of adas"),
    ],
)
def test_adas_values_are_type_checked(tmp_path: Path, line: str, said: str):
    key = line.split(" ")[0]
    text = '[dataset]\nname = "adas"\nout = "d"\nvehicles = 4\n'
    text = re.sub(rf"^{key} = .*$", line, text, flags=re.M) if key in text else text + line
    (tmp_path / "p.toml").write_text(text)
    result = run("run", tmp_path / "p.toml", expect=2)
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    assert said in result.output and "p.toml: [dataset]" in result.output


def test_lists_are_arrays_or_comma_strings_read_as_the_command_reads_them(tmp_path: Path):
    from pate.data import split_names

    as_string = csv_pipeline(tmp_path / "s", 'categorical_columns = "region, plan,"\n')
    as_array = csv_pipeline(tmp_path / "a", 'categorical_columns = ["region", "plan"]\n')
    expected = split_names("region, plan,")
    assert expected == ("region", "plan")
    assert load_pipeline(as_string).dataset.options["categorical_columns"] == expected
    assert load_pipeline(as_array).dataset.options["categorical_columns"] == expected
    result = json.loads(run("run", as_string, "--json").stdout)
    schema = json.loads((tmp_path / "s" / "data" / "schema.json").read_text())
    assert result["stages"] == {"dataset": "done"}
    assert "region" in json.dumps(schema) and "plan" in json.dumps(schema)
    (tmp_path / "w.toml").write_text(
        "[train_teachers]\nshards = 's'\nout = 'o'\nhidden = \"32, 16\"\n"
    )
    assert load_pipeline(tmp_path / "w.toml").train_teachers.hidden == (32, 16)
    (tmp_path / "w.toml").write_text("[train_teachers]\nshards = 's'\nout = 'o'\nhidden = ['a']\n")
    result = run("run", tmp_path / "w.toml", expect=2)
    assert "key 'hidden' is 'a', expected an integer" in result.output


def test_a_failed_dataset_stage_leaves_no_out_folder(tmp_path: Path, monkeypatch):
    path = csv_pipeline(tmp_path)
    monkeypatch.chdir(tmp_path)
    path.write_text(path.read_text().replace('label_column = "y"', 'label_column = "nope"'))
    result = run("run", path, expect=2)
    assert result.stderr.startswith("error:") and "nope" in result.stderr
    assert result.stdout == "dataset: running\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "p.toml", "private.csv", "public.csv", "test.csv"
    ]  # fmt: skip


def test_a_changed_dataset_option_is_refused(tmp_path: Path):
    path = csv_pipeline(tmp_path)
    run("run", path)
    # What the dataset records: its options, defaults filled, no path, nothing read from the data.
    record = json.loads((tmp_path / "data" / "options.json").read_text())
    assert record["name"] == "csv" and record["options"]["seed"] == 0
    assert record["options"]["label_column"] == "y" and "csv" not in json.dumps(record["options"])
    text = path.read_text()
    path.write_text(text + "seed = 5\n")
    result = run("run", path, expect=4)
    assert "[dataset] seed is 5 but" in result.output and "was made with 0" in result.output
    path.write_text(text + "seed = 0\n")  # the default, said: the same parameters
    assert "dataset: skipped" in run("run", path).output
