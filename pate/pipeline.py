"""A pipeline file: the stages' jobs read from one TOML file, checked, run in order, resuming what is finished.

The file has one table per stage, named as the command, with the fields of the stage's job (and of
the configs inside it, flattened: a teachers table takes :class:`~pate.teachers.TrainConfig`'s
``epochs`` next to :class:`~pate.teachers.TeachersJob`'s ``out``)::

    [dataset]                 # pate dataset NAME --out DIR
    name = "adas"
    out = "data"
    vehicles = 200

    [partition]               # pate partition
    input = "data/private.h5"
    out = "shards.h5"
    num_teachers = 20

    [train_teachers]          # pate train-teachers
    shards = "shards.h5"
    out = "teachers"
    epochs = 10

    [label_and_distill]       # pate label-and-distill
    teachers = "teachers"
    public = "data/public.h5"
    workspace = "workspace"
    out = "release"
    sigma = 60.0
    max_epsilon = 3.0

**Reading** (:func:`load_pipeline`). Every path field of every table (the dataset's ``input``,
``private``, ``public``, ``test``, ``source_dir`` included) is read from the file's folder when
relative. Every value is checked against its field's type; a list is a TOML array or a comma string
read as the command reads it (``categorical_columns = "region,plan"``). Errors are one line naming the
file, the table, the key and what was expected.

**Checking** (:func:`check_pipeline`), before the first stage runs: every input exists or is made by
an earlier stage; no output is, holds or lies inside an input or another stage's output; an output that
exists is of its stage's kind. Only the tables present run, in the order above.

**A finished stage** (the dataset folder, the shards file, the teachers file, a release made from its
workspace's whole ledger) is skipped when the parameters it was made with, as its output records them
(the dataset's ``options.json``, the shards file's attributes, the teachers file's ``training``, the
release's ``configuration`` and the ledger's budget in force), are the file's. A changed parameter is
refused with its name and both values, never silently skipped. Why refused rather than rerun: every
stage but the first reads private data, and its rerun would replace an output that later stages and a
spent privacy budget were made from; a new release from new teachers needs a new ledger, which spends
a new budget on the same individuals (the two epsilons add up). That is the user's decision (a new
``out``), not the file's; ``force = true`` in ``[partition]`` or ``[train_teachers]`` replaces
their output (that spends no budget), and the stages after it must then be made anew too. The
exception is the budget, as ``label-and-distill`` treats it: a larger
``max_epsilon`` with ``raise_budget = true`` (recorded in the ledger) or a larger ``max_queries``
continues the same ledger, so the stage runs again and pays only for new answers; a smaller one is
refused. An interrupted stage is rerun: the teachers and label-and-distill stages resume from their
checkpoints and ledger without paying twice. A stage that runs makes its output anew, so a finished
stage after it (made from the old output) is refused too, and so is a workspace whose ledger was
charged for answers of teachers that are to be made anew.
:func:`default_config` is a small demo file that runs as printed (``pate run --print-config``).
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
#: The path fields of each job table (the dataset's come from its builder's signature).
PATH_FIELDS = {
    "partition": ("input", "out"),
    "train_teachers": ("shards", "out", "test", "public", "checkpoint_dir"),
    "label_and_distill": ("teachers", "public", "workspace", "out", "test"),
}
#: Of those, the ones the stage writes.
OUTPUT_FIELDS = {
    "dataset": ("out",),
    "partition": ("out",),
    "train_teachers": ("out", "checkpoint_dir"),
    "label_and_distill": ("workspace", "out"),
}
#: Exit status of a finished stage whose recorded parameters are not the file's (an output exists).
CHANGED = 4


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
class DatasetJob:
    """The ``[dataset]`` table: dataset ``name`` into folder ``out`` with the builder's ``options``."""

    name: str
    out: Path
    options: dict[str, Any]


@dataclass(frozen=True)
class Pipeline:
    """The stages of a pipeline file, each a validated job (``None``: the file does not name it)."""

    path: Path
    dataset: DatasetJob | None = None
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
    base = path.parent.absolute()
    jobs: dict[str, Any] = {}
    for stage, table in raw.items():
        where = f"{path}: [{stage}]"
        if not isinstance(table, dict):
            raise PateError(f"{where} is not a table, expected key = value lines")
        if stage == "dataset":
            jobs[stage] = _dataset_table(where, table, base)
        else:
            table = _resolve_paths(table, PATH_FIELDS[stage], base, where)
            jobs[stage] = build_job(stage, table, where=where)
    return Pipeline(path=path, **jobs)


