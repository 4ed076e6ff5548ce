"""Table files -> rows: one reader per file format, chosen by the file's suffix.

    suffix          reader        its columns
    .csv            CsvTable      the header's names
    .tsv, .tab      TsvTable      the header's names (tab-separated)
    .parquet, .pq   ParquetTable  the schema's columns; only the columns used are read
    .npy            NpyTable      a structured array's fields, or "0".."d-1" for a plain 2-D array
    .npz            NpzTable      the archive's arrays (a 2-D array x gives x[0], x[1], ...; images)
    .h5, .hdf5      Hdf5Table     `key:` a group's data sets, a compound data set's fields, or
                                  "0".."d-1" for a plain 2-D data set (in hdf5_root.py)
    .root           RootTable     the branches of the TTree `tree:` (uproot, the `hep` extra; in
                                  hdf5_root.py)

A new format is one Table subclass with `@table_format(".suffix")`.

A reader lists its columns (`names`) and reads some of them, for every row (`read`) or, when the
table is streamed, chunk by chunk (`scan` walks the file once, `read_chunk` re-reads one chunk).
A block of columns is a DataFrame (text formats, parquet) or a dict of numpy arrays (array formats,
whose arrays may be 2-D or images); `columns.py` turns either into float32 features and raw labels
with the same checks and messages. Every problem a user can fix raises SpecError with the key
relative to `data:` (path, train, key, tree, ...) and a message naming the file.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .columns import (
    Block,
    Origin,
    block_length,
    check_missing,
    choose,
    drop_note,
    feature_values,
    listing,
    target_values,
)
from .errors import SpecError

HEP_INSTALL = 'pip install "dlcli[hep]" (or uv sync --extra hep)'


@dataclass
class Rows:
    """One file's (or one split's) rows before labels are encoded and values scaled."""

    x: np.ndarray  # float32 (n, *input_shape); NaN where values are missing (missing: mean)
    y: np.ndarray  # raw labels (n,) for classification; float32 (n, k) for regression
    columns: list[str]  # the file's columns (csv) / arrays (npz) / branches (ROOT) the features came from
    names: list[str] | None  # one name per feature value; None for images
    origin: Origin
    notes: list[str] = field(default_factory=list)  # what reading did: rows dropped, ...

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.x[index], self.y[index], self.columns, self.names, self.origin, self.notes)


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive rows a streamed table re-reads by itself: rows [start, start + rows)."""

    start: int
    rows: int
    where: Any  # the reader's locator: a row range, byte range, row group


# ----------------------------------------------------------------------------------------------
# Reading rows


def read_rows(origin: Origin, task: str, columns: list[str] | None = None) -> Rows:
    """Every row of one file; `columns` are the feature columns to take (else chosen from the config)."""
    with open_table(origin) as table:
        return table_rows(table, origin, task, columns)


def frame_rows(frame: pd.DataFrame, origin: Origin, task: str, columns: list[str] | None = None) -> Rows:
    """The rows of a frame already in memory (scikit-learn and OpenML data sets)."""
    return table_rows(FrameTable(frame, origin), origin, task, columns)


def table_rows(table: Table, origin: Origin, task: str, columns: list[str] | None = None) -> Rows:
    """Features as one float32 array (column by column: no float64 table copy), target as labels."""
    features = choose(table, origin, columns)
    numeric = table.read_float32(features, origin.target)
    if numeric is not None:  # features parsed straight into one float32 array
        x, block = numeric
        names = list(features)
    else:
        block = table.read([*features, origin.target])
        if block_length(block, features, origin) == 0:
            raise SpecError(f"{origin.file} has no data rows{table.empty_hint}", origin.key)
        x, names = feature_values(block, features, origin)
    check_missing(x, names or features, origin)
    y = target_values(block, origin, task)
    del block
    notes = []
    if origin.data.missing == "drop":
        nan = np.isnan(x.reshape(len(x), -1))
        lost = nan.any(axis=1)
        if lost.any():
            notes.append(drop_note(origin.file, int(lost.sum()), len(x), nan.any(axis=0), names or features))
            x, y = x[~lost], y[~lost]
            if len(x) == 0:
                raise SpecError(f"{origin.file}: every row has a missing value; with missing: drop no rows "
                                "are left (use missing: mean)", "missing")
    return Rows(x, y, features, names, origin, notes)


# ----------------------------------------------------------------------------------------------
# Readers


FORMATS: dict[str, type[Table]] = {}  # suffix -> reader
FORMAT_KEYS = {  # data: keys that only some formats take (a reader lists its own in `options`)
    "key": "the table inside an HDF5 file",
    "tree": "the tree to read from a ROOT file",
    "branches": "the features of a ROOT file (give features: for other files)",
}


