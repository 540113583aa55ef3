"""A pipeline file: the stages' jobs read from one TOML file, run in order, resuming what is finished.

The file has one table per stage, named as the command, with the fields of the stage's job (and of
the configs inside it, flattened: a teachers table takes :class:`~pate.teachers.TrainConfig`'s
``epochs`` next to :class:`~pate.teachers.TeachersJob`'s ``out``)::

    [dataset]                 # pate dataset NAME --out DIR
    name = "adas"
    out = "data/adas"
    vehicles = 200

    [partition]               # pate partition
    input = "data/adas/private.h5"
    out = "run/shards.h5"
    num_teachers = 20

    [train_teachers]          # pate train-teachers
    shards = "run/shards.h5"
    out = "run/teachers"
    epochs = 10

    [label_and_distill]       # pate label-and-distill
    teachers = "run/teachers"
    public = "data/adas/public.h5"
    workspace = "run/workspace"
    out = "run/release"
    sigma = 60.0
    max_epsilon = 3.0

Relative paths are read from the file's folder. Only the tables present run, in the order above. A
stage whose output is complete is skipped (the dataset's three files, the shards file, the teachers
file, a release made from its workspace's ledger); an interrupted one is rerun, and the teachers and
label-and-distill stages resume from their checkpoints and ledger without paying twice.
:func:`default_config` is the file with every default (``pate run --print-config``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pate.errors import PateError

STAGES = ("dataset", "partition", "train_teachers", "label_and_distill")
PATH_FIELDS = {
    "dataset": ("out", "input", "source_dir"),
    "partition": ("input", "out"),
    "train_teachers": ("shards", "out", "test", "public", "checkpoint_dir"),
    "label_and_distill": ("teachers", "public", "workspace", "out", "test"),
}


def _job_classes(stage: str) -> tuple[type, dict[str, type]]:
    """The stage's job class and its nested config fields (field name -> config class)."""
    if stage == "partition":
        from pate.partitioning import PartitionJob

        return PartitionJob, {}
    if stage == "train_teachers":
        from pate.teachers.config import TeachersJob, TrainConfig

        return TeachersJob, {"train": TrainConfig}
    if stage == "label_and_distill":
        from pate.distill.config import DistillJob
        from pate.labeling import BudgetConfig
        from pate.student_config import StudentConfig

        return DistillJob, {"budget": BudgetConfig, "student": StudentConfig}
    raise PateError(f"stage {stage!r} is unknown, expected one of {', '.join(STAGES)}")


@dataclass(frozen=True)
class Pipeline:
    """The stages of a pipeline file, each a validated job (``None``: the file does not name it)."""

    path: Path
    dataset: dict[str, Any] | None = None
    partition: Any = None
    train_teachers: Any = None
    label_and_distill: Any = None

    def stages(self) -> list[str]:
        return [name for name in STAGES if getattr(self, name) is not None]


