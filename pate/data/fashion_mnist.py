"""``fashion-mnist``: Zalando's Fashion-MNIST, from the Debian package ``dataset-fashion-mnist``.

Our stand-in for SVHN (which no package registry carries): ten classes of 28x28 grey images, harder
than MNIST. The Debian package (``make data-fashion``) installs the four IDX files in
``/usr/share/datasets/fashion-mnist/``; their sizes and MD5s are those of Debian's
``dataset-fashion-mnist_0.0~git20200523.55506a9-1`` (Debian recompressed the upstream files, so the
checksums differ from Zalando's, but the decompressed images and labels are the upstream ones).

Split, features and privacy unit are those of :mod:`pate.data.mnist`: private = the 60,000 training
images, public = ``test[:9000]`` (unlabeled; true labels only as ``evaluation_labels``), test =
``test[9000:]``; ``uint8`` features of shape ``(N, 28, 28, 1)``; each record is its own individual, with
``individual_id`` = its index in train followed by test.
"""

from __future__ import annotations

from pathlib import Path

from pate.data.files import SourceFile
from pate.data.mnist import load_idx_set, paper_image_split, record_individual_note
from pate.data.splits import write_splits
from pate.errors import PateError

DEFAULT_FOLDER = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": SourceFile(
        "train-images-idx3-ubyte.gz", 26421856, "cf8536b0aa1a6ac5fa3f23001093305c"
    ),
    "train_labels": SourceFile(
        "train-labels-idx1-ubyte.gz", 29491, "10bea18fdb374794d4bb42e356e600c9"
    ),
    "test_images": SourceFile(
        "t10k-images-idx3-ubyte.gz", 4422079, "f78720b4224f21cce2f2ccf2d7a94c9a"
    ),
    "test_labels": SourceFile(
        "t10k-labels-idx1-ubyte.gz", 5125, "0d30e22e447f3c33dab9ed536400ac01"
    ),
}
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def fashion_mnist_available(source_dir: str | Path | None = None) -> bool:
    """Whether the Fashion-MNIST files are present (not verified)."""
    root = Path(source_dir) if source_dir is not None else DEFAULT_FOLDER
    return all((root / source.relpath).is_file() for source in FILES.values())


def build_fashion_mnist(
    out_dir: str | Path, *, source_dir: str | Path | None = None
) -> dict[str, Path]:
    """Write Fashion-MNIST in the PATE split as ``out_dir/{private,public,test}.h5``.

    ``source_dir`` replaces ``/usr/share/datasets/fashion-mnist`` (for an extracted package elsewhere).
    """
    root = Path(source_dir) if source_dir is not None else DEFAULT_FOLDER
    if not fashion_mnist_available(root):
        missing = next(s.relpath for s in FILES.values() if not (root / s.relpath).is_file())
        raise PateError(
            f"{root / missing}: no such file, expected the Debian package dataset-fashion-mnist "
            "(install it with `make data-fashion`)"
        )
    parts = paper_image_split(*load_idx_set(root, FILES))
    return write_splits(
        out_dir,
        name="fashion-mnist",
        parts=parts,
        num_classes=10,
        class_names=CLASS_NAMES,
        attrs={
            "source": "Fashion-MNIST (Xiao et al. 2017), from Debian dataset-fashion-mnist, "
            "MD5-verified",
            "split_note": "PATE MNIST-style split: private = the 60,000 training images; "
            "public = test[:9000] (unlabeled); test = test[9000:]",
            "individual_note": record_individual_note(parts, "Fashion-MNIST"),
            "unit_of_privacy": "record",
        },
    )