def table_format(*suffixes: str):
    """Register a reader class for file suffixes (lower case, with the dot)."""

    def register(cls: type[Table]) -> type[Table]:
        cls.suffixes = suffixes
        for suffix in suffixes:
            FORMATS[suffix] = cls
        return cls

    return register


def open_table(origin: Origin) -> Table:
    """The reader for a file, by suffix; checks the file exists and format-only keys fit it."""
    file = Path(origin.file)
    if not file.exists():
        hint = "; relative paths are relative to the config file's folder" if origin.in_config else ""
        raise SpecError(f"data file not found: {file}{hint}", origin.key)
    if file.is_dir():
        raise SpecError(f"{file} is a folder; give a table file ({supported()})", origin.key)
    reader = FORMATS.get(file.suffix.lower())
    if reader is None:
        raise SpecError(f"unsupported file type '{file.suffix}' ({file}); tables are read from {supported()} "
                        "files", origin.key)
    if origin.main:
        for key, meaning in FORMAT_KEYS.items():
            if getattr(origin.data, key) is not None and key not in reader.options:
                raise SpecError(f"{key} names {meaning}; {file.name} is not one", key)
    return reader(origin)


def supported() -> str:
    return ", ".join("/".join(cls.suffixes) for cls in dict.fromkeys(FORMATS.values()))


class Table:
    """An open table file. A subclass sets `names` (every column, in file order) when opened."""

    kind = "column"  # what one named column is called in messages
    suffixes: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # the FORMAT_KEYS this format takes
    streamable = True  # can be read chunk by chunk
    empty_hint = ""
    names: list[str]

    def __init__(self, origin: Origin):
        self.origin = origin
        self.file = origin.file

    def defaults(self) -> list[str]:
        """Columns usable as features when neither features nor branches are listed."""
        return self.names

    def unusable(self, name: str) -> str | None:
        """Why a column cannot be a feature (e.g. a jagged ROOT branch), or None."""
        return None

    def flat(self, names: list[str]) -> list[str]:
        """Those of `names` holding one value per row (passed through next to predictions)."""
        return names

    def listing(self) -> str:
        """The file's columns in a message: " (columns: a, b, y)"."""
        return listing(self.names, self.kind)

    def estimated_rows(self) -> int | None:
        """The number of rows (an estimate for text files) without reading the table; None if unknown."""
        return None

    def read(self, names: list[str]) -> Block:
        return self.slice(names, 0, self.estimated_rows())

    def read_float32(self, features: list[str], target: str) -> tuple[np.ndarray, pd.DataFrame] | None:
        """(features as float32 (n, d), a frame holding the target) without a whole-table copy, where a
        format can do that cheaply; None to use `read`, whose checks name a non-numeric value's row."""
        return None

    def slice(self, names: list[str], start: int, stop: int) -> Block:
        raise NotImplementedError

    def scan(self, names: list[str], rows: int) -> Iterator[tuple[Chunk, Block]]:
        """The whole table once, in chunks of about `rows` rows."""
        total = self.estimated_rows() or 0
        for start in range(0, total, rows):
            chunk = Chunk(start, min(rows, total - start), (start, min(total, start + rows)))
            yield chunk, self.read_chunk(chunk, names)

    def read_chunk(self, chunk: Chunk, names: list[str]) -> Block:
        return self.slice(names, *chunk.where)

    def close(self) -> None:
        pass

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FrameTable(Table):
    """A pandas frame already in memory."""

    def __init__(self, frame: pd.DataFrame, origin: Origin):
        super().__init__(origin)
        self.frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
        self.names = list(self.frame.columns)

    def estimated_rows(self) -> int:
        return len(self.frame)

    def slice(self, names, start, stop):
        return self.frame[names].iloc[start:stop]


@contextmanager
def reading_errors(origin: Origin, what: str, *errors: type[BaseException]):
    """A library's parse error -> SpecError naming the file and the first line of the error."""
    try:
        yield
    except errors as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"cannot read {origin.file} as {what}: {first}", origin.key) from None


