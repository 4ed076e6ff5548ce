"""Parquet tables, through pyarrow: read column by column and, when streamed, row group by row group."""

from __future__ import annotations

from .columns import Origin
from .table import Chunk, Table, reading_errors


class ParquetTable(Table):
    """Columns are read by name, so a wide file costs only the columns used; chunks are row groups."""

    suffixes = (".parquet", ".pq")

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

    def read_float32(self, features, target, extra=()):
        """Row group by row group into one preallocated float32 array: a whole-file read holds the arrow
        table, its pandas frame and the float32 copy at once, five times the array at the peak
        (benchmarks/RESULTS.md, 2026-12-02). Numeric and boolean columns only (else None: `read`)."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        import pyarrow.types as pat

        schema = self.parquet.schema_arrow
        numeric = (pat.is_floating, pat.is_integer, pat.is_boolean)
        if target in features or not all(any(t(schema.field(n).type) for t in numeric) for n in features):
            return None
        rows = self.parquet.metadata.num_rows
        if rows == 0:
            return None
        x = np.empty((rows, len(features)), dtype=np.float32)
        targets, start = [], 0
        for group in range(self.parquet.num_row_groups):
            block = self.parquet.read_row_group(group, columns=[*features, target, *extra])
            stop = start + block.num_rows
            for j, name in enumerate(features):  # nulls -> NaN, as pandas' conversion gives them
                x[start:stop, j] = block.column(name).cast(pa.float32()).to_numpy()
            targets.append(block.select([target, *extra]).to_pandas())
            start = stop
            del block
        return x, pd.concat(targets, ignore_index=True)

    def scan(self, names, rows):
        start = 0
        for group in range(self.parquet.num_row_groups):
            count = self.parquet.metadata.row_group(group).num_rows
            chunk = Chunk(start, count, group)
            yield chunk, self.read_chunk(chunk, names)
            start += count

    def read_chunk(self, chunk, names):
        # self_destruct frees each arrow column once converted: the group is never held twice over.
        return self.parquet.read_row_group(chunk.where, columns=names).to_pandas(split_blocks=True,
                                                                                  self_destruct=True)

    def read_parts(self, chunk, names, rows):
        """The row group in arrow's columns, converted `rows` rows at a time: a group of 2^20 rows (pyarrow's
        default) whole as pandas, float32 and scaled copies took five times its size in a DataLoader worker."""
        group = self.parquet.read_row_group(chunk.where, columns=names)
        for offset in range(0, group.num_rows, rows):
            yield chunk.start + offset, group.slice(offset, rows).to_pandas()

    def close(self):
        import pyarrow as pa

        self.parquet.close()
        # Arrow's allocator (mimalloc) keeps freed pages for reuse: after a 1M-row group, 270 MiB of them.
        pa.default_memory_pool().release_unused()
