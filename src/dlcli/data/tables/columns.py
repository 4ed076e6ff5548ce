"""Columns -> values, the same for every table format.

The features as float32, the target as labels or regression values, and the checks on the way:
text that is not a number, missing values (`missing: error | drop | mean`), one-hot targets,
`positive:` labels. A block of columns is a DataFrame (csv, parquet, frames in memory) or a dict of
numpy arrays (npy, npz, HDF5, ROOT); row numbers in messages count data rows from 1, offset by
`first_row` for a chunk of a streamed file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from ...config import DataConfig
from ...errors import SpecError
from ...messages import few

Block = Union[pd.DataFrame, dict[str, np.ndarray]]  # noqa: UP007 (a runtime alias, Python 3.10)

BUILTIN_TARGET = "target"  # sklearn's frames call the label column "target"
BLOCK_VALUES = 1 << 18  # values per block where a table is checked or summed block by block (1 MiB of float32)
_LIST_COLUMNS = 12  # list a file's columns in a message when it has at most this many
_NEEDS_NUMBERS = "needs numeric targets (for class labels set task: binary or multiclass)"
_FEATURE_HINT = "features must be numbers: encode categories as numbers, or drop the column"


@dataclass
class Origin:
    """Where rows come from, for error messages."""

    file: str  # absolute path, or "iris (scikit-learn)"
    key: str  # the data: key naming this file: path, train, val, test, dataset
    data: DataConfig
    main: bool  # features were chosen from this file; False for val/test/evaluation files
    in_config: bool = True  # named in the config (relative to its folder), not on the command line

    @property
    def target(self) -> str:
        return self.data.target or BUILTIN_TARGET

    @property
    def listed(self) -> tuple[str, list[str] | None]:
        """The key listing the feature columns (`branches` for ROOT files, else `features`) and its list."""
        if self.data.branches is not None:
            return "branches", self.data.branches
        return "features", self.data.features

    def feature_key(self, name: str) -> str:
        """The key to fix for a bad feature column: where it is listed, else where it could be dropped."""
        if not self.main:
            return self.key
        key, listed = self.listed
        if listed and name in listed:
            return f"{key}[{listed.index(name)}]"
        return "drop" if self.data.drop is not None else key

    @property
    def target_key(self) -> str:
        return "target" if self.main else self.key


# ----------------------------------------------------------------------------------------------
# Naming columns


def source_columns(feature_names: list[str]) -> list[str]:
    """Stored feature names -> the file's columns: 2-D arrays give names 'x[0]', 'x[1]', ... of column x."""
    columns: list[str] = []
    for name in feature_names:
        match = re.fullmatch(r"(.+)\[\d+\]", name)
        column = match.group(1) if match else name
        if column not in columns:
            columns.append(column)
    return columns


def plural(kind: str) -> str:
    return kind + ("es" if kind.endswith(("ch", "sh", "s")) else "s")


def listing(names: list[str], kind: str) -> str:
    if len(names) <= _LIST_COLUMNS:
        return f" ({plural(kind)}: {', '.join(names)})" if names else f" (it has no {plural(kind)})"
    return f" (it has {len(names)} {plural(kind)})"


# ----------------------------------------------------------------------------------------------
# Feature values


def block_length(block: Block, features: list[str], origin: Origin) -> int:
    """Rows in a block; every array of a dict block must have one entry per row."""
    if isinstance(block, pd.DataFrame):
        return len(block)
    target = origin.target
    reference = target if target in block else features[0]
    first = np.asarray(block[reference])
    if first.ndim == 0:
        raise SpecError(f"{origin.file}: the target array '{target}' is a scalar, not one value per row",
                        origin.target_key)
    for key in features:
        a = block[key]
        if a.ndim == 0 or len(a) != len(first):
            rows = "a scalar" if a.ndim == 0 else f"{len(a)} rows"
            what = f"the target '{target}'" if reference == target else f"'{reference}'"
            raise SpecError(f"{origin.file}: array '{key}' has {rows} but {what} has {len(first)}; every "
                            "array needs one entry per row", origin.feature_key(key))
    return len(first)


def feature_values(block: Block, features: list[str], origin: Origin,
                   first_row: int = 0) -> tuple[np.ndarray, list[str] | None]:
    """The features as float32 (n, *input_shape) and one name per value (None for images)."""
    if isinstance(block, pd.DataFrame):
        x = np.empty((len(block), len(features)), dtype=np.float32)
        for j, name in enumerate(features):
            x[:, j] = numeric(block[name], origin, origin.feature_key(name), _FEATURE_HINT, first_row)
        return x, list(features)
    arrays = [np.asarray(block[k]) for k in features]
    for key, a in zip(features, arrays, strict=True):
        if a.dtype.kind not in "biuf":
            raise SpecError(f"{origin.file}: array '{key}' holds {a.dtype} values; features must be numbers",
                            origin.feature_key(key))
    return _array_features(features, arrays, origin)