@table_format(".csv")
class CsvTable(Table):
    sep = ","
    what = "csv"
    empty_hint = " (only a header)"
    _errors = (pd.errors.ParserError, UnicodeDecodeError, ValueError)

    def __init__(self, origin: Origin):
        super().__init__(origin)
        with reading_errors(origin, self.what, *self._errors):
            try:
                header = pd.read_csv(self.file, sep=self.sep, nrows=0).columns
            except pd.errors.EmptyDataError:
                raise SpecError(f"{self.file} is empty; a {self.what} needs a header line and data rows",
                                origin.key) from None
        self.names = [str(c) for c in header]

    def read(self, names):
        with reading_errors(self.origin, self.what, *self._errors):
            # Only the columns used are parsed, so unused wide columns never take memory, and features
            # are parsed straight to float32: a float64 copy of a large table would double its size.
            # A column holding text fails that; the untyped read then lets the checks name its row.
            features = {name: np.float32 for name in names if name != self.origin.target}
            try:
                frame = pd.read_csv(self.file, sep=self.sep, usecols=names, dtype=features)
            except ValueError:
                frame = pd.read_csv(self.file, sep=self.sep, usecols=names)
        return frame.set_axis([str(c) for c in frame.columns], axis=1)

    def read_float32(self, features, target):
        """Parse in chunks of rows into one preallocated float32 array: memory stays near the array's size
        (a whole-file parse holds the parser's buffers and a frame besides)."""
        if target in features:
            return None
        with open(self.file, "rb") as f:
            # Blocks of 1 MiB: freeing larger ones raises glibc's mmap threshold, after which every array up
            # to that size lands on the heap, where freed memory is kept (16 MiB blocks held 12-17 MiB more).
            lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
        x = np.empty((lines + 1, len(features)), dtype=np.float32)  # at most one row per line
        targets, filled = [], 0
        try:
            for frame in pd.read_csv(self.file, sep=self.sep, usecols=[*features, target], chunksize=1 << 13,
                                     dtype={name: np.float32 for name in features}):
                x[filled:filled + len(frame)] = frame[features].to_numpy(np.float32)
                targets.append(frame[target])
                filled += len(frame)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
            return None  # text in a feature column, or a malformed file: `read` says where
        if filled == 0:
            return None
        frame = pd.concat(targets, ignore_index=True).to_frame(target)
        return x[:filled], frame

    def estimated_rows(self) -> int:
        """File size over the mean length of the first lines: enough to decide whether to stream."""
        size = Path(self.file).stat().st_size
        with open(self.file, "rb") as f:
            head = f.read(1 << 20)
        lines = head.count(b"\n")
        if lines <= 1:
            return 1
        header = head.index(b"\n") + 1
        return max(1, round((size - header) * (lines - 1) / max(1, len(head) - header)))

    def scan(self, names, rows):
        """Byte ranges of `rows` lines each, so a chunk is re-read by seeking, not by parsing from the top."""
        with open(self.file, "rb") as f:
            header_end = len(f.readline())
        start_row = 0
        for begin, end in _line_spans(self.file, header_end, rows):
            text = self._bytes(begin, end)
            block = self._parse(text, names)
            # A quoted field holding a line break would be cut between chunks: refuse rather than misread.
            if b'"' in text and len(block) != sum(1 for line in text.splitlines() if line.strip()):
                raise SpecError(f"{self.file}: a quoted field holds a line break (near data row {start_row + 1}); "
                                f"a streamed {self.what} needs one row per line: set stream: false, or save the "
                                "table as parquet", self.origin.key)
            if len(block):
                yield Chunk(start_row, len(block), (begin, end)), block
                start_row += len(block)

    def read_chunk(self, chunk, names):
        return self._parse(self._bytes(*chunk.where), names)

    def _bytes(self, begin: int, end: int) -> bytes:
        with open(self.file, "rb") as f:
            f.seek(begin)
            return f.read(end - begin)

    def _parse(self, text: bytes, names: list[str]) -> pd.DataFrame:
        if not text.strip():
            return pd.DataFrame({n: [] for n in names})
        with reading_errors(self.origin, self.what, *self._errors):
            frame = pd.read_csv(io.BytesIO(text), sep=self.sep, header=None, names=self.names, usecols=names)
        return frame.set_axis([str(c) for c in frame.columns], axis=1)


@table_format(".tsv", ".tab")
class TsvTable(CsvTable):
    sep = "\t"
    what = "tab-separated table"


def _line_spans(file: str, begin: int, lines: int) -> Iterator[tuple[int, int]]:
    """(start, end) byte offsets of consecutive runs of `lines` lines from `begin` to the end of the file."""
    block_size = 1 << 24
    with open(file, "rb") as f:
        f.seek(begin)
        span_start, pos, seen = begin, begin, 0  # seen: line ends in the current span so far
        while block := f.read(block_size):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == ord("\n")) + pos + 1
            done = range(lines - seen - 1, len(ends), lines)  # line ends that complete a span
            for k in done:
                yield span_start, int(ends[k])
                span_start = int(ends[k])
            seen = len(ends) - 1 - done[-1] if done else seen + len(ends)
            pos += len(block)
        if pos > span_start:
            yield span_start, pos


