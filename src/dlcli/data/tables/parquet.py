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
