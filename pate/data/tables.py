"""Streaming import of CSV and Parquet tables (``pate dataset csv`` / ``pate dataset parquet``).

Read through pyarrow's streaming readers (``pyarrow.csv.open_csv``, ``ParquetFile.iter_batches``),
chunk by chunk, in two passes over the input:

1. **scan**: each record's individual id (normalised, :func:`canonical_ids`) and split (a keyed hash
   of that id, :func:`pate.data.splits.split_codes`), the missing-value policy, the label checks, and
   what the schema needs of the public split (:class:`pate.data.schema.PublicStats`);
2. **write**: each chunk encoded under the schema and appended to its split's file
   (:class:`pate.data.splits.SplitWriter`).

Memory is bounded by one chunk (``CSV_BLOCK_BYTES`` of CSV text, a few blocks in flight in pyarrow's
reader; ``PARQUET_BATCH_ROWS`` records of Parquet, read from at most one row group at a time, whose
size the file's writer chose), as text cells, and one write block per split, plus what the schema
needs of the public split:
8 bytes per public record and numeric column (for the medians) and at most
:data:`pate.data.schema.MAX_CATEGORIES` values per column; in the three-file form also the ids of the
public and test files (to refuse an individual in two files). Every cell is read as text, so CSV and
Parquet follow the same schema rules (a Parquet number is its shortest decimal text, a null is an
empty cell).
"""

from __future__ import annotations

import csv
import math
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pate.data.schema import (
    PublicStats,
    canonical_labels,
    encode_labels_with,
    encode_table,
    is_missing,
    nul_error,
    parse_numbers,
    resolve_feature_columns,
    schema_json,
    schema_of,
)
from pate.data.splits import SPLITS, SplitWriter, split_codes
from pate.errors import PateError
from pate.io import atomic_file

CSV_BLOCK_BYTES = 1 << 20
PARQUET_BATCH_ROWS = 1 << 14
SPLIT_CODES = {"private": 0, "public": 1, "test": 2}
ID_LIKE_NAME = re.compile(
    r"^(|#|index|idx|row|rownum|row_?number|row_?id|id|unnamed(:? ?_?\d+)?)$|(^|[_\s])id$"
)