@table_format(".parquet", ".pq")
class ParquetTable(Table):
    """Columns are read by name, so a wide file costs only the columns used; chunks are row groups."""

    def __init__(self, origin: Origin):
        super().__init__(origin)
        import pyarrow as pa
        import pyarrow.parquet as pq

        with reading_errors(origin, "parquet", pa.ArrowException, OSError):
            self.parquet = pq.ParquetFile(self.file)
        # pandas stores a non-default index as "__index_level_0__": not a column of the table.
        self.names = [n for n in self.parquet.schema_arrow.names if not n.startswith("__index_level_")]

    def estimated_rows(self) -> int:
        return self.parquet.metadata.num_rows

    def read(self, names):
        return self.parquet.read(columns=names).to_pandas()

    def scan(self, names, rows):
        start = 0
        for group in range(self.parquet.num_row_groups):
            count = self.parquet.metadata.row_group(group).num_rows
            chunk = Chunk(start, count, group)
            yield chunk, self.read_chunk(chunk, names)
            start += count

    def read_chunk(self, chunk, names):
        return self.parquet.read_row_group(chunk.where, columns=names).to_pandas()

    def close(self):
        self.parquet.close()


class ArrayColumns(Table):
    """A numpy-like array of rows: a structured one's fields, or a plain 2-D one's columns by position."""

    array: Any  # np.ndarray (memory-mapped) or h5py.Dataset

    def _columns_of(self, array, what: str, key: str) -> None:
        self.array = array
        self.structured = array.dtype.names is not None
        if self.structured:
            self.kind, self.names = "field", list(array.dtype.names)
        elif len(array.shape) == 2:
            self.names = [str(j) for j in range(array.shape[1])]
        else:
            raise SpecError(f"{self.file}: {what} has shape {tuple(array.shape)}; a table is a 2-D array (rows x "
                            "columns, the target one of them, named by position \"0\", \"1\", ...) or a "
                            "structured array with named fields" + (" (images and labels go in an .npz "
                            "archive: np.savez(file, x=images, y=labels))" if len(array.shape) > 2 else ""),
                            key)

    def listing(self) -> str:
        if self.structured:
            return super().listing()
        return f" (a plain 2-D array: its {len(self.names)} columns are named by position, \"0\" to " \
               f"\"{len(self.names) - 1}\")"

    def flat(self, names):
        if not self.structured:
            return names
        return [n for n in names if self.array.dtype[n].shape == ()]

    def estimated_rows(self) -> int:
        return int(self.array.shape[0])

    def slice(self, names, start, stop):
        if self.structured:
            return {n: np.asarray(self.array[n][start:stop]) for n in names}
        part = np.asarray(self.array[start:stop])
        return {n: part[:, int(n)] for n in names}


@table_format(".npy")
class NpyTable(ArrayColumns):
    """Memory-mapped, so a chunk reads only its rows."""

    def __init__(self, origin: Origin):
        super().__init__(origin)
        try:
            array = np.load(self.file, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc).lower():  # object arrays need pickle, never allowed for data files
                raise SpecError(f"{self.file} holds Python objects; save a numeric or structured array",
                                origin.key) from None
            raise SpecError(f"cannot read {self.file} as an .npy array: {exc}", origin.key) from None
        except OSError as exc:
            raise SpecError(f"cannot read {self.file} as an .npy array: {exc}", origin.key) from None
        self._columns_of(array, "the array", origin.key)


@table_format(".npz")
class NpzTable(Table):
    """Arrays are decompressed whole, so an .npz archive is never streamed."""

    kind = "array"
    streamable = False

    def __init__(self, origin: Origin):
        super().__init__(origin)
        try:
            self.archive = np.load(self.file, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise SpecError(f"cannot read {self.file} as an .npz archive: {exc}", origin.key) from None
        self.names = list(self.archive.files)

    def read(self, names):
        return {n: self._array(n) for n in names}

    def flat(self, names):
        return [n for n in names if self._array(n).ndim == 1]

    def _array(self, key: str) -> np.ndarray:
        try:
            return self.archive[key]
        except ValueError:  # object arrays need pickle, which is never allowed for data files
            where = self.origin.target_key if key == self.origin.target else self.origin.feature_key(key)
            raise SpecError(f"{self.file}: array '{key}' holds Python objects; save numeric or string arrays",
                            where) from None

    def close(self):
        self.archive.close()


# HDF5 and ROOT readers register themselves on import; they live apart to keep this module short.
from . import hdf5_root  # noqa: E402, F401
