"""Prediction tables to files: csv, Parquet or a ROOT TTree, chosen by the output's suffix, written whole or
not at all (runs.write_atomic). Columns passed through from a csv input are written back as the file
held them (data/tables/csv.py `read_exact`).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..errors import SpecError

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet", ".root": "root"}
TREE = "predictions"  # the TTree a ROOT output holds


def output_format(path: Path) -> str:
    """csv, parquet or root, by the suffix; anything else (or none) is csv, as `predict -o` always wrote."""
    return FORMATS.get(path.suffix.lower(), "csv")


def write_table(table: pd.DataFrame, path: Path, notes: list[str]) -> None:
    """The table as csv, parquet or a ROOT TTree, whole or not at all (runs.write_atomic)."""
    kind = output_format(path)
    if kind == "csv":
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        runs.write_atomic(path, table.to_csv(index=False, sep=sep, lineterminator="\n"))
        return
    if kind == "parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        runs.write_atomic(path, buffer.getvalue())
        return
    try:
        import uproot
    except ImportError:
        raise SpecError('writing ROOT files needs uproot: pip install "dlcli[hep]" (or uv sync --extra hep)') from None
    branches, notes_ = root_branches(table)
    notes += notes_
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder) / "out.root"
        try:
            with uproot.recreate(tmp) as f:
                f[TREE] = branches
        except (TypeError, KeyError, ValueError, NotImplementedError) as exc:
            text = [c for c, v in branches.items() if v.dtype.kind == "U"]
            raise SpecError(f"uproot {uproot.__version__} cannot write this table as a TTree ({type(exc).__name__}: "
                            f"{exc}){'; its text columns ' + ', '.join(text) + ' need uproot 5 with string branches' if text else ''}; "
                            "write parquet or csv instead (-o out.parquet)") from None
        runs.write_atomic(path, tmp.read_bytes())


def root_branches(table: pd.DataFrame) -> tuple[dict[str, np.ndarray], list[str]]:
    """One TTree branch per column: numbers and booleans as they are (an int64 event ID stays int64), text
    as std::string branches, and dates, which a TTree has no type for, as ISO 8601 text (exact, to the
    nanosecond); the notes say which columns were turned into text."""
    branches, dates = {}, []
    for name in table.columns:
        column = table[name]
        if column.dtype == object:  # class labels held as Python objects (predicted, true) that are numbers
            try:
                column = pd.to_numeric(column)
            except (ValueError, TypeError):
                pass
        if pd.api.types.is_datetime64_any_dtype(column):
            dates.append(str(name))
            zone = column.dt.tz is not None
            values = (column.dt.tz_convert("UTC").dt.tz_localize(None) if zone else column).to_numpy()
            column = pd.Series(np.datetime_as_string(values, unit=np.datetime_data(values.dtype)[0])).add("Z" if zone else "")
        if column.dtype.kind in "biuf":
            branches[str(name)] = column.to_numpy()
        else:
            branches[str(name)] = column.astype(str).to_numpy(dtype=str)
    notes = [f"ROOT output: date column(s) {', '.join(dates)} written as ISO 8601 text (a TTree has no date "
             "type)"] if dates else []
    return branches, notes