def _resolve_paths(
    table: dict[str, Any], names: tuple[str, ...], base: Path, where: str
) -> dict[str, Any]:
    """The table with each path field read from ``base`` when relative (a path is a string)."""
    out = dict(table)
    for name in names:
        if name not in out:
            continue
        if not isinstance(out[name], str) or not out[name]:
            raise PateError(f"{where}: key {name!r} is {out[name]!r}, expected a path (a string)")
        value = Path(out[name]).expanduser()
        out[name] = value if value.is_absolute() else base / value
    return out


def _dataset_table(where: str, table: dict[str, Any], base: Path) -> DatasetJob:
    import inspect

    from pate.data import BUILDERS, builder_options

    name = table.get("name")
    if not isinstance(name, str) or name not in BUILDERS:
        raise PateError(f"{where}: key 'name' is {name!r}, expected one of {', '.join(BUILDERS)}")
    if "out" not in table:
        raise PateError(f"{where}: missing key(s) out, expected the folder to write")
    parameters = {
        p.name: p
        for p in inspect.signature(BUILDERS[name]).parameters.values()
        if p.name in builder_options(name)
    }
    paths = ("out", *(key for key, p in parameters.items() if Path in _types(p.annotation)[0]))
    table = _resolve_paths(table, paths, base, where)
    options = {}
    for key, value in table.items():
        if key in ("name", "out"):
            continue
        if key not in parameters:
            raise PateError(
                f"{where}: key {key!r} is not used by dataset {name!r}, expected only "
                f"{', '.join(parameters) or 'name and out'}"
            )
        options[key] = _coerce(value, parameters[key].annotation, where, key)
    missing = [
        key
        for key, p in parameters.items()
        if p.default is inspect.Parameter.empty and key not in options
    ]
    if missing:
        raise PateError(
            f"{where}: missing key(s) {', '.join(missing)}, expected them for dataset {name!r}"
        )
    return DatasetJob(name=name, out=table["out"], options=options)


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
        if key in job_fields:
            job_values[key] = _coerce(value, job_fields[key].type, where, key)
            continue
        for name, fields in nested_fields.items():
            if key in fields:
                nested_values[name][key] = _coerce(value, fields[key].type, where, key)
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


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
_TYPE_NAMES[Path] = "a path (a string)"


def _coerce(value: Any, annotation: Any, where: str, key: str) -> Any:
    """Check a TOML value against a field's annotation: ints where floats are expected are fine; a
    list is a TOML array or a comma string (names as ``pate dataset`` splits them; widths as
    ``64,64`` or ``none``), each element checked."""
    expected, element = _types(annotation)
    if not expected:  # something richer (a config class, a dict): checked by the job itself
        return tuple(value) if isinstance(value, list) else value
    if tuple in expected:
        if isinstance(value, str) and element is not None:
            value = _split(value, element, where, key)
        if isinstance(value, list):
            if element is None:
                return tuple(value)
            return tuple(_coerce(item, element, where, key) for item in value)
    if float in expected and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if Path in expected and isinstance(value, str):
        return Path(value)
    allowed = tuple(t for t in expected if t is not tuple)
    if isinstance(value, allowed) and (bool in expected or not isinstance(value, bool)):
        return value
    names = [_TYPE_NAMES.get(t, "") for t in sorted(expected - {type(None), tuple}, key=str)]
    if tuple in expected:
        what = _TYPE_NAMES.get(element, "a value").split(" ", 1)[1] if element else "value"
        names.append(f"a list of {what}s (a TOML array or a comma string)")
    raise PateError(f"{where}: key {key!r} is {value!r}, expected {' or '.join(names)}")


def _split(text: str, element: type, where: str, key: str) -> list:
    """A comma string as a list: names as ``pate dataset`` splits them, integers (``64,64``;
    ``none`` for the empty list) as the commands read widths."""
    from pate.data import split_names

    if element is str:
        return list(split_names(text))
    if text.strip().lower() in ("none", "linear", "0"):
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PateError(
            f"{where}: key {key!r} is {text!r}, expected comma-separated integers such as "
            "64,64 (or none)"
        ) from None


