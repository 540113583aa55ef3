"""The release reveals nothing private, and no ordinary use of the CLI can pay twice.

Tested the way an auditor would: with the CLI and h5py only. The central test runs the pipeline twice
on the same data with seeded noise and on neighbouring datasets (one individual's records changed),
and checks that no released value differs between neighbours with the same noisy answers while being
equal between the two same-data runs: such a value would tell the neighbours apart.
"""

from __future__ import annotations

import json
import re
import warnings
from fnmatch import fnmatch
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from pate.io import file_fingerprint, read_dataset, write_dataset
from pate.ledger import head_path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--epochs", "3", "--hidden", "16"]
DISTILL = [
    "--sigma",
    "1",
    "--max-epsilon",
    "5000",
    "--max-queries",
    "40",
    "--student-steps",
    "20",
    "--noise-seed",
    "11",
]


def run(*args, expect: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def pipeline(private: Path, data: dict, out: Path, teachers: int = 12) -> Path:
    out.mkdir()
    run("partition", private, "--teachers", teachers, "--out", out / "shards.h5")
    run("train-teachers", out / "shards.h5", "--out", out / "teachers", *TRAIN)
    run(
        "label-and-distill",
        out / "teachers",
        "--public",
        data["public"],
        "--workspace",
        out / "ws",
        "--out",
        out / "release",
        "--test",
        data["test"],
        *DISTILL,
    )
    return out / "release"


def released_values(release: Path) -> dict[str, object]:
    """Every released value, keyed by file and field; JSON text is flattened into its leaves."""
    values: dict[str, object] = {"files": sorted(p.name for p in release.iterdir())}

    def flatten(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}" if not prefix.endswith(":") else prefix + key, inner)
        else:
            values[prefix] = json.dumps(value, sort_keys=True)

    flatten("privacy.json:", json.loads((release / "privacy.json").read_text()))
    values["student.jax:*"] = (release / "student.jax").read_bytes()
    for name in ("student.h5", "labels.h5"):
        with h5py.File(release / name, "r") as handle:

            def visit(path: str, obj, name=name) -> None:
                for key, attr in obj.attrs.items():
                    text = attr.decode() if isinstance(attr, bytes) else attr
                    if isinstance(text, str) and text.startswith("{"):
                        flatten(f"{name}:{path}@{key}:", json.loads(text))
                    else:
                        values[f"{name}:{path}@{key}"] = np.asarray(attr).tobytes()
                if isinstance(obj, h5py.Dataset):
                    values[f"{name}:{path}"] = obj[()].tobytes()

            visit("", handle)
            handle.visititems(visit)
    return values


def change_one_individual(source: Path, target: Path, individual, rng) -> None:
    """A neighbouring dataset: the records of ``individual`` get other labels (same ids, same count)."""
    data = read_dataset(source, require_labels=True)
    labels = data.labels.copy()
    rows = np.flatnonzero(data.individual_id == individual)
    labels[rows] = (labels[rows] + rng.integers(1, data.num_classes, len(rows))) % data.num_classes
    write_dataset(target, type(data)(**{**data.__dict__, "labels": labels, "path": ""}))


def test_no_released_value_tells_neighbouring_datasets_apart(tiny_adas, tmp_path):
    first = released_values(pipeline(tiny_adas["private"], tiny_adas, tmp_path / "a"))
    second = released_values(pipeline(tiny_adas["private"], tiny_adas, tmp_path / "b"))
    assert first.keys() == second.keys()
    same = {key for key in first if first[key] == second[key]}
    # The run id is fresh randomness: it must differ between two runs on the same data.
    assert "privacy.json:run_id" not in same
    # The deterministic part of the release is large: the student's weights and the labels too.
    assert "labels.h5:labels" in same and any(k.startswith("student.h5:params/") for k in same)

    rng = np.random.default_rng(0)
    private_ids = np.unique(read_dataset(tiny_adas["private"]).individual_id)
    compared = 0
    for attempt, individual in enumerate(rng.choice(private_ids, size=4, replace=False)):
        neighbour_data = tmp_path / f"neighbour{attempt}.h5"
        change_one_individual(tiny_adas["private"], neighbour_data, individual, rng)
        release = pipeline(neighbour_data, tiny_adas, tmp_path / f"n{attempt}")
        # The change reached the teachers: a hash of their file would tell the neighbours apart.
        assert file_fingerprint(release.parent / "teachers" / "teachers.h5") != file_fingerprint(
            tmp_path / "a" / "teachers" / "teachers.h5"
        )
        neighbour = released_values(release)
        if neighbour["labels.h5:labels"] != first["labels.h5:labels"] or (
            neighbour["labels.h5:query_index"] != first["labels.h5:query_index"]
        ):
            continue  # other noisy answers: such neighbours are not comparable
        compared += 1
        assert neighbour.keys() == first.keys()
        leaks = sorted(key for key in same if neighbour[key] != first[key])
        assert not leaks, f"released values that differ between neighbours: {leaks}"
    assert compared >= 1, "no neighbour gave the same noisy answers; the test compared nothing"


# -- the allow-list ------------------------------------------------------------------------------------


def documented_fields() -> list[tuple[str, str]]:
    rows = re.findall(
        r"^\| `([^`]+)` \| `([^`]+)` \|", (ROOT / "docs" / "release.md").read_text(), re.M
    )
    return rows


@pytest.fixture(scope="module")
def small_release(tiny_adas, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release-fields")
    return pipeline(tiny_adas["private"], tiny_adas, out / "run", teachers=6)


def test_every_released_field_is_documented(small_release):
    documented = documented_fields()
    assert len(documented) > 40
    for key in released_values(small_release):
        if key == "files":
            continue
        file, field = key.split(":", 1)
        if file == "student.h5" and field.startswith("@privacy:"):
            file, field = "privacy.json", field[len("@privacy:") :]  # the report, as text
        elif file != "privacy.json":
            field = field.split(":")[0]  # a JSON attribute (the model) is documented as a whole
        field = field.lstrip("/")
        assert any(
            file == doc_file and (field == doc_field or fnmatch(field, doc_field))
            for doc_file, doc_field in documented
        ), f"{file}: field {field!r} is released but not listed in docs/release.md"
    for path in small_release.iterdir():
        assert any(path.name == doc_file for doc_file, _ in documented), path.name
    report = json.loads((small_release / "privacy.json").read_text())
    assert report["epsilon_data_dependent"] is None and report["order_data_dependent"] is None
    for name in ("teachers_sha256", "votes_sha256", "ledger_id", "ledger_digest", "warnings"):
        assert name not in report


# -- paying twice, or hiding a spend -------------------------------------------------------------------


@pytest.fixture(scope="module")
def teachers(tiny_adas, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teachers")
    run("partition", tiny_adas["private"], "--teachers", 6, "--out", out / "shards.h5")
    run("train-teachers", out / "shards.h5", "--out", out / "teachers", *TRAIN)
    return out / "teachers"


def distill(teachers: Path, data: dict, workspace, out, *extra, expect: int = 0):
    return run(
        "label-and-distill",
        teachers,
        "--public",
        data["public"],
        "--workspace",
        workspace,
        "--out",
        out,
        "--sigma",
        "4",
        "--max-epsilon",
        "4",
        "--student-steps",
        "30",
        "--noise-seed",
        "11",
        *extra,
        expect=expect,
    )


@pytest.mark.parametrize(
    "workspace, out",
    [("x", "x"), ("r/ws", "r"), ("ws", "ws/release"), ("teachers-link", "fresh")],
)
def test_overlapping_workspace_and_release_are_refused_before_any_charge(
    teachers, tiny_adas, tmp_path, workspace, out
):
    if workspace == "teachers-link":
        (tmp_path / workspace).symlink_to(teachers)
    result = distill(teachers, tiny_adas, tmp_path / workspace, tmp_path / out, expect=2)
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    assert "expected an output apart from every" in result.output
    assert not list(tmp_path.rglob("ledger.jsonl")) and not list(teachers.glob("ledger*"))


def test_force_never_deletes_a_folder_holding_a_ledger(teachers, tiny_adas, tmp_path):
    distill(teachers, tiny_adas, tmp_path / "ws", tmp_path / "release")
    ledger = (tmp_path / "ws" / "ledger.jsonl").read_bytes()
    # Another run's release pointed at the first workspace's parent folder.
    result = distill(teachers, tiny_adas, tmp_path / "ws2", tmp_path / "ws", "--force", expect=4)
    assert "holds a privacy ledger" in result.output and result.output.count("\n") == 1
    assert (tmp_path / "ws" / "ledger.jsonl").read_bytes() == ledger
    assert not (tmp_path / "ws2" / "ledger.jsonl").exists()  # refused before anything was charged


def test_another_runs_release_is_refused_before_any_charge(teachers, tiny_adas, tmp_path):
    distill(teachers, tiny_adas, tmp_path / "ws", tmp_path / "release")
    before = {p.name: p.read_bytes() for p in (tmp_path / "release").iterdir()}
    result = distill(teachers, tiny_adas, tmp_path / "ws2", tmp_path / "release", expect=4)
    assert "already exists and holds another run" in result.output
    assert not (tmp_path / "ws2" / "ledger.jsonl").exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "release").iterdir()} == before
    # A missing parent folder is made (issue 22); one under a file is refused before any charge.
    (tmp_path / "afile").write_text("a file")
    result = distill(
        teachers, tiny_adas, tmp_path / "ws3", tmp_path / "afile" / "release", expect=2
    )
    assert "afile is a file, not a folder" in result.output
    assert not (tmp_path / "ws3").exists()
    distill(teachers, tiny_adas, tmp_path / "ws4", tmp_path / "no" / "release")
    assert (tmp_path / "no" / "release" / "privacy.json").is_file()


def test_a_changed_budget_is_refused_unless_raised_and_then_recorded(teachers, tiny_adas, tmp_path):
    distill(teachers, tiny_adas, tmp_path / "ws", tmp_path / "release")
    ledger = tmp_path / "ws" / "ledger.jsonl"
    before = ledger.read_bytes()
    argv = ["--max-epsilon", "8"]  # given twice: click keeps the last
    result = distill(teachers, tiny_adas, tmp_path / "ws", tmp_path / "release", *argv, expect=2)
    assert "budget in force for this workspace is 4" in result.output
    assert ledger.read_bytes() == before
    distill(teachers, tiny_adas, tmp_path / "ws", tmp_path / "release", *argv, "--raise-budget")
    report = json.loads((tmp_path / "release" / "privacy.json").read_text())
    assert report["max_epsilon"] == 8.0 and report["max_epsilon_history"] == [4.0, 8.0]
    assert 4.0 < report["epsilon"] <= 8.0  # the report never contradicts itself
    inspected = json.loads(run("inspect", tmp_path / "ws", "--json").output)
    assert inspected["max_epsilon_history"] == [4.0, 8.0]
    # Lowering a spent budget is refused even with --raise-budget.
    result = distill(
        teachers, tiny_adas, tmp_path / "ws", tmp_path / "release", "--max-epsilon", "6",
        "--raise-budget", expect=2,
    )  # fmt: skip
    assert "a spent budget cannot be lowered" in result.output


def test_removed_ledger_records_are_detected_with_any_out(teachers, tiny_adas, tmp_path):
    distill(teachers, tiny_adas, tmp_path / "ws", tmp_path / "release", "--batch-queries", "8")
    ledger = tmp_path / "ws" / "ledger.jsonl"
    lines = ledger.read_bytes().split(b"\n")
    ledger.write_bytes(b"\n".join(lines[:-2]) + b"\n")  # the last complete record removed
    shortened = ledger.read_bytes()
    result = distill(teachers, tiny_adas, tmp_path / "ws", tmp_path / "new-release", expect=2)
    assert "complete record(s) were removed" in result.output
    # One error line, the last; before it only the phase lines of the work done (loading votes).
    lines = result.output.splitlines()
    assert lines[-1].startswith("error:")
    assert all(line.endswith(" ...") or ": done in " in line for line in lines[:-1])
    assert ledger.read_bytes() == shortened  # the evidence is not truncated by the refused run
    assert not (tmp_path / "new-release").exists()
    shown = run("inspect", tmp_path / "ws").output
    assert "LEDGER DAMAGED" in shown and "under-counts" in shown
    inspected = json.loads(run("inspect", tmp_path / "ws", "--json").output)
    assert "record(s) were removed" in inspected["ledger_damage"]
    assert head_path(ledger).exists()


def test_teachers_and_public_data_of_other_label_spaces_are_refused(teachers, tiny_adas, tmp_path):
    public = read_dataset(tiny_adas["public"])
    other = type(public)(**{**public.__dict__, "num_classes": 3, "class_names": (), "path": ""})
    write_dataset(tmp_path / "public3.h5", other)
    data = {"public": tmp_path / "public3.h5"}
    result = distill(teachers, data, tmp_path / "ws", tmp_path / "release", expect=2)
    assert "attribute 'num_classes' is 3, expected 6" in result.output
    renamed = type(public)(**{**public.__dict__, "class_names": tuple("abcdef"), "path": ""})
    write_dataset(tmp_path / "renamed.h5", renamed)
    result = distill(
        teachers, {"public": tmp_path / "renamed.h5"}, tmp_path / "ws", tmp_path / "r", expect=2
    )
    assert "attribute 'class_names'" in result.output
    assert not (tmp_path / "ws" / "ledger.jsonl").exists()


def test_the_private_file_given_as_public_is_warned_about_once_plainly(
    teachers, tiny_adas, tmp_path
):
    """The CLI prints the library's private warning itself: no second copy as a Python
    `UserWarning:` (the library still warns its own callers, as a PrivateDataWarning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        private = {"public": tiny_adas["private"]}
        result = distill(teachers, private, tmp_path / "ws", tmp_path / "release")
    lines = [line for line in result.output.splitlines() if "appear in the private data" in line]
    assert len(lines) == 1 and lines[0].startswith("warning (private, kept out of the release): ")
    assert not [w for w in caught if "appear in the private data" in str(w.message)]
    assert "UserWarning" not in result.output


def test_overlap_with_the_private_data_stays_out_of_the_release(teachers, tiny_adas, tmp_path):
    public = read_dataset(tiny_adas["public"])
    private_ids = np.unique(read_dataset(tiny_adas["private"]).individual_id)
    ids = public.individual_id.copy()
    ids[ids == ids[0]] = private_ids[0]  # one public individual is also in the private data
    write_dataset(
        tmp_path / "public.h5",
        type(public)(**{**public.__dict__, "individual_id": ids, "path": ""}),
    )
    result = distill(
        teachers, {"public": tmp_path / "public.h5"}, tmp_path / "ws", tmp_path / "release"
    )
    assert "1 individuals also appear in the private data" in result.output  # the operator sees it
    kept = (tmp_path / "ws" / "warnings.txt").read_text()
    assert "1 individuals also appear" in kept
    assert oct((tmp_path / "ws" / "warnings.txt").stat().st_mode & 0o777) == "0o600"
    for path in (tmp_path / "release").iterdir():
        assert b"appear in the private data" not in path.read_bytes(), path


def test_the_student_is_shown_against_the_majority_rate_and_warned_about(
    teachers, tiny_adas, tmp_path
):
    test = read_dataset(tiny_adas["test"])
    one_class = type(test)(**{**test.__dict__, "labels": np.zeros_like(test.labels), "path": ""})
    write_dataset(tmp_path / "test0.h5", one_class)  # always class 0: the majority rate is 1.0
    result = distill(
        teachers, tiny_adas, tmp_path / "ws", tmp_path / "release", "--test", tmp_path / "test0.h5"
    )
    assert "does not beat always predicting the test set's most common class (1.0000)" in (
        result.output
    )
    report = json.loads((tmp_path / "release" / "privacy.json").read_text())
    assert report["test_majority_rate"] == 1.0 and report["student_test_accuracy"] <= 1.0
    real = distill(
        teachers,
        tiny_adas,
        tmp_path / "ws2",
        tmp_path / "r2",
        "--test",
        tiny_adas["test"],
        "--json",
    )
    summary = json.loads(real.output[real.output.index("{") :])
    expected = np.bincount(test.labels).max() / len(test.labels)
    assert summary["test_majority_rate"] == pytest.approx(expected)


def test_no_command_output_replaces_a_ledger_file(teachers, tiny_adas, tmp_path):
    distill(teachers, tiny_adas, tmp_path / "ws", tmp_path / "release")
    ledger = tmp_path / "ws" / "ledger.jsonl"
    before = ledger.read_bytes()
    for target in (ledger, tmp_path / "ws" / "ledger.jsonl.head"):
        saved = target.read_bytes()
        result = run(
            "partition", tiny_adas["private"], "--teachers", 3, "--out", target, "--force", expect=4
        )
        assert "is a privacy ledger, which is never replaced" in result.output
        assert target.read_bytes() == saved
    assert ledger.read_bytes() == before