def notify(message: str) -> None:
    """A note for the operator's terminal (stderr): never written to any file."""
    print(f"note: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------------
# Sources: a header and chunks of stripped text cells


@dataclass
class Source:
    path: Path
    kind: str  # "csv" or "parquet"
    header: list[str]
    skip_lines: int = 1

    def chunks(self) -> Iterator[tuple[np.ndarray, int]]:
        """``(cells (n, columns) stripped text, index of the chunk's first record)``."""
        if self.kind == "csv":
            yield from self._csv_chunks()
        else:
            yield from self._parquet_chunks()

    def _columns_as_text(self, columns, start: int) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        out = []
        for name, column in zip(self.header, columns, strict=True):
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                try:
                    column = pc.cast(column, pa.string())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise PateError(
                        f"{self.path}: column {name!r} has type {column.type}, expected numbers, "
                        "text or booleans"
                    ) from None
            column = pc.utf8_trim_whitespace(pc.fill_null(column, ""))
            nul = pc.match_substring(column, "\x00")
            if pc.any(nul).as_py():
                record = start + int(np.argmax(nul.to_numpy(zero_copy_only=False))) + 1
                raise nul_error(self.path, name, record)
            out.append(np.asarray(column.to_numpy(zero_copy_only=False), dtype=str))
        if not out:
            return np.zeros((0, 0), dtype=str)
        return np.stack(out, axis=1)

    def _csv_chunks(self) -> Iterator[tuple[np.ndarray, int]]:
        import pyarrow as pa
        from pyarrow import csv as pacsv

        names = [f"c{i}" for i in range(len(self.header))]
        try:
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    block_size=CSV_BLOCK_BYTES, column_names=names, skip_rows=self.skip_lines
                ),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            start = 0
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                if batch.num_rows:
                    yield self._columns_as_text(batch.columns, start), start
                    start += batch.num_rows
        except pa.ArrowInvalid as exc:
            raise self._csv_error(exc) from None

    def _csv_error(self, exc: Exception) -> PateError:
        """A one-line error for a CSV pyarrow refuses: the record with a wrong field count, found
        again with the csv module, or what pyarrow says."""
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "UTF8" in text or "UTF-8" in text:
            return PateError(f"{self.path}: not UTF-8 text ({text}), expected a CSV file")
        try:
            with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as handle:
                rows = (row for row in csv.reader(handle, skipinitialspace=True) if row)
                next(rows, None)
                for record, row in enumerate(rows, start=1):
                    if len(row) != len(self.header):
                        return PateError(
                            f"{self.path}: record {record} has {len(row)} fields, "
                            f"expected {len(self.header)} as in the header"
                        )
        except csv.Error:
            pass
        return PateError(f"{self.path}: malformed CSV ({text}), expected a CSV file")

    def _parquet_chunks(self) -> Iterator[tuple[np.ndarray, int]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(self.path)
            start = 0
            for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                if batch.num_rows:
                    yield self._columns_as_text(batch.columns, start), start
                    start += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise PateError(
                f"{self.path}: cannot be read as Parquet ({str(exc).splitlines()[0]}), "
                "expected a Parquet file"
            ) from None


def open_source(path: str | Path, kind: str) -> Source:
    """The file's header (names stripped, unique), checked before any record is read."""
    path = Path(path)
    what = "a CSV file" if kind == "csv" else "a Parquet file"
    if not path.is_file():
        raise PateError(f"{path}: no such file, expected {what}")
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            header = [str(name).strip() for name in pq.ParquetFile(path).schema_arrow.names]
        except (pa.ArrowException, OSError) as exc:
            raise PateError(
                f"{path}: cannot be read as Parquet ({str(exc).splitlines()[0]}), expected {what}"
            ) from None
        skip = 0
    else:
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle, skipinitialspace=True)
                row = next((row for row in reader if row), None)
                skip = reader.line_num
        except UnicodeDecodeError as exc:
            raise PateError(f"{path}: not UTF-8 text ({exc.reason}), expected {what}") from None
        except csv.Error as exc:
            raise PateError(f"{path}: malformed CSV ({exc}), expected {what}") from None
        if row is None:
            raise PateError(f"{path}: 0 non-empty lines, expected a header and records")
        header = [name.strip() for name in row]
    if len(set(header)) != len(header):
        duplicate = next(name for name in header if header.count(name) > 1)
        raise PateError(f"{path}: column {duplicate!r} appears twice, expected unique column names")
    return Source(path, kind, header, skip)


def column_index(source: Source, name: str, option: str) -> int:
    if name not in source.header:
        raise PateError(
            f"{source.path}: no column {name!r} (found {source.header}); check {option}"
        )
    return source.header.index(name)


# ----------------------------------------------------------------------------------------------------
# Ids


def canonical_ids(cells: np.ndarray, path, column: str, rows: np.ndarray):
    """``(canonical text, is integer)`` of each id cell: stripped; a number with an integral value
    that fits int64 (``0``, ``0.0``, ``007``, ``1e3``) is that integer, written in decimal; any other
    text is itself. An empty id is an error naming the record."""
    empty = cells == ""
    if empty.any():
        i = int(np.argmax(empty))
        raise PateError(f"{path}: {column!r} of record {int(rows[i])} is empty, expected an id")
    try:  # the common case, every id an integer: no Python call per id
        numbers = np.asarray(cells).astype(np.int64)
    except (ValueError, OverflowError):
        pass
    else:
        return numbers.astype(object), np.ones(len(cells), dtype=bool)
    unique, inverse = np.unique(cells, return_inverse=True)
    canon, integer = [], []
    for value in unique.tolist():
        text, is_int = canonical_id(value)
        canon.append(text)
        integer.append(is_int)
    inverse = inverse.reshape(-1)
    return np.array(canon, dtype=object)[inverse], np.array(integer, dtype=bool)[inverse]


