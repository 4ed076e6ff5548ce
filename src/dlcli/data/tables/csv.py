"""Comma- and tab-separated text tables, through pandas' reader: the header names the columns."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import SpecError
from .columns import Origin
from .table import Chunk, Table, reading_errors


class CsvTable(Table):
    suffixes = (".csv",)
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
            features = {name: np.float32 for name in names if name not in (self.origin.target, self.origin.data.weight)}
            try:
                frame = pd.read_csv(self.file, sep=self.sep, usecols=names, dtype=features)
            except ValueError:
                frame = pd.read_csv(self.file, sep=self.sep, usecols=names)
        return frame.set_axis([str(c) for c in frame.columns], axis=1)

    def read_exact(self, names):
        """Each column as numbers only where that is lossless (the text of every field is the number's own,
        so writing it back gives the same bytes: 123456789012345 becomes an int64, 007 or 1e5 stay text)."""
        with reading_errors(self.origin, self.what, *self._errors):
            frame = pd.read_csv(self.file, sep=self.sep, usecols=names, dtype=str, keep_default_na=False)
        frame = frame.set_axis([str(c) for c in frame.columns], axis=1)[list(names)]
        for name in frame.columns:
            text = frame[name]
            try:
                number = pd.to_numeric(text)
            except (ValueError, TypeError):
                continue
            if number.dtype.kind in "iuf" and (number.astype(str) == text).all():
                frame[name] = number
        return frame

    def read_float32(self, features, target, extra=()):
        """Parse in chunks of rows into one preallocated float32 array: memory stays near the array's size
        (a whole-file parse holds the parser's buffers and a frame besides)."""
        if target in features:
            return None
        with open(self.file, "rb") as f:
            # Small blocks: freeing large ones raises glibc's mmap threshold, and later arrays then stay on the heap.
            lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
        x = np.empty((lines + 1, len(features)), dtype=np.float32)  # at most one row per line
        targets, filled = [], 0
        try:
            for frame in pd.read_csv(self.file, sep=self.sep, usecols=[*features, target, *extra],
                                     chunksize=1 << 13, dtype={name: np.float32 for name in features}):
                x[filled:filled + len(frame)] = frame[features].to_numpy(np.float32)
                targets.append(frame[[target, *extra]])
                filled += len(frame)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
            return None  # text in a feature column, or a malformed file: `read` says where
        if filled == 0:
            return None
        frame = pd.concat(targets, ignore_index=True)
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
        if not text or text.isspace():  # (strip() would copy the chunk to find out)
            return pd.DataFrame({n: [] for n in names})
        with reading_errors(self.origin, self.what, *self._errors):
            frame = pd.read_csv(io.BytesIO(text), sep=self.sep, header=None, names=self.names, usecols=names)
        return frame.set_axis([str(c) for c in frame.columns], axis=1)


class TsvTable(CsvTable):
    suffixes = (".tsv", ".tab")
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
