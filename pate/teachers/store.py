"""The teachers file: ``teachers/teachers.h5``, ``format = "pate-teachers"``, private (mode 0600).

Layout::

    params/<layer>/<name>   (T, ...) stacked parameters (of the head, for the public strategy)
    preprocessing/mean, preprocessing/std   (T, ...) per-teacher normalisation; attr scale
    report/accuracy (T,) test accuracy or NaN, report/shard_size (T,), report/steps (T,),
    report/train_loss (T,) mean loss of the last epoch, report/seconds (T,) training time per teacher
        (a chunk's time divided by its teachers for the vectorised strategies)
    individuals   sorted ids of every individual the teachers saw
    extractor/    only for the public strategy: mean (D,), whitening (D, D), centroids (K, D);
                  attrs config (JSON), input_shape, scale, public_sha256
    attrs: format, version, model (JSON: the architecture asked for, on raw records; for a custom
           model its ``factory`` reference, which must be importable to load the file), head (JSON,
           public strategy only: the per-teacher model on extractor features, whose parameters
           ``params`` holds), training (JSON), num_teachers, num_classes, class_names,
           shards_sha256, seconds, strategy, backend, devices, processes, teacher_chunk,
           unit_of_privacy
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import jax
import numpy as np
from flax import traverse_util

from pate.errors import PateError
from pate.extractor import Extractor, ExtractorConfig
from pate.io import atomic_file, decode_ids, file_fingerprint, h5_create, open_h5, require_format
from pate.models import ModelConfig
from pate.teachers.config import TrainConfig
from pate.teachers.ensemble import EnsembleResult
from pate.teachers.shards import Shards, ShardsFile
from pate.teachers.votes import ensemble_predictions, vote_histogram

TEACHERS_FORMAT = "pate-teachers"
TEACHERS_VERSION = 1
TEACHERS_FILE = "teachers.h5"


@dataclass(frozen=True)
class Teachers:
    """A trained ensemble as loaded from ``teachers/teachers.h5``.

    ``model`` is the architecture asked for, on raw records (its ``input_shape`` is the records'
    shape; a student may copy it). For the public strategy the teachers are ``extractor`` (shared,
    learned from public data) followed by ``head``, whose parameters ``params`` holds; otherwise
    ``head`` is None and ``params`` are ``model``'s.
    """

    params: dict
    model: ModelConfig
    scale: float
    mean: np.ndarray
    std: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    accuracy: np.ndarray
    shard_size: np.ndarray
    shards_sha256: str
    sha256: str
    path: str
    attrs: dict
    extractor: Extractor | None = None
    head: ModelConfig | None = None
    steps: np.ndarray | None = None
    train_loss: np.ndarray | None = None
    seconds: np.ndarray | None = None

    @property
    def num_teachers(self) -> int:
        return len(self.mean)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model.input_shape)

    def predictions(self, features: np.ndarray) -> np.ndarray:
        if tuple(features.shape[1:]) != self.input_shape:
            raise PateError(
                f"{self.path}: teachers expect records of shape {self.input_shape}, found "
                f"{tuple(features.shape[1:])}"
            )
        return ensemble_predictions(
            self.params,
            self.head or self.model,
            self.scale,
            self.mean,
            self.std,
            features,
            extractor=self.extractor,
        )

    def votes(self, features: np.ndarray) -> np.ndarray:
        return vote_histogram(self.predictions(features), self.num_classes)


def save_teachers(
    out_dir: Path,
    result: EnsembleResult,
    model_config: ModelConfig,
    config: TrainConfig,
    shards: Shards | ShardsFile,
    accuracy: np.ndarray,
) -> Path:
    """Write the teachers file (private, mode 0600) into ``out_dir``."""
    path = Path(out_dir) / TEACHERS_FILE
    with atomic_file(path, private=True) as tmp:
        with h5_create(tmp) as handle:
            handle.attrs.update(
                {
                    "format": TEACHERS_FORMAT,
                    "version": TEACHERS_VERSION,
                    "model": model_config.to_json(),
                    "training": config.to_json(),
                    "num_teachers": shards.num_teachers,
                    "num_classes": shards.num_classes,
                    "shards_sha256": shards.sha256,
                    "seconds": result.seconds,
                    "strategy": result.strategy,
                    "backend": jax.default_backend(),
                    "devices": result.devices,
                    "processes": result.processes,
                    "teacher_chunk": result.teacher_chunk,
                }
            )
            if shards.class_names:
                handle.attrs["class_names"] = list(shards.class_names)
            handle.attrs["unit_of_privacy"] = _unit_of_privacy(shards.path)
            for name, leaf in traverse_util.flatten_dict(result.params, sep="/").items():
                handle.create_dataset(f"params/{name}", data=np.asarray(leaf))
            prep = handle.create_group("preprocessing")
            prep.attrs["scale"] = result.scale
            prep.create_dataset("mean", data=result.mean)
            prep.create_dataset("std", data=result.std)
            report = handle.create_group("report")
            report.create_dataset("accuracy", data=np.asarray(accuracy, np.float64))
            report.create_dataset("shard_size", data=np.asarray(shards.sizes))
            report.create_dataset("steps", data=result.steps)
            report.create_dataset("train_loss", data=np.asarray(result.train_loss, np.float32))
            report.create_dataset("seconds", data=np.asarray(result.teacher_seconds, np.float64))
            if result.extractor is not None:
                handle.attrs["head"] = result.model.to_json()
                _write_extractor(handle.create_group("extractor"), result.extractor)
            # Individuals the teachers saw, to warn when the public set shares any of them.
            ids = np.unique(shards.individuals())
            if ids.dtype.kind in ("i", "u"):
                handle.create_dataset("individuals", data=ids)
            else:
                handle.create_dataset(
                    "individuals", data=ids.astype(object), dtype=h5py.string_dtype()
                )
    return path


def _write_extractor(group: h5py.Group, extractor: Extractor) -> None:
    group.attrs["config"] = extractor.config.to_json()
    group.attrs["input_shape"] = list(extractor.input_shape)
    group.attrs["scale"] = extractor.scale
    group.attrs["public_sha256"] = extractor.public_sha256
    group.create_dataset("mean", data=extractor.mean)
    group.create_dataset("whitening", data=extractor.whitening)
    group.create_dataset("centroids", data=extractor.centroids)


def _read_extractor(group: h5py.Group) -> Extractor:
    return Extractor(
        config=ExtractorConfig.from_json(str(group.attrs["config"])),
        input_shape=tuple(int(v) for v in group.attrs["input_shape"]),
        scale=float(group.attrs["scale"]),
        mean=group["mean"][()],
        whitening=group["whitening"][()],
        centroids=group["centroids"][()],
        public_sha256=str(group.attrs["public_sha256"]),
    )


def _unit_of_privacy(shards_path: str) -> str:
    """Whose privacy the ensemble protects, as the shards file says ("individual" by default)."""
    with open_h5(shards_path, "shards file") as handle:
        value = handle.attrs.get("unit_of_privacy", "individual")
    return value.decode() if isinstance(value, bytes) else str(value)


def _teachers_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / TEACHERS_FILE if path.is_dir() else path


def load_teachers(path: str | os.PathLike) -> Teachers:
    """Load ``teachers.h5`` (``path`` may be the teachers folder or the file)."""
    path = _teachers_file(path)
    with open_h5(path, "teachers file") as handle:
        require_format(handle, path, TEACHERS_FORMAT)
        flat = {}
        handle["params"].visititems(
            lambda name, obj: (
                flat.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
        params = traverse_util.unflatten_dict(flat, sep="/")
        attrs = {key: handle.attrs[key] for key in handle.attrs}
        report = handle["report"]

        def optional(name: str) -> np.ndarray | None:
            return report[name][()] if name in report else None

        teachers = Teachers(
            params=params,
            model=_model_config(attrs["model"], path, "model"),
            scale=float(handle["preprocessing"].attrs["scale"]),
            mean=handle["preprocessing/mean"][()],
            std=handle["preprocessing/std"][()],
            num_classes=int(attrs["num_classes"]),
            class_names=tuple(
                v.decode() if isinstance(v, bytes) else str(v) for v in attrs.get("class_names", [])
            ),
            accuracy=report["accuracy"][()],
            shard_size=report["shard_size"][()],
            shards_sha256=str(attrs["shards_sha256"]),
            sha256=file_fingerprint(path),
            path=str(path),
            attrs={k: _plain(v) for k, v in attrs.items()},
            extractor=_read_extractor(handle["extractor"]) if "extractor" in handle else None,
            head=_model_config(attrs["head"], path, "head") if "head" in attrs else None,
            steps=optional("steps"),
            train_loss=optional("train_loss"),
            seconds=optional("seconds"),
        )
    return teachers


def _model_config(text, path: Path, name: str) -> ModelConfig:
    """The architecture in attribute ``name``; a custom model's factory is imported and checked here,
    and a failure names the file (not the command's options: the quotes of fields are dropped)."""
    try:
        return ModelConfig.from_json(text)
    except PateError as exc:
        message = str(exc).replace("`", "'")
        raise PateError(f"{path}: attribute {name!r} cannot be rebuilt: {message}") from None


def _plain(value):
    """An HDF5 attribute as a plain Python value."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if hasattr(value, "item") else value


def load_teacher_individuals(path: str | os.PathLike) -> np.ndarray:
    """Sorted ids of every individual the teachers of ``path`` (folder or file) saw."""
    with open_h5(_teachers_file(path), "teachers file") as handle:
        return decode_ids(handle["individuals"][()])