def canonical_id(value: str) -> tuple[str, bool]:
    """One id's canonical text and whether it is an integer (see :func:`canonical_ids`)."""
    value = value.strip()
    try:
        number = int(value)
    except ValueError:
        try:
            real = float(value)
        except ValueError:
            return value, False
        if not math.isfinite(real) or real != int(real):
            return value, False
        number = int(real)
    if -(2**63) <= number < 2**63:
        return str(number), True
    return value, False


# ----------------------------------------------------------------------------------------------------
# The two passes


@dataclass
class _Chunk:
    rows: np.ndarray  # record numbers (1-based) in the file
    splits: np.ndarray  # split code per record
    keep: np.ndarray  # records kept (missing-value policy)
    ids: np.ndarray  # canonical id text (object)
    integer: np.ndarray  # id is an integer
    labels: np.ndarray | None  # stripped label cells
    label_missing: np.ndarray


@dataclass
class _Scan:
    counts: dict = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    integer_ids: dict = field(default_factory=lambda: dict.fromkeys(SPLITS, True))
    unlabeled_left_out: dict = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    public_unlabeled: bool = False
    label_values: dict = field(default_factory=lambda: {"public": set(), "test": set()})
    missing_counts: dict = field(default_factory=dict)  # path -> {column: count}
    first_empty_label: tuple | None = None
    seen_ids: dict = field(default_factory=lambda: {"public": set(), "test": set()})
    row_number_like: dict = field(default_factory=dict)  # (path, column) -> still candidate
    dropped: int = 0