_NAMES = {"str": str, "int": int, "float": float, "bool": bool, "Path": Path, "None": type(None)}


def _types(annotation: Any) -> tuple[set[type], type | None]:
    """The plain types an annotation allows (a string under ``from __future__ import annotations``),
    and a tuple's element type; an empty set where it is something richer."""
    if isinstance(annotation, str):
        found: set[type] = set()
        element = None
        for part in _split_union(annotation.replace(" ", "")):
            base = part.split("[")[0]
            if base in _NAMES:
                found.add(_NAMES[base])
            elif base == "tuple":
                found.add(tuple)
                inner = part[len("tuple[") :].split(",")[0]
                element = _NAMES.get(inner)
            elif base in ("os.PathLike", "PathLike"):
                found.add(Path)
            else:
                return set(), None
        return found, element
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        found, element = set(), None
        for arg in typing.get_args(annotation):
            inner, inner_element = _types(arg)
            if not inner:
                return set(), None
            found |= inner
            element = element or inner_element
        return found, element
    if origin is tuple:
        args = typing.get_args(annotation)
        return {tuple}, (args[0] if args and args[0] in _NAMES.values() else None)
    return ({annotation} if annotation in _NAMES.values() else set()), None


def _split_union(text: str) -> list[str]:
    """``a|tuple[b,...]|None`` -> its parts, brackets kept whole."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


# ----------------------------------------------------------------------------------------------------
# Checking, before any stage runs


def stage_paths(stage: str, job: Any) -> tuple[dict[str, Path], dict[str, Path], set[Path]]:
    """``(inputs, outputs, products)``: the paths the stage reads and writes, by field, and the
    paths a later stage may read from its outputs."""
    if stage == "dataset":
        from pate.data import OPTIONS_FILE

        inputs = {k: Path(v) for k, v in job.options.items() if isinstance(v, Path)}
        outputs = {"out": Path(job.out)}
        names = ("private.h5", "public.h5", "test.h5", "schema.json", OPTIONS_FILE)
        return inputs, outputs, {Path(job.out) / name for name in names}
    fields = PATH_FIELDS[stage]
    values = {name: getattr(job, name) for name in fields if getattr(job, name) is not None}
    outputs = {k: Path(v) for k, v in values.items() if k in OUTPUT_FIELDS[stage]}
    inputs = {k: Path(v) for k, v in values.items() if k not in OUTPUT_FIELDS[stage]}
    products = {Path(job.out)}
    if stage == "train_teachers":
        from pate.teachers import TEACHERS_FILE

        products.add(Path(job.out) / TEACHERS_FILE)
    return inputs, outputs, products


def check_pipeline(pipeline: Pipeline) -> dict[str, str]:
    """Check every stage before any runs; return each stage's action, ``"run"`` or ``"skipped"``.

    Refuses (one line naming the table and key): an input that does not exist and that no earlier
    stage makes; an output under a file; an output that is, holds or lies inside an input or
    another stage's output (a later
    stage's input inside an earlier stage's product is what a pipeline is); an existing output of
    another kind; a finished stage whose recorded parameters are not the file's; a finished stage
    after one that runs (module docstring).
    """
    from pate.io import refuse_overlap

    path = pipeline.path
    stages = pipeline.stages()
    paths = {stage: stage_paths(stage, getattr(pipeline, stage)) for stage in stages}
    for index, stage in enumerate(stages):
        made_before = set().union(*(paths[s][2] for s in stages[:index]))
        for key, value in paths[stage][0].items():
            if not value.exists() and value not in made_before:
                raise PateError(
                    f"{path}: [{stage}] {key} {value} does not exist and no earlier stage makes it, "
                    "expected an existing file"
                )
    for stage in stages:
        for key, value in paths[stage][1].items():
            above = value.parent
            while not above.exists() and above != above.parent:
                above = above.parent
            if not above.is_dir():
                raise PateError(
                    f"{path}: [{stage}] {key} {value}: {above} is not a folder, expected a path "
                    "inside a folder"
                )
    try:
        for stage in stages:
            inputs, outputs, _ = paths[stage]
            refuse_overlap(
                inputs={f"[{stage}] {k}": v for k, v in inputs.items()},
                outputs={f"[{stage}] {k}": v for k, v in outputs.items()},
            )
        for index, stage in enumerate(stages):
            outputs, products = paths[stage][1], paths[stage][2]
            labelled = {f"[{stage}] {k}": v for k, v in outputs.items()}
            for other in stages:
                if other == stage:
                    continue
                later = stages.index(other) > index
                for key, value in paths[other][0].items():
                    if not (later and value in products):  # a later stage reads what this one makes
                        refuse_overlap(inputs={f"[{other}] {key}": value}, outputs=labelled)
                for key, value in paths[other][1].items():
                    for own, mine in labelled.items():
                        refuse_overlap(inputs={}, outputs={own: mine, f"[{other}] {key}": value})
    except PateError as exc:  # name the file: the overlap names table and key
        raise PateError(f"{path}: {exc}", exit_code=exc.exit_code) from None
    actions: dict[str, str] = {}
    for stage in stages:
        where = f"{path}: [{stage}]"
        finished = _CHECKS[stage](where, getattr(pipeline, stage))
        actions[stage] = "skipped" if finished else "run"
    for index, stage in enumerate(stages):
        if actions[stage] != "run":
            continue
        for later in stages[index + 1 :]:
            if actions[later] == "skipped" and later in ("partition", "train_teachers"):
                if getattr(pipeline, later).force:  # asked to replace it: made anew from the new
                    actions[later] = "run"
                    continue
            if later == "label_and_distill" and actions[later] == "run":
                from pate.labeling import LEDGER_FILE

                ledger = Path(pipeline.label_and_distill.workspace) / LEDGER_FILE
                if ledger.exists():  # its ledger was charged for answers of the old teachers
                    raise PateError(
                        f"{path}: [label_and_distill] workspace {ledger.parent} holds a ledger of "
                        f"teachers made before, but [{stage}] runs before it and makes them anew; "
                        "give [label_and_distill] a new workspace and out (a new budget on the same "
                        "individuals: the two epsilons add up)",
                        exit_code=CHANGED,
                    )
            if actions[later] == "skipped":
                out = getattr(pipeline, later).out
                raise PateError(
                    f"{path}: [{later}] out {out} is finished, but [{stage}] runs before it and makes "
                    f"its input anew; remove {out} (and what follows it) or give [{later}] a new out",
                    exit_code=CHANGED,
                )
    return actions


def _not_of_kind(where: str, key: str, value: Path, kind: str) -> PateError:
    return PateError(
        f"{where} {key} {value}: exists and is not {kind}, expected a new path", exit_code=4
    )


def _changed(where: str, out: Path, changes: list[tuple[str, Any, Any]], hint: str) -> PateError:
    said = "; ".join(
        f"{key} is {now!r} but {out} was made with {then!r}" for key, now, then in changes
    )
    return PateError(
        f"{where} {said}: a finished stage is not rerun with other parameters; set "
        f"{'them' if len(changes) > 1 else 'it'} back, or {hint}",
        exit_code=CHANGED,
    )


_NEW_OUT = "give this table a new out (or force = true to replace it) and rerun the stages after it"


def _compare(recorded: dict, current: dict, skip: tuple[str, ...] = ()) -> list:
    """``(key, current, recorded)`` for every key whose values differ (JSON-normalised)."""
    recorded, current = json.loads(json.dumps(recorded)), json.loads(json.dumps(current))
    changes = []
    for key in sorted(set(recorded) | set(current)):
        if key in skip:
            continue
        if isinstance(recorded.get(key), dict) and isinstance(current.get(key), dict):
            changes += [(f"{key}.{k}", a, b) for k, a, b in _compare(recorded[key], current[key])]
        elif recorded.get(key) != current.get(key):
            changes.append((key, current.get(key), recorded.get(key)))
    return changes


def _check_dataset(where: str, job: DatasetJob) -> bool:
    from pate.data import OPTIONS_FILE, dataset_options

    out = Path(job.out)
    if not out.exists():
        return False
    if not all((out / f"{split}.h5").is_file() for split in ("private", "public", "test")):
        raise _not_of_kind(where, "out", out, "a dataset folder (private.h5, public.h5, test.h5)")
    record = out / OPTIONS_FILE
    if record.is_file():  # a folder made before options were recorded is taken as it is
        try:
            recorded = json.loads(record.read_text())
        except (OSError, ValueError):
            raise PateError(
                f"{record}: not readable JSON, expected the dataset's options"
            ) from None
        current = dataset_options(job.name, job.options)
        changes = _compare(recorded, current, skip=("format",))
        changes = [(k.removeprefix("options."), a, b) for k, a, b in changes]
        if changes:
            raise _changed(
                where, out, changes, "give this table a new out and rerun the stages after it"
            )
    return True


def _check_partition(where: str, job: Any) -> bool:
    import h5py

    from pate.io import open_h5
    from pate.partitioning import METHOD_NAMES, SHARDS_FORMAT

    out = Path(job.out)
    if not out.exists():
        return False
    if not out.is_file() or not h5py.is_hdf5(out):
        raise _not_of_kind(where, "out", out, "a shards file")
    with open_h5(out, "shards file") as handle:
        attrs = {key: handle.attrs.get(key) for key in handle.attrs}
    if str(attrs.get("format")) != SHARDS_FORMAT:
        raise _not_of_kind(where, "out", out, "a shards file")
    recorded = {
        "num_teachers": int(attrs["num_teachers"]),
        "seed": int(attrs["seed"]),
        "method": str(attrs["method"]),
        "individual_column": str(attrs["individual_column"]),
    }
    current = {
        "num_teachers": job.num_teachers,
        "seed": job.seed,
        "method": METHOD_NAMES[job.method],
        "individual_column": job.individual_column,
    }
    changes = _compare(recorded, current)
    names = {v: k for k, v in METHOD_NAMES.items()}
    changes = [
        (k, names.get(a, a), names.get(b, b)) if k == "method" else (k, a, b) for k, a, b in changes
    ]
    if changes:
        if job.force:  # asked to replace it: made anew (nothing private is spent here)
            return False
        raise _changed(where, out, changes, _NEW_OUT)
    return True


#: Training fields that do not change what a teacher learns (TrainConfig's docstring).
_OPERATIONAL = ("devices", "teacher_chunk")


def _check_teachers(where: str, job: Any) -> bool:
    from pate.io import open_h5
    from pate.teachers import TEACHERS_FILE
    from pate.teachers.store import TEACHERS_FORMAT

    out = Path(job.out)
    if not out.exists():
        return False
    path = out / TEACHERS_FILE
    if not out.is_dir() or not path.is_file():
        raise _not_of_kind(where, "out", out, "a teachers folder (teachers.h5)")
    with open_h5(path, "teachers file") as handle:
        if str(handle.attrs.get("format")) != TEACHERS_FORMAT:
            raise _not_of_kind(where, "out", out, "a teachers folder (teachers.h5)")
        training = json.loads(str(handle.attrs["training"]))
        model = json.loads(str(handle.attrs.get("head") or handle.attrs["model"]))
        kind = json.loads(str(handle.attrs["model"]))
    current = dataclasses.asdict(job.train)
    changes = _compare(training, current, skip=_OPERATIONAL)
    if job.hidden is not None and "hidden" in model:
        changes += _compare({"hidden": model["hidden"]}, {"hidden": list(job.hidden)})
    if job.model != "auto" and job.model not in (kind.get("kind"), kind.get("factory")):
        changes.append(("model", job.model, kind.get("factory") or kind.get("kind")))
    if changes:
        if job.force:  # asked to replace it: made anew (nothing private is spent here)
            return False
        raise _changed(where, out, changes, _NEW_OUT)
    return True


def _check_distill(where: str, job: Any) -> bool:
    from pate.distill.release import check_release_dir, release_record
    from pate.distill.workspace import PRIVATE_NOTES_FILE, VOTES_FILE
    from pate.labeling import LEDGER_FILE, budget_history, read_charges, read_header
    from pate.ledger import Ledger

    workspace, out = Path(job.workspace), Path(job.out)
    if workspace.exists():  # a workspace: a ledger, or what a run writes before its first charge
        names = {p.name for p in workspace.iterdir()} if workspace.is_dir() else None
        if names is None or not (LEDGER_FILE in names or names <= {VOTES_FILE, PRIVATE_NOTES_FILE}):
            raise _not_of_kind(where, "workspace", workspace, "a workspace folder (ledger.jsonl)")
    if out.exists() and not (out.is_dir() and (out / "privacy.json").is_file()):
        raise _not_of_kind(where, "out", out, "a release folder (privacy.json)")
    ledger_path = workspace / LEDGER_FILE
    if out.exists():
        check_release_dir(out, ledger_path, force=job.force)  # another run's release: `force`
    if not ledger_path.exists():
        return False
    with Ledger.open(ledger_path, read_only=True) as ledger:
        header, seen = read_header(ledger), len(read_charges(ledger))
        in_force = budget_history(ledger)[-1]
    requested = job.budget.max_epsilon
    if requested != in_force:  # as label-and-distill: only larger, only with `raise_budget`
        if not job.raise_budget:
            raise PateError(
                f"{where} max_epsilon is {requested:g} but the budget in force for {workspace} is "
                f"{in_force:g}; set max_epsilon back to {in_force:g}, or set raise_budget = true to "
                "raise it (recorded in the ledger)"
            )
        if requested < in_force:
            raise PateError(
                f"{where} raise_budget with max_epsilon {requested:g}, expected more than the "
                f"budget in force for {workspace} ({in_force:g}); a spent budget cannot be lowered"
            )
    if release_record(out) != (header.run_id, seen):
        return False  # interrupted: resumes from the ledger
    recorded = json.loads((out / "privacy.json").read_text()).get("configuration")
    if recorded is None:  # a release made before it recorded its configuration: taken as it is
        return requested == in_force
    changes = _compare(recorded, job.public_configuration())
    # The table is flat: `steps`, not `student.steps`.
    changes = [(k.split(".")[-1], a, b) for k, a, b in changes]
    changes = [c for c in changes if c[0] != "max_epsilon"]
    more_queries = [c for c in changes if c[0] == "max_queries"]
    changes = [c for c in changes if c[0] != "max_queries"]
    if changes:
        raise _changed(
            where,
            out,
            changes,
            "give this table a new workspace and out: a new ledger spends a new budget on the "
            "same individuals (the two releases' epsilons add up)",
        )
    if more_queries:
        _, now, then = more_queries[0]
        if now is not None and (then is None or now < then):
            raise PateError(
                f"{where} max_queries is {now!r} but {out} was made with {then!r}; answered "
                "queries cannot be taken back, expected a larger max_queries (or the old one)",
                exit_code=CHANGED,
            )
        return False  # more queries on the same ledger: nothing is paid twice
    return requested == in_force


_CHECKS = {
    "dataset": _check_dataset,
    "partition": _check_partition,
    "train_teachers": _check_teachers,
    "label_and_distill": _check_distill,
}


def stage_is_finished(stage: str, job: Any, *, where: str = "") -> bool:
    """Whether ``stage``'s output is complete and made with ``job``'s parameters (then
    :func:`run_pipeline` skips it); refuses a finished output made with other parameters."""
    return _CHECKS[stage](where or f"[{stage}]", job)


# ----------------------------------------------------------------------------------------------------
# Running


def run_stage(stage: str, job: Any, **hooks: Callable) -> Any:
    """Run one stage's job through the library call its command makes; ``hooks`` are that call's
    progress callbacks (``progress``/``on_phase`` of train_teachers, ``on_batch``/``on_phase`` of
    label_and_distill)."""
    if stage == "dataset":
        from pate.data import make_dataset

        return make_dataset(job.name, job.out, **job.options)
    if stage == "partition":
        from pate.partitioning import partition

        return partition(job)
    if stage == "train_teachers":
        from pate.teachers import train_teachers

        return train_teachers(job, **hooks)
    from pate.distill import label_and_distill

    return label_and_distill(job, **hooks)


def run_pipeline(
    pipeline: Pipeline,
    *,
    on_stage: Callable[[str, str, Any], None] | None = None,
    progress: Callable[[str], Any] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Check the pipeline (:func:`check_pipeline`), then run its stages in order, skipping
    finished ones.

    ``on_stage(stage, status, result)`` is called after each stage with status ``"done"`` or
    ``"skipped"``; ``progress(stage)``, if given, returns the stage's progress hooks (keyword
    arguments of its library call, see :func:`run_stage`); ``on_start(stage)`` before a stage runs.
    Returns each stage's result (``None`` for a skipped stage).
    """
    actions = check_pipeline(pipeline)
    results: dict[str, Any] = {}
    for stage in pipeline.stages():
        job = getattr(pipeline, stage)
        if actions[stage] == "skipped":
            results[stage] = None
            if on_stage:
                on_stage(stage, "skipped", None)
            continue
        if on_start:
            on_start(stage)
        hooks = (
            progress(stage) if progress and stage in ("train_teachers", "label_and_distill") else {}
        )
        results[stage] = run_stage(stage, job, **hooks)
        if on_stage:
            on_stage(stage, "done", results[stage])
    return results