def _array_features(keys: list[str], arrays: list[np.ndarray], origin: Origin):
    """One array is used as-is (a table or images); several 1-D/2-D arrays become columns."""
    if len(arrays) == 1:
        a, key = arrays[0], keys[0]
        if a.ndim == 1:
            return np.ascontiguousarray(a, dtype=np.float32).reshape(-1, 1), [key]
        if a.ndim == 2:
            return np.ascontiguousarray(a, dtype=np.float32), [f"{key}[{j}]" for j in range(a.shape[1])]
        if a.ndim in (3, 4):  # (n, H, W) gray images get their channel axis: (n, 1, H, W)
            x = np.ascontiguousarray(a, dtype=np.float32)
            return (x[:, None] if a.ndim == 3 else x), None
        raise SpecError(f"{origin.file}: array '{key}' has shape {a.shape}; use (n, features), (n, H, W) or "
                        "(n, C, H, W)", origin.feature_key(key))
    names: list[str] = []
    for key, a in zip(keys, arrays, strict=True):
        if a.ndim > 2:
            raise SpecError(f"{origin.file}: array '{key}' has shape {a.shape}; with several feature arrays "
                            "each must be 1-D or 2-D (images go alone in features)", origin.feature_key(key))
        names += [key] if a.ndim == 1 else [f"{key}[{j}]" for j in range(a.shape[1])]
    x = np.empty((len(arrays[0]), len(names)), dtype=np.float32)
    col = 0
    for a in arrays:
        width = 1 if a.ndim == 1 else a.shape[1]
        x[:, col:col + width] = a.reshape(len(a), width)
        col += width
    return x, names