class StreamImport:
    """One import of ``sources`` (``{"all": src}`` split by id, or one source per split)."""

    def __init__(
        self,
        sources: dict[str, Source],
        *,
        label_column: str,
        individual_column: str | None,
        feature_columns: tuple[str, ...] | None,
        categorical_columns: tuple[str, ...],
        classes: tuple[str, ...] | None,
        missing: str,
        public_fraction: float,
        test_fraction: float,
        seed: int,
    ) -> None:
        self.sources = sources
        self.label_column = label_column
        self.individual_column = individual_column
        self.missing = missing
        self.classes = classes
        self.public_fraction, self.test_fraction, self.seed = public_fraction, test_fraction, seed
        self.single = "all" in sources
        public = sources["all"] if self.single else sources["public"]
        for split, source in sources.items():
            if split != "public":
                column_index(source, label_column, "--label-column")
            if individual_column:
                column_index(source, individual_column, "--individual-column")
        for name in feature_columns or ():
            column_index(public, name, "--feature-columns")
        self.features = resolve_feature_columns(
            public.header,
            label_column=label_column,
            individual_column=individual_column,
            feature_columns=feature_columns,
            categorical_columns=tuple(categorical_columns),
            public_path=public.path,
        )
        for source in sources.values():
            if source is not public:
                for name in self.features:
                    column_index(source, name, "the public file's feature columns")
        self.stats = PublicStats(self.features, categorical_columns)
        self.scan = _Scan()
        self.label_checks: dict = {}

    # -- one chunk, as both passes see it

    def _chunk(self, split: str, source: Source, cells: np.ndarray, start: int) -> _Chunk:
        n = len(cells)
        rows = start + np.arange(1, n + 1)
        header = source.header
        if self.individual_column:
            ids, integer = canonical_ids(
                cells[:, header.index(self.individual_column)],
                source.path,
                self.individual_column,
                rows,
            )
        elif self.single:  # each record its own individual: a hash of its cells, not its place
            from pate.data.generic import content_ids

            joined = ["\x1f".join(row) for row in cells.tolist()]
            ids = content_ids([row.encode() for row in joined]).astype(object)
            integer = np.zeros(n, dtype=bool)
        else:  # names, not numbers: a numbering across files would depend on the private count
            ids = np.char.add(f"{split}-", (rows - 1).astype(str)).astype(object)
            integer = np.zeros(n, dtype=bool)
        if self.single:
            splits = split_codes(
                ids,
                public_fraction=self.public_fraction,
                test_fraction=self.test_fraction,
                seed=self.seed,
            )
        else:
            splits = np.full(n, SPLIT_CODES[split])
        labels = None
        label_missing = np.zeros(n, dtype=bool)
        if self.label_column in header:
            labels = cells[:, header.index(self.label_column)]
            label_missing = is_missing(labels)
        keep = np.ones(n, dtype=bool)
        if self.missing == "drop":
            keep &= ~label_missing
            for name in self.features:
                keep &= ~is_missing(cells[:, header.index(name)])
        elif self.missing == "fill":  # unlabeled records: public only (it is unlabeled anyway)
            keep &= ~label_missing | (splits == SPLIT_CODES["public"])
        return _Chunk(rows, splits, keep, ids, integer, labels, label_missing)

    # -- pass 1

    def run_scan(self) -> None:
        order = ["all"] if self.single else ["public", "test", "private"]
        for split in order:
            source = self.sources[split]
            candidates = dict.fromkeys(self.features, True)
            records = 0
            for cells, start in source.chunks():
                chunk = self._chunk(split, source, cells, start)
                self._scan_chunk(split, source, cells, chunk, candidates)
                records += len(cells)
            if records == 0:
                raise PateError(f"{source.path}: 1 non-empty lines, expected a header and records")
            if records > 2:
                for name, still in candidates.items():
                    if still:
                        self.scan.row_number_like[(source.path, name)] = True
        self._finish_scan()

    def _scan_chunk(self, split, source, cells, chunk: _Chunk, candidates) -> None:
        scan = self.scan
        header = source.header
        for name in self.features:  # row numbers: 0..N-1 or 1..N in file order
            if candidates[name] is False:
                continue
            numbers = parse_numbers(cells[:, header.index(name)])
            index = chunk.rows - 1
            if numbers is None or not (
                np.array_equal(numbers, index) or np.array_equal(numbers, index + 1)
            ):
                candidates[name] = False
            elif candidates[name] is True:
                candidates[name] = "zero" if numbers[0] == index[0] else "one"
            elif (candidates[name] == "zero") != np.array_equal(numbers, index):
                candidates[name] = False
        if self.missing == "error":
            counts = scan.missing_counts.setdefault(source.path, {})
            for name in self.features:
                count = int(is_missing(cells[:, header.index(name)]).sum())
                if count:
                    counts[name] = counts.get(name, 0) + count
            if chunk.label_missing.any() and scan.first_empty_label is None:
                i = int(np.argmax(chunk.label_missing))
                scan.first_empty_label = (source.path, int(chunk.rows[i]))
        scan.dropped += int((~chunk.keep).sum())
        for name, code in SPLIT_CODES.items():
            here = chunk.keep & (chunk.splits == code)
            count = int(here.sum())
            scan.counts[name] += count
            if count and not chunk.integer[here].all():
                scan.integer_ids[name] = False
            if self.missing == "fill" and name != "public":
                scan.unlabeled_left_out[name] += int(
                    ((chunk.splits == code) & chunk.label_missing).sum()
                )
            if not count:
                continue
            if name == "public":
                self.stats.update(header, cells[here])
                if chunk.labels is not None and chunk.label_missing[here].any():
                    scan.public_unlabeled = True
            if name in scan.label_values and chunk.labels is not None:
                present = here & ~chunk.label_missing
                scan.label_values[name].update(
                    canonical_labels(np.unique(chunk.labels[present])).tolist()
                )
            if not self.single:
                self._check_overlap(name, source, chunk.ids[here])
        if self.single and chunk.labels is not None:
            self._check_labels(source, chunk)

    def _check_overlap(self, split: str, source: Source, ids: np.ndarray) -> None:
        """Three files: an individual in two of them is refused (privacy rule 8)."""
        unique = {str(v) for v in ids.tolist()}
        for other, seen in self.scan.seen_ids.items():
            if other == split:
                continue
            shared = unique & seen
            if shared:
                first = sorted(shared)[0]
                raise PateError(
                    f"{source.path}: individual {first!r} is in both {other} and {split}, "
                    "expected each individual in one split (ids are compared normalised: "
                    "0.0 and 0 are one individual)"
                )
        if split in self.scan.seen_ids:
            self.scan.seen_ids[split].update(unique)

    def _check_labels(self, source: Source, chunk: _Chunk) -> None:
        """The one file's labels, every record: integers >= 0 or class names (the checks of
        :func:`pate.data.generic.encode_labels`, chunk by chunk)."""
        state = self.label_checks.setdefault(
            "state", {"numeric": True, "first_bad": None, "distinct": set(), "path": source.path}
        )
        present = chunk.keep & ~chunk.label_missing
        labels = chunk.labels[present]
        rows = chunk.rows[present]
        if not len(labels):
            return
        distinct = state["distinct"]
        if len(distinct) < 3:
            distinct.update(canonical_labels(np.unique(labels)).tolist()[:3])
        if not state["numeric"]:
            return
        numbers = parse_numbers(labels)
        if numbers is None:
            state["numeric"] = False
            return
        if state["first_bad"] is None:
            bad = ~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < 0)
            if bad.any():
                i = int(np.argmax(bad))
                state["first_bad"] = (int(rows[i]), numbers[i], str(labels[i]))

    def _finish_scan(self) -> None:
        scan = self.scan
        if self.missing == "error":
            parts = []
            for source in self.sources.values():
                path, counts = source.path, scan.missing_counts.get(source.path, {})
                listed = [f"{name!r} {counts[name]}" for name in source.header if counts.get(name)]
                if listed:
                    parts.append(f"{path}: " + ", ".join(listed))
            if parts:
                raise PateError(
                    f"missing cells (count per column) in {'; '.join(parts)}; expected none "
                    "(or pass --missing drop or --missing fill)"
                )
            if scan.first_empty_label is not None:
                path, record = scan.first_empty_label
                raise PateError(
                    f"{path}: label of record {record} is empty, expected a label "
                    "(or pass --missing fill: unlabeled records then go to the public split only)"
                )
        state = self.label_checks.get("state")
        if state is not None:
            if state["numeric"] and state["first_bad"] is not None:
                record, number, text = state["first_bad"]
                if number < 0 and number == round(number):
                    raise PateError(
                        f"{state['path']}: label of record {record} is {int(number)}, expected "
                        "class ids >= 0 (or string class names)"
                    )
                raise PateError(
                    f"{state['path']}: label of record {record} is {text}, expected an integer "
                    "class id"
                )
            if len(state["distinct"]) < 2 and state["distinct"] and not state["numeric"]:
                raise PateError(
                    f"{state['path']}: labels hold 1 class ({next(iter(state['distinct']))!r}), "
                    "expected at least 2"
                )
        path = self.sources["all"].path if self.single else None
        for split in SPLITS:
            if scan.counts[split] == 0:
                if self.single:
                    raise PateError(
                        f"--public-fraction/--test-fraction: leave no individual for the {split} "
                        f"split of {path}, expected every split non-empty"
                    )
                raise PateError(
                    f"{self.sources[split].path}: no record left after --missing "
                    f"{self.missing}, expected records"
                )

    # -- pass 2

    def schema(self) -> dict:
        public = self.sources["all"] if self.single else self.sources["public"]
        values = [np.array(sorted(v), dtype=str) for v in self.scan.label_values.values() if v]
        return schema_of(
            self.stats,
            label_values=values,
            label_column=self.label_column,
            individual_column=self.individual_column,
            classes=self.classes,
            missing=self.missing,
            public_path=public.path,
        )

    def write(self, out_dir: Path, *, name: str, schema: dict, attrs: dict) -> dict[str, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {split: out_dir / f"{split}.h5" for split in SPLITS}
        public_labels = (
            self.label_column in (self.sources.get("public") or self.sources["all"]).header
            and not self.scan.public_unlabeled
        )
        with ExitStack() as stack:
            writers = {}
            for split in SPLITS:
                tmp = stack.enter_context(atomic_file(paths[split], private=split == "private"))
                writer = SplitWriter(
                    tmp,
                    split=split,
                    num_features=len(schema["feature_names"]),
                    labels=split != "public" or public_labels,
                    integer_ids=self.scan.integer_ids[split],
                    num_classes=schema["num_classes"],
                    name=name,
                    class_names=tuple(schema["classes"]),
                    feature_names=tuple(schema["feature_names"]),
                    attrs={**attrs, "schema": schema_json(schema)},
                )
                stack.callback(writer.abort)
                writers[split] = writer
            order = ["all"] if self.single else ["private", "public", "test"]
            for source_split in order:
                source = self.sources[source_split]
                for cells, start in source.chunks():
                    chunk = self._chunk(source_split, source, cells, start)
                    for split, code in SPLIT_CODES.items():
                        here = chunk.keep & (chunk.splits == code)
                        if not here.any():
                            continue
                        writer = writers[split]
                        features = encode_table(
                            schema, source.header, cells[here], source.path, chunk.rows[here]
                        )
                        labels = None
                        if writer.labels is not None:
                            labels = encode_labels_with(
                                schema, chunk.labels[here], source.path, chunk.rows[here]
                            )
                        ids = chunk.ids[here]
                        if writer.integer_ids:
                            ids = ids.astype(np.int64)
                        else:
                            ids = np.array([str(v) for v in ids.tolist()], dtype=object)
                        writer.append(features, labels, ids)
            for writer in writers.values():
                writer.close()
        return paths

    # -- what the operator is told (stderr only)

    def notes(self, schema: dict) -> list[str]:
        notes = []
        public = self.sources["all"] if self.single else self.sources["public"]
        if self.single:
            notes.append(
                f"the individuals placed in the public and test splits of {public.path} get no "
                "privacy protection: their records are used as public data (the public split's "
                "features go into the release with their answers; the test split is measured "
                "openly). Only the private split is protected."
            )
        described = []
        for entry in schema["columns"]:
            if entry["kind"] == "numeric":
                described.append(f"{entry['name']!r} (numeric)")
            else:
                described.append(
                    f"{entry['name']!r} (categorical, {len(entry['categories'])} values)"
                )
        notes.append(
            f"{len(schema['feature_names'])} feature columns from {len(described)} columns: "
            + ", ".join(described)
        )
        for name in self.features:
            if ID_LIKE_NAME.search(name.lower()):
                notes.append(
                    f"column {name!r} looks like a row number or an id by its name; it is a "
                    "feature: leave it out with --feature-columns if it is not one"
                )
        for (path, name), _ in self.scan.row_number_like.items():
            if not ID_LIKE_NAME.search(name.lower()):
                notes.append(
                    f"column {name!r} of {path} holds the record numbers (0..N-1 or 1..N in file "
                    "order); it is a feature: leave it out with --feature-columns if it is one "
                    "by accident"
                )
        left_out = {s: c for s, c in self.scan.unlabeled_left_out.items() if c}
        if left_out:
            notes.append(
                "records without a label left out (--missing fill; they stay in the public split "
                "only): "
                + ", ".join(f"{count} of the {split} split" for split, count in left_out.items())
                + " (a count of private data: shown here only, written nowhere)"
            )
        if self.missing == "drop" and self.scan.dropped:
            notes.append(
                f"{self.scan.dropped} records with a missing cell dropped (--missing drop; a count "
                "of private data: shown here only, written nowhere)"
            )
        if self.scan.public_unlabeled:
            notes.append(
                "the public split has records without a label, so public.h5 holds no "
                "evaluation_labels (label accuracy cannot be measured)"
            )
        return notes
