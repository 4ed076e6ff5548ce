"""Files named on the command line, prepared with a trained run's stored state: `evaluate --data`, `predict`.

Columns are picked by the run's feature names, so a file whose columns are in another order, or
which has more of them, still lines up with the model; missing values get the run's fill values,
and the run's scaler and classes are applied, never refitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DataConfig
from ..errors import SpecError
from .dataset import check_task
from .labels import class_list
from .scaler import Scaler
from .sources import finish
from .tables import Origin, choose, open_table, read_rows
from .tables.columns import (
    apply_fill,
    block_length,
    check_missing,
    feature_values,
    fill_note,
    flat_rows,
    source_columns,
)


def load_rows(file: str | Path, data: DataConfig, *, task: str, scaler: Scaler | None, classes: list | None,
              feature_names: list[str] | None = None,
              fill: dict[str, float] | None = None, with_weights: bool = False):
    """Every row of one extra file, with the stored scaler and labels: for `dlcli evaluate --data FILE`.

    Pass the run's `feature_names` to pick table columns by name, so an evaluation file whose
    columns are in another order, or which has extra columns, still lines up with the model; and
    its `fill` (missing: mean) so missing values get the training means. `with_weights`: ((x, y), the
    file's event weights (data.weight) or None).
    """
    check_task(task)
    origin = _extra_file(file, data)
    columns = source_columns(feature_names) if feature_names else None
    rows = read_rows(origin, task, columns=columns)
    _check_width(math.prod(rows.x.shape[1:]), origin, scaler, feature_names)
    if data.missing == "mean":
        apply_fill(flat_rows(rows.x), rows.names or [], _stored_fill(fill, origin), origin)
    if task != "regression" and classes is None:
        classes = class_list(rows.y)
    split = finish(rows, task, scaler, classes, split="evaluation")
    return (split, rows.w) if with_weights else split


@dataclass
class Inputs:
    """Rows to predict on: the model's inputs plus what identifies each row."""

    x: np.ndarray  # float32 (n, *input_shape), missing values handled as in training, scaled
    passthrough: pd.DataFrame | None  # the file's other columns (target included), None for bare arrays
    y_raw: np.ndarray | None  # the raw target column when the file has one
    rows: np.ndarray  # 0-based row numbers of the file that x holds (all, unless missing: drop)
    notes: list[str] = field(default_factory=list)


def load_inputs(file: str | Path, data: DataConfig, *, feature_names: list[str] | None, scaler: Scaler | None,
                fill: dict[str, float] | None = None) -> Inputs:
    """The feature columns of any table file, prepared the way the run prepared its training rows.

    The target column is optional: when present it comes back raw in `y_raw`. The file's other
    columns with one value per row (target included) come back in `passthrough`, so predictions
    can be matched to rows; missing values are refused, dropped or filled as `data.missing` says.
    """
    origin = _extra_file(file, data)
    with open_table(origin) as table:
        wanted = source_columns(feature_names) if feature_names else None  # the run's, else the config's
        columns = choose(table, origin, wanted, need_target=False)
        others = table.flat([n for n in table.names if n not in columns])
        block = table.read(columns)
        if block_length(block, columns, origin) == 0:
            raise SpecError(f"{origin.file} has no data rows{table.empty_hint}: nothing to predict", origin.key)
        passed = table.read_exact(others) if others else None  # as the file holds them: IDs never via float32
    x, names = feature_values(block, columns, origin)
    _check_width(math.prod(x.shape[1:]), origin, scaler, feature_names)
    check_missing(x, names or columns, origin)
    if passed is None:
        passthrough = None
    elif isinstance(passed, pd.DataFrame):
        passthrough = passed[others].reset_index(drop=True)
    else:
        passthrough = pd.DataFrame({n: np.asarray(passed[n]) for n in others})
    y_raw = np.asarray(passthrough[origin.target]) if origin.target in others else None
    del block, passed
    rows, notes = np.arange(len(x)), []
    if data.missing == "drop":
        lost = np.isnan(flat_rows(x)).any(axis=1)
        if lost.any():
            notes.append(f"missing: skipped {int(lost.sum())} of {len(x)} rows with NaN features")
            if lost.all():
                raise SpecError(f"{origin.file}: every row has a missing value; with missing: drop no rows are "
                                "left (use missing: mean)", "missing")
            x, rows = x[~lost], rows[~lost]
            y_raw = y_raw[~lost] if y_raw is not None else None
            passthrough = passthrough[~lost].reset_index(drop=True) if passthrough is not None else None
    elif data.missing == "mean":
        filled = apply_fill(flat_rows(x), names or [], _stored_fill(fill, origin), origin)
        notes += [fill_note(filled)] if filled else []
    x = scaler.transform(x) if scaler is not None else x
    return Inputs(x, passthrough, y_raw, rows, notes)


def _extra_file(file: str | Path, data: DataConfig) -> Origin:
    """A file named on the command line (evaluate --data, predict), read with the run's `data:` section."""
    return Origin(str(Path(file).expanduser().resolve()), "path", data, main=False, in_config=False)


def _check_width(width: int, origin: Origin, scaler: Scaler | None, feature_names: list[str] | None) -> None:
    per_value = scaler is not None and getattr(scaler, "per", "feature") == "feature"
    expected = len(feature_names) if feature_names else scaler.offset.size if per_value else None
    if expected is not None and width != expected:
        raise SpecError(f"{origin.file} gives {width} values per row, but the model was trained on "
                        f"{expected}", origin.key)


def _stored_fill(fill: dict[str, float] | None, origin: Origin) -> dict[str, float]:
    if fill is None:
        raise SpecError(f"{origin.file}: data.missing is mean but the run stored no fill values (labels.json "
                        "has no 'fill'); train the run again, or set missing: drop", "missing")
    return fill