def numeric(col: pd.Series, origin: Origin, key: str, hint: str, first_row: int = 0) -> np.ndarray:
    """A column as float32; text that is not a number names the column, the row and the value."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float32, na_value=np.nan)
    numbers = pd.to_numeric(col, errors="coerce")
    bad = np.flatnonzero((numbers.isna() & col.notna()).to_numpy())
    if len(bad):
        raise SpecError(f"column '{col.name}' in {origin.file} is not numeric: row {first_row + bad[0] + 1} "
                        f"holds {col.iloc[bad[0]]!r}; {hint}", key)
    return numbers.to_numpy(dtype=np.float32, na_value=np.nan)


# ----------------------------------------------------------------------------------------------
# Missing values: `missing: error | drop | mean`


def check_missing(x: np.ndarray, names: list[str], origin: Origin, first_row: int = 0, *,
                  key: str | None = None, strict: bool = False) -> None:
    """Refuse NaN (unless `missing:` handles it, and never when `strict`) and infinities, naming columns and rows."""
    x2d = x.reshape(len(x), -1)
    tolerate_nan = not strict and origin.data.missing != "error"

    def flagged(values: np.ndarray) -> np.ndarray:
        return np.isinf(values) if tolerate_nan else ~np.isfinite(values)

    if not any(flagged(block).any() for block in row_blocks(x2d)):  # no table-sized mask for clean data
        return
    bad = flagged(x2d)
    rows = np.flatnonzero(bad.any(axis=1))
    columns = value_columns(bad.any(axis=0), names)
    if tolerate_nan:
        what, fix = "infinite", f"missing: {origin.data.missing} handles NaN only; replace or remove those values"
    else:
        what, fix = "missing (NaN) or infinite", "fill or remove those rows"
        if not strict:
            fix += ", or set data.missing: drop or mean"
    raise SpecError(f"{origin.file}: {int(bad.sum())} {what} value(s) in {few(columns)} at row(s) "
                    f"{few(rows + first_row + 1)}; {fix}", key or origin.feature_key(columns[0]))


def flat_rows(x: np.ndarray) -> np.ndarray:
    """(n, ...) -> (n, values per row), a view."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def row_blocks(x: np.ndarray) -> Iterator[np.ndarray]:
    """Consecutive rows (samples) of an array, about BLOCK_VALUES values at a time: a temporary made per
    block (a mask, a float64 copy) stays small, where one made for the whole table would add to its size."""
    step = max(1, BLOCK_VALUES // max(1, math.prod(x.shape[1:])))
    return (x[start:start + step] for start in range(0, len(x), step))


def value_columns(mask: np.ndarray, names: list[str]) -> list[str]:
    """The names of the values flagged in `mask`; images have one name per array, not per value."""
    return [names[j] for j in np.flatnonzero(mask)] if len(names) == len(mask) else list(names)


def drop_note(file: str, dropped: int, total: int, columns: np.ndarray, names: list[str]) -> str:
    return (f"missing: dropped {dropped} of {total} rows of {Path(file).name} "
            f"(NaN in {few(value_columns(columns, names))})")


def fit_fill(x: np.ndarray, names: list[str], origin: Origin) -> dict[str, float]:
    """missing: mean: each feature's mean over the rows given (the train split), NaN left out."""
    fill = {}
    for j, name in enumerate(names):
        column = x[:, j]
        present = column[~np.isnan(column)]
        if len(present) == 0:
            raise SpecError(f"{origin.file}: feature '{name}' has no values in the training rows, so missing: "
                            "mean has nothing to fill it with; drop the column", origin.feature_key(name))
        fill[name] = float(present.mean(dtype=np.float64))
    return fill


def apply_fill(x: np.ndarray, names: list[str], fill: dict[str, float], origin: Origin) -> dict[str, int]:
    """Replace NaN in place by the stored means; returns the values filled per column."""
    nan = np.isnan(x)
    filled = {}
    for j in np.flatnonzero(nan.any(axis=0)):
        name = names[j]
        if name not in fill:
            raise SpecError(f"{origin.file}: feature '{name}' has missing values but the run stored no fill "
                            f"value for it (it has: {few(fill)})", origin.key)
        x[nan[:, j], j] = fill[name]
        filled[name] = int(nan[:, j].sum())
    return filled


def fill_note(filled: dict[str, int]) -> str:
    return (f"missing: filled {sum(filled.values())} NaN value(s) in {len(filled)} column(s) ({few(filled)}) "
            "with their train-split means")


# ----------------------------------------------------------------------------------------------
# The target


def target_values(block: Block, origin: Origin, task: str, first_row: int = 0, *,
                  check_positive: bool = True) -> np.ndarray:
    """Regression: float32 (n, k). Classification: raw labels (n,), or class ids from one-hot rows."""
    y = block[origin.target]
    if isinstance(block, pd.DataFrame):
        return target_labels(y, origin, task, first_row, check_positive=check_positive)
    y = np.asarray(y)
    if y.ndim > 2:
        raise SpecError(f"{origin.file}: the target array '{origin.target}' has shape {y.shape}; "
                        "use (n,) labels or values, or (n, k)", origin.target_key)
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise SpecError(f"{origin.file}: the target '{origin.target}' holds {y.dtype} values; a "
                            f"regression task {_NEEDS_NUMBERS}", origin.target_key)
        y = np.ascontiguousarray(y, dtype=np.float32).reshape(len(y), -1)
        check_missing(y, [origin.target], origin, first_row, key=origin.target_key, strict=True)
        return y
    if y.ndim == 2 and y.shape[1] > 1:
        return _from_one_hot(y, origin, first_row)
    return target_labels(pd.Series(y.reshape(-1)), origin, task, first_row, check_positive=check_positive)


def _from_one_hot(y: np.ndarray, origin: Origin, first_row: int) -> np.ndarray:
    """(n, C) rows with a single 1 -> class ids (n,)."""
    ok = None
    if y.dtype.kind in "biuf":
        ok = ((y == 0) | (y == 1)).all(axis=1) & ((y == 1).sum(axis=1) == 1)
    if ok is None or not ok.all():
        where = "" if ok is None else f" (first bad row: {first_row + int(np.flatnonzero(~ok)[0]) + 1})"
        raise SpecError(f"{origin.file}: the target '{origin.target}' has shape {y.shape} but is not "
                        f"one-hot{where}; give class labels (n,) or rows with a single 1", origin.target_key)
    return y.argmax(axis=1).astype(np.int64)


def target_labels(col: pd.Series, origin: Origin, task: str, first_row: int = 0, *,
                  check_positive: bool = True) -> np.ndarray:
    """Regression: float32 (n, 1). Classification: the raw labels (n,), checked for gaps and fractions."""
    missing = np.flatnonzero(col.isna().to_numpy())
    if len(missing):
        raise SpecError(f"{origin.file}: the target '{origin.target}' is missing in {len(missing)} row(s): "
                        f"{few(missing + first_row + 1)}; fill or remove those rows", origin.target_key)
    if task == "regression":
        y = numeric(col, origin, origin.target_key, f"a regression task {_NEEDS_NUMBERS}", first_row)
        check_missing(y.reshape(-1, 1), [origin.target], origin, first_row, key=origin.target_key, strict=True)
        return y.reshape(-1, 1)
    y = col.to_numpy()
    if y.dtype.kind == "f":
        fractional = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(fractional):
            row = fractional[0]
            raise SpecError(f"{origin.file}: the target '{origin.target}' has fractional values such as "
                            f"{y[row]:g} (row {first_row + row + 1}); a {task} task needs class labels (set "
                            "task: regression for numeric targets)", origin.target_key)
    if origin.data.positive is not None:
        y = binarize(y, origin, check=check_positive)
    return y


def binarize(y: np.ndarray, origin: Origin, *, check: bool = True) -> np.ndarray:
    """`positive: [labels]`: those rows become class 1 (signal), every other row class 0."""
    wanted = {str(v) for v in origin.data.positive}
    as_text = np.array([str(v.item() if hasattr(v, "item") else v) for v in np.unique(y)])
    if check and origin.main and not wanted & set(as_text):
        raise SpecError(f"{origin.file}: none of the positive labels {sorted(wanted)} occur in the target "
                        f"'{origin.target}' (its labels: {few(list(as_text))})", "positive")
    text = np.array([str(v.item() if hasattr(v, "item") else v) for v in y])
    return np.isin(text, list(wanted)).astype(np.int64)