# ----------------------------------------------------------------------------------------------------
# The demo, as a pipeline file

#: The keys the printed file sets (the demo, small so that it runs in about a minute), with why.
DEMO: dict[str, list[tuple[str, Any, str]]] = {
    "dataset": [
        (
            "name",
            "adas",
            'built-in synthetic fleet; your table: name = "csv" with input = '
            '"mine.csv", label_column and individual_column',
        ),
        ("out", "demo/data", "folder to create: private.h5, public.h5, test.h5"),
        ("vehicles", 500, "demo size (the default is 2500 cars, ~100k records)"),
    ],
    "partition": [
        ("input", "demo/data/private.h5", ""),
        ("out", "demo/shards.h5", ""),
        (
            "num_teachers",
            50,
            "demo size; 250 in PATE 2018's setting (more teachers, less noise per vote)",
        ),
    ],
    "train_teachers": [
        ("shards", "demo/shards.h5", ""),
        ("out", "demo/teachers", ""),
        ("test", "demo/data/test.h5", "per-teacher accuracy"),
        ("epochs", 5, "demo size (the default is 40)"),
        ("hidden", [16], "demo size (default widths when left out)"),
    ],
    "label_and_distill": [
        ("teachers", "demo/teachers", ""),
        ("public", "demo/data/public.h5", ""),
        ("workspace", "demo/workspace", "private: votes and the privacy ledger"),
        ("out", "demo/release", "the publishable release"),
        ("test", "demo/data/test.h5", "student accuracy and the majority rate"),
        ("sigma", 20.0, "demo noise for 50 teachers; ~60 for 250 (pate plan sizes it)"),
        ("max_epsilon", 4.0, "the privacy budget; choose it before the run (pate plan)"),
        ("steps", 300, "demo size (the default is 3000 student steps)"),
    ],
}


