"""The table reader's interface, and rows read from any table file.

A reader (one per format, each in its own module, listed in tables/__init__.py) lists its columns
(`names`) and reads some of them, for every row (`read`) or, when the table is streamed, chunk by
chunk (`scan` walks the file once, `read_chunk` re-reads one chunk). A block of columns is a
DataFrame (text formats, parquet) or a dict of numpy arrays (array formats, whose arrays may be 2-D
or images); columns.py turns either into float32 features and raw labels with the same checks and
messages. Every problem a user can fix raises SpecError with the key relative to `data:` (path,
train, key, tree, ...) and a message naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import SpecError
from ...messages import did_you_mean
from .columns import (
    Block,
    Origin,
    block_length,
    check_missing,
    drop_note,
    feature_values,
    listing,
    plural,
    target_values,
)
from .weights import apply_negative, check_weight_column, negative_note, weight_values


@dataclass
class Rows:
    """One file's (or one split's) rows before labels are encoded and values scaled."""

    x: np.ndarray  # float32 (n, *input_shape); NaN where values are missing (missing: mean)
    y: np.ndarray  # raw labels (n,) for classification; float32 (n, k) for regression
    columns: list[str]  # the file's columns (csv) / arrays (npz) / branches (ROOT) the features came from
    names: list[str] | None  # one name per feature value; None for images
    origin: Origin
    notes: list[str] = field(default_factory=list)  # what reading did: rows dropped, ...
    w: np.ndarray | None = None  # float64 event weights (n,) with data.weight
    index: np.ndarray | None = None  # each row's 0-based row number in its file (None: 0..n-1)

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.x[index], self.y[index], self.columns, self.names, self.origin, self.notes,
                    None if self.w is None else self.w[index], self.file_rows()[index])

    def file_rows(self) -> np.ndarray:
        return np.arange(len(self.x)) if self.index is None else self.index


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
    weight = [origin.data.weight] if origin.data.weight else []
    check_weight_column(table.names, table.kind, origin)
    numeric = table.read_float32(features, origin.target, weight)
    if numeric is not None:  # features parsed straight into one float32 array
        x, block = numeric
        names = list(features)
    else:
        block = table.read([*features, origin.target, *weight])
        if block_length(block, features, origin) == 0:
            raise SpecError(f"{origin.file} has no data rows{table.empty_hint}", origin.key)
        x, names = feature_values(block, features, origin)
    check_missing(x, names or features, origin)
    y = target_values(block, origin, task)
    w = weight_values(block, origin)
    del block
    notes, index = [], None
    if w is not None:
        w, negative = apply_negative(w, origin.data.negative_weights)
        notes += [n for n in [negative_note(negative, len(w), Path(origin.file).name, origin.data.negative_weights)] if n]
    if origin.data.missing == "drop":
        nan = np.isnan(x.reshape(len(x), -1))
        lost = nan.any(axis=1)
        if lost.any():
            notes.append(drop_note(origin.file, int(lost.sum()), len(x), nan.any(axis=0), names or features))
            x, y, index = x[~lost], y[~lost], np.flatnonzero(~lost)
            w = None if w is None else w[~lost]
            if len(x) == 0:
                raise SpecError(f"{origin.file}: every row has a missing value; with missing: drop no rows "
                                "are left (use missing: mean)", "missing")
    return Rows(x, y, features, names, origin, notes, w, index)


def choose(table: Table, origin: Origin, wanted: list[str] | None = None, *, need_target: bool = True) -> list[str]:
    """The feature columns: `wanted` (a trained run's), else the config's list, else all but target and `drop`."""
    available, kind, target = table.names, table.kind, origin.target
    if need_target and target not in available:
        raise SpecError(f"{origin.file} has no {kind} '{target}'{did_you_mean(target, available)}"
                        f"{table.listing()}", origin.target_key)
    if wanted is not None:  # val/test/evaluation files: the train file's columns
        for name in wanted:
            if name not in available:
                raise SpecError(f"{origin.file} has no {kind} '{name}', a feature of the training data"
                                f"{did_you_mean(name, available)}{table.listing()}", origin.key)
        return wanted
    key, listed = origin.listed
    if listed is not None:
        for i, name in enumerate(listed):
            if name == target:
                raise SpecError(f"'{name}' is the target; it cannot also be a feature", f"{key}[{i}]")
            if name not in available:
                raise SpecError(f"{origin.file} has no {kind} '{name}'{did_you_mean(name, available)}"
                                f"{table.listing()}", f"{key}[{i}]")
            if name in listed[:i]:
                raise SpecError(f"'{name}' is listed twice", f"{key}[{i}]")
            problem = table.unusable(name)
            if problem:
                raise SpecError(f"{origin.file}: {problem}", f"{key}[{i}]")
        return list(listed)
    drop = origin.data.drop or []
    for i, name in enumerate(drop):
        if name not in available:
            raise SpecError(f"{origin.file} has no {kind} '{name}' to drop{did_you_mean(name, available)}"
                            f"{table.listing()}", f"drop[{i}]")
    chosen = [c for c in table.defaults() if c != target and c not in drop and c != origin.data.weight]
    if not chosen:
        raise SpecError(f"{origin.file} has no feature {plural(kind)} besides the target '{target}'",
                        "drop" if drop else "target")
    return chosen


# ----------------------------------------------------------------------------------------------
# Readers


FORMATS: dict[str, type[Table]] = {}  # suffix -> reader, filled by tables/__init__.py
FORMAT_KEYS = {  # data: keys that only some formats take (a reader lists its own in `options`)
    "key": "the table inside an HDF5 file",
    "tree": "the tree to read from a ROOT file",
    "branches": "the features of a ROOT file (give features: for other files)",
}


def register_format(reader: type[Table]) -> None:
    """Read files with `reader.suffixes` (lower case, with the dot) with this reader."""
    for suffix in reader.suffixes:
        FORMATS[suffix] = reader


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

    def read_exact(self, names: list[str]) -> Block:
        """Columns as the file holds them, to pass through next to predictions: text formats give the text
        of each field (an int64 event ID never goes through a float), others their own types."""
        return self.read(names)

    def read_float32(self, features: list[str], target: str,
                     extra: list[str] = ()) -> tuple[np.ndarray, pd.DataFrame] | None:
        """(features as float32 (n, d), a frame holding the target and the `extra` columns (the event
        weight)) without a whole-table copy, where a format can do that cheaply; None to use `read`, whose
        checks name a non-numeric value's row."""
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

    def read_parts(self, chunk: Chunk, names: list[str], rows: int) -> Iterator[tuple[int, Block]]:
        """A chunk re-read as (first row, block) parts of about `rows` rows, for a format whose chunks
        are larger than that (a parquet row group); most formats' chunks are one part."""
        yield chunk.start, self.read_chunk(chunk, names)

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


