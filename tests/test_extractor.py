"""pate.extractor: the public feature extractor is a deterministic function of the public images it is
given and its configuration, reads only the sampled rows (never labels), and encodes to the stated shape.
"""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from pate.errors import PateError
from pate.extractor import (
    ExtractorConfig,
    fit_extractor,
    fit_extractor_from_file,
)
from pate.io import Dataset, file_fingerprint, write_dataset

SHAPE = (10, 10, 1)
CONFIG = ExtractorConfig(
    patch=3, centroids=8, grid=2, iterations=3, sample_images=30, sample_patches=1500, seed=5
)


def images(count: int = 50, shape=SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)


class Recorded:
    """An array that records which rows are read (as an HDF5 dataset would be read)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.rows: list[int] = []

    ndim = property(lambda self: self.array.ndim)
    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index):
        self.rows.extend(np.arange(len(self.array))[index].ravel().tolist())
        return self.array[index]


@pytest.fixture(scope="module")
def public() -> np.ndarray:
    return images()


@pytest.fixture(scope="module")
def fitted(public):
    return fit_extractor(public, CONFIG)


def test_shapes(fitted, public):
    d = SHAPE[2] * CONFIG.patch**2
    assert fitted.input_shape == SHAPE and fitted.scale == pytest.approx(1 / 255)
    assert fitted.mean.shape == (d,) and fitted.mean.dtype == np.float32
    assert fitted.whitening.shape == (d, d) and fitted.whitening.dtype == np.float32
    assert fitted.centroids.shape == (CONFIG.centroids, d) and fitted.centroids.dtype == np.float32
    assert fitted.num_features == CONFIG.num_features == CONFIG.grid**2 * CONFIG.centroids
    features = fitted.features(public[:7], batch_size=4)  # a padded last batch
    assert features.shape == (7, 32) and features.dtype == np.float32
    assert np.isfinite(features).all() and (features >= 0).all()  # triangle activations, sum-pooled
    assert features.any(axis=1).all()
    # The batch size is an implementation detail: each image is encoded on its own.
    np.testing.assert_allclose(fitted.features(public[:7], batch_size=16), features, rtol=1e-5)


def test_float_images_are_not_rescaled():
    floats = images(40).astype(np.float32) / 255.0
    extractor = fit_extractor(floats, CONFIG)
    assert extractor.scale == 1.0
    assert extractor.features(floats[:3]).shape == (3, CONFIG.num_features)


def test_deterministic_per_seed(fitted, public):
    np.random.seed(123)  # global NumPy state plays no part
    again = fit_extractor(public.copy(), CONFIG)
    for name in ("mean", "whitening", "centroids"):
        np.testing.assert_array_equal(getattr(again, name), getattr(fitted, name), err_msg=name)
    np.testing.assert_array_equal(again.features(public[:5]), fitted.features(public[:5]))
    other = fit_extractor(public, dataclasses.replace(CONFIG, seed=6))
    assert not np.array_equal(other.centroids, fitted.centroids)


def test_reads_only_the_sampled_rows_of_the_public_images_it_is_given(fitted, public):
    recorded = Recorded(public)
    extractor = fit_extractor(recorded, CONFIG)
    read = sorted(set(recorded.rows))
    assert len(read) == CONFIG.sample_images < len(public)
    np.testing.assert_array_equal(extractor.centroids, fitted.centroids)
    # Rows it did not sample may hold anything: the extractor is the same.
    changed = public.copy()
    unread = np.setdiff1d(np.arange(len(public)), read)
    changed[unread] = 255 - changed[unread]
    np.testing.assert_array_equal(fit_extractor(changed, CONFIG).centroids, fitted.centroids)
    # A change to a sampled row changes it: the sample is what it learns from.
    changed = public.copy()
    changed[read] = 255 - changed[read]
    assert not np.array_equal(fit_extractor(changed, CONFIG).centroids, fitted.centroids)


def test_from_a_file_reads_features_only_and_records_its_fingerprint(fitted, public, tmp_path):
    def write(path, labels):
        write_dataset(
            path,
            Dataset(
                features=public,
                labels=labels,
                individual_id=np.arange(len(public)),
                num_classes=3,
                split="public",
            ),
        )

    write(tmp_path / "plain.h5", None)
    write(tmp_path / "labelled.h5", np.zeros(len(public), np.int64))
    with h5py.File(tmp_path / "labelled.h5", "a") as handle:
        handle.create_dataset("evaluation_labels", data=np.ones(len(public), np.int64))
    plain = fit_extractor_from_file(tmp_path / "plain.h5", CONFIG)
    labelled = fit_extractor_from_file(tmp_path / "labelled.h5", CONFIG)
    for extractor, name in ((plain, "plain.h5"), (labelled, "labelled.h5")):
        np.testing.assert_array_equal(extractor.centroids, fitted.centroids)
        np.testing.assert_array_equal(extractor.whitening, fitted.whitening)
        assert extractor.public_sha256 == file_fingerprint(tmp_path / name)
    assert fitted.public_sha256 == ""


def test_config_validation_and_json_round_trip():
    assert ExtractorConfig.from_json(CONFIG.to_json()) == CONFIG
    with pytest.raises(PateError, match="Expected extractor kind 'kmeans-patches', found 'pca'"):
        ExtractorConfig.from_json('{"kind": "pca"}')
    for change, message in [
        ({"patch": 0}, r"patch=0 >= 1"),
        ({"centroids": -1}, r"centroids=-1 >= 1"),
        ({"whitening_eps": 0.0}, r"whitening_eps=0.0 > 0"),
        ({"contrast_eps": float("nan")}, r"contrast_eps=nan > 0"),
    ]:
        with pytest.raises(PateError, match=message):
            dataclasses.replace(CONFIG, **change)


def test_bad_public_images_are_refused(fitted):
    with pytest.raises(PateError, match=r"features of shape \(100,\), expected images"):
        fit_extractor(np.zeros((5, 100), np.float32), CONFIG, source="public.h5")
    with pytest.raises(PateError, match="images of 2x2 pixels, expected at least patch=3"):
        fit_extractor(images(5, (2, 2, 1)), CONFIG)
    with pytest.raises(PateError, match=r"patches for centroids=8, expected at least 8"):
        fit_extractor(images(1), dataclasses.replace(CONFIG, sample_patches=4))
    with pytest.raises(PateError, match=r"images of shape \(12, 12, 1\), expected \(10, 10, 1\)"):
        fitted.features(images(2, (12, 12, 1)))