def load_pipeline(path: str | os.PathLike) -> Pipeline:
    """Read and validate a pipeline file; one-line errors name the file, table and key."""
    path = Path(path)
    if not path.is_file():
        raise PateError(f"{path}: no such pipeline file, expected a TOML file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PateError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(raw) - set(STAGES))
    if unknown:
        raise PateError(
            f"{path}: table [{unknown[0]}] is unknown, expected tables among {', '.join(STAGES)}"
        )
    if not raw:
        raise PateError(f"{path}: names no stage, expected tables among {', '.join(STAGES)}")
    base = path.parent
    jobs: dict[str, Any] = {}
    for stage, table in raw.items():
        if not isinstance(table, dict):
            raise PateError(f"{path}: [{stage}] is not a table, expected key = value lines")
        table = _resolve_paths(table, PATH_FIELDS[stage], base)
        if stage == "dataset":
            jobs[stage] = _dataset_table(path, table)
        else:
            jobs[stage] = build_job(stage, table, where=f"{path}: [{stage}]")
    return Pipeline(path=path, **jobs)


def _resolve_paths(table: dict[str, Any], names: tuple[str, ...], base: Path) -> dict[str, Any]:
    out = dict(table)
    for name in names:
        if isinstance(out.get(name), str):
            value = Path(out[name]).expanduser()
            out[name] = value if value.is_absolute() else base / value
    return out


def _dataset_table(path: Path, table: dict[str, Any]) -> dict[str, Any]:
    from pate.data import BUILDERS, builder_options

    name, out = table.get("name"), table.get("out")
    if name not in BUILDERS:
        raise PateError(
            f"{path}: [dataset] name is {name!r}, expected one of {', '.join(BUILDERS)}"
        )
    if out is None:
        raise PateError(f"{path}: [dataset] has no out, expected the folder to write")
    options = {k: v for k, v in table.items() if k not in ("name", "out")}
    accepted = builder_options(name)
    for key in options:
        if key not in accepted:
            raise PateError(
                f"{path}: [dataset] key {key!r} is not used by dataset {name!r}, expected only "
                f"{', '.join(accepted) or 'name and out'}"
            )
    return {"name": name, "out": out, "options": options}


def build_job(stage: str, table: dict[str, Any], *, where: str):
    """The stage's job from a flat table of its fields and its configs' fields."""
    job_class, nested = _job_classes(stage)
    job_fields = {f.name: f for f in dataclasses.fields(job_class) if f.name not in nested}
    nested_fields = {
        name: {f.name: f for f in dataclasses.fields(cls)} for name, cls in nested.items()
    }
    job_values: dict[str, Any] = {}
    nested_values: dict[str, dict[str, Any]] = {name: {} for name in nested}
    for key, value in table.items():
        value = _plain(value)
        if key in job_fields:
            job_values[key] = _coerce(value, job_fields[key], where, key)
            continue
        for name, fields in nested_fields.items():
            if key in fields:
                nested_values[name][key] = _coerce(value, fields[key], where, key)
                break
        else:
            known = sorted({*job_fields, *(k for f in nested_fields.values() for k in f)})
            raise PateError(f"{where}: key {key!r} is unknown, expected one of {', '.join(known)}")
    missing = [
        name
        for name, f in job_fields.items()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and name not in job_values
    ]
    if missing:
        raise PateError(
            f"{where}: missing key(s) {', '.join(missing)}, expected them for this stage"
        )
    try:
        for name, cls in nested.items():
            job_values[name] = cls(**nested_values[name])
        return job_class(**job_values)
    except PateError as exc:
        raise PateError(f"{where}: {exc}".replace("`", ""), exit_code=exc.exit_code) from None
    except TypeError as exc:
        raise PateError(f"{where}: {exc}") from None


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _coerce(value: Any, field: dataclasses.Field, where: str, key: str) -> Any:
    """Check a TOML value against the field's annotation (ints where floats are expected are fine)."""
    expected = _types(field.type)
    if value is None or not expected:
        return value
    if float in expected and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if Path in expected and isinstance(value, (str, Path)):
        return Path(value)
    if tuple in expected and isinstance(value, tuple):
        return value
    if not isinstance(value, tuple(t for t in expected if isinstance(t, type))):
        names = " or ".join(sorted(t.__name__ for t in expected if isinstance(t, type)))
        raise PateError(f"{where}: key {key!r} is {value!r}, expected {names}")
    if bool not in expected and isinstance(value, bool):
        raise PateError(f"{where}: key {key!r} is {value!r}, expected a number")
    return value


_NAMES = {"str": str, "int": int, "float": float, "bool": bool, "Path": Path, "None": type(None)}


def _types(annotation: Any) -> set[type]:
    """The plain types an annotation (a string under ``from __future__ import annotations``) allows."""
    if isinstance(annotation, str):
        found: set[type] = set()
        for part in annotation.replace(" ", "").split("|"):
            base = part.split("[")[0]
            if base in _NAMES:
                found.add(_NAMES[base])
            elif base == "tuple":
                found.add(tuple)
            elif base in ("os.PathLike", "PathLike"):
                found.add(Path)
            else:
                return set()  # something richer (a config class, a dict): not checked here
        return found
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        found = set()
        for arg in typing.get_args(annotation):
            inner = _types(arg)
            if not inner:
                return set()
            found |= inner
        return found
    return {annotation} if annotation in _NAMES.values() else set()


# ----------------------------------------------------------------------------------------------------
# Running


def stage_is_finished(stage: str, job: Any) -> bool:
    """Whether ``stage``'s output is already complete (then :func:`run_pipeline` skips it)."""
    if stage == "dataset":
        return all(
            (Path(job["out"]) / f"{split}.h5").is_file() for split in ("private", "public", "test")
        )
    if stage == "partition":
        return Path(job.out).is_file()
    if stage == "train_teachers":
        from pate.teachers import TEACHERS_FILE

        return (Path(job.out) / TEACHERS_FILE).is_file()
    from pate.distill.release import release_record
    from pate.labeling import LEDGER_FILE, read_charges, read_header
    from pate.ledger import Ledger

    ledger_path, previous = Path(job.workspace) / LEDGER_FILE, release_record(Path(job.out))
    if previous is None or not ledger_path.exists():
        return False
    with Ledger.open(ledger_path, read_only=True) as ledger:
        return previous == (read_header(ledger).run_id, len(read_charges(ledger)))


def run_stage(stage: str, job: Any) -> Any:
    """Run one stage's job through its library call."""
    if stage == "dataset":
        from pate.data import build_dataset

        Path(job["out"]).mkdir(parents=True, exist_ok=True)
        return build_dataset(job["name"], job["out"], **job["options"])
    if stage == "partition":
        from pate.partitioning import partition

        return partition(job)
    if stage == "train_teachers":
        from pate.teachers import train_teachers

        return train_teachers(job)
    from pate.distill import label_and_distill

    return label_and_distill(job)


def run_pipeline(
    pipeline: Pipeline, *, on_stage: Callable[[str, str, Any], None] | None = None
) -> dict[str, Any]:
    """Run the pipeline's stages in order, skipping finished ones.

    ``on_stage(stage, status, result)`` is called after each stage with status ``"done"`` or
    ``"skipped"``. Returns each stage's result (``None`` for a skipped stage).
    """
    results: dict[str, Any] = {}
    for stage in pipeline.stages():
        job = getattr(pipeline, stage)
        if stage_is_finished(stage, job):
            results[stage] = None
            if on_stage:
                on_stage(stage, "skipped", None)
            continue
        results[stage] = run_stage(stage, job)
        if on_stage:
            on_stage(stage, "done", results[stage])
    return results


# ----------------------------------------------------------------------------------------------------
# The defaults, as a pipeline file


def default_config() -> str:
    """A pipeline file holding every stage's fields with their defaults (required paths to fill)."""
    lines = [
        "# pate pipeline file: `pate run PIPELINE.toml` runs the tables present, in this order.",
        "# Relative paths are read from this file's folder. Commented keys have no default.",
        "",
        "[dataset]",
        'name = "adas"',
        'out = "data"',
        "",
    ]
    for stage in STAGES[1:]:
        job_class, nested = _job_classes(stage)
        lines.append(f"[{stage}]")
        for cls in (job_class, *nested.values()):
            for f in dataclasses.fields(cls):
                if f.name in nested or (stage, f.name) in _NOT_PRINTED:
                    continue
                lines.append(_toml_line(f))
        lines.append("")
    return "\n".join(lines)


# The student's `method` is set by label_and_distill's `student_method`.
_NOT_PRINTED = {("label_and_distill", "method")}


def _toml_line(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return f'# {f.name} = ""  (required)'
    if value is None:
        return f"# {f.name} ="
    if isinstance(value, bool):
        return f"{f.name} = {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"{f.name} = {value!r}"
    if isinstance(value, (tuple, list)):
        return f"{f.name} = {json.dumps(list(value))}"
    return f"{f.name} = {json.dumps(str(value))}"
