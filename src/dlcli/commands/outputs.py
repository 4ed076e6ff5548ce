"""Prediction tables to files: csv, Parquet or a ROOT TTree, chosen by the output's suffix, written whole or
not at all (runs.write_atomic). Columns passed through from a csv input are written back as the file
held them (data/tables/csv.py `read_exact`).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

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
    table = table.copy()
    for name in table.columns:  # class labels held as Python objects (predicted, true) that are numbers
        if table[name].dtype == object:
            try:
                table[name] = pd.to_numeric(table[name])
            except (ValueError, TypeError):
                pass
    numeric = [c for c in table.columns if table[c].dtype.kind in "biuf"]
    left = [c for c in table.columns if c not in numeric]
    if left:
        notes.append(f"ROOT output: text column(s) {', '.join(left)} left out (TTree branches here hold numbers)")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder) / "out.root"
        with uproot.recreate(tmp) as f:
            f[TREE] = {c: table[c].to_numpy() for c in numeric}
        runs.write_atomic(path, tmp.read_bytes())
