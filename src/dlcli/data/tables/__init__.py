"""Table files -> rows: one reader per file format, chosen by the file's suffix.

    suffix          reader        its columns
    .csv            CsvTable      the header's names                                    csv.py
    .tsv, .tab      TsvTable      the header's names (tab-separated)                    csv.py
    .parquet, .pq   ParquetTable  the schema's columns; only the columns used are read  parquet.py
    .npy            NpyTable      a structured array's fields, or "0".."d-1"            npy.py
    .npz            NpzTable      the archive's arrays (2-D x gives x[0], x[1], ...)     npz.py
    .h5, .hdf5      Hdf5Table     `key:` a group's data sets, a compound data set's     hdf5.py
                                  fields, or "0".."d-1" for a plain 2-D data set
    .root           RootTable     the branches of the TTree `tree:` (uproot)            root.py

A new format is one Table subclass (table.py says what it implements) in a module of its own, with
its `suffixes`, and one entry in READERS below.
"""

from .columns import Origin
from .csv import CsvTable, TsvTable
from .hdf5 import Hdf5Table
from .npy import NpyTable
from .npz import NpzTable
from .parquet import ParquetTable
from .root import RootTable
from .table import Chunk, Rows, Table, choose, frame_rows, open_table, read_rows, register_format

READERS = (CsvTable, TsvTable, ParquetTable, NpyTable, NpzTable, Hdf5Table, RootTable)
for _reader in READERS:
    register_format(_reader)

__all__ = ["READERS", "Chunk", "Origin", "Rows", "Table", "choose", "frame_rows", "open_table", "read_rows"]