def default_config() -> str:
    """A pipeline file that runs as printed: the adas demo at a small size (commented as such),
    then every other field of every stage commented out with its default."""
    from pate.data import builder_options

    lines = [
        "# pate pipeline file: `pate run pipeline.toml` checks every table, then runs them in this",
        "# order; a rerun skips finished stages and resumes interrupted ones. Relative paths are read",
        "# from this file's folder. As printed it runs a SMALL DEMO on the built-in adas fleet (about",
        "# 15 s on a laptop CPU, into demo/): change the values marked 'demo' for a real run, and",
        "# name your own data in [dataset]. A commented key shows its default.",
        "",
    ]
    for stage in STAGES:
        demo = {key: (value, why) for key, value, why in DEMO[stage]}
        lines.append(
            f"[{stage}]" + ("" if stage == "dataset" else f"  # pate {stage.replace('_', '-')}")
        )
        for key, (value, why) in demo.items():
            lines.append(_toml_value(key, value) + (f"  # {why}" if why else ""))
        if stage == "dataset":
            lines.append("# seed = 0  # adas: the generator's seed; csv/npz/h5: the split's")
            others = [o for o in builder_options("csv") if o not in demo and o != "seed"]
            lines.append(f"# csv/npz/h5 also take: {', '.join(others)} (as `pate dataset --help`)")
            lines.append("")
            continue
        job_class, nested = _job_classes(stage)
        for cls in (job_class, *nested.values()):
            for f in dataclasses.fields(cls):
                if f.name in nested or f.name in demo or (stage, f.name) in _NOT_PRINTED:
                    continue
                lines.append(_toml_line(f))
        lines.append("")
    return "\n".join(lines)


# The student's `method` is set by label_and_distill's `student_method`.
_NOT_PRINTED = {("label_and_distill", "method")}


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{key} = {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"{key} = {value!r}"
    if isinstance(value, (tuple, list)):
        return f"{key} = {json.dumps(list(value))}"
    return f"{key} = {json.dumps(str(value))}"


def _toml_line(f: dataclasses.Field) -> str:
    """A field as a commented line with its default (``# key =`` where it has none)."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return f'# {f.name} = ""  (required)'
    if value is None:
        return f"# {f.name} ="
    return "# " + _toml_value(f.name, value)
