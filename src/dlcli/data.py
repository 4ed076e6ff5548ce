"""The `data:` section -> float32 arrays per split, ready for training.

Rows come from a scikit-learn bundled dataset, one csv/npz file cut into splits, or train (+ val,
test) files. Every problem a user can fix raises SpecError with the key relative to `data:` and a
message naming the file. Splits are deterministic for a given config and seed: `dlcli evaluate`
re-creates the test split this way. Class labels and scaler statistics come from the train rows
only, or from a stored run when passed in, so every split sees the same mapping.
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import DataConfig
from .errors import SpecError
from .registry import did_you_mean

TASKS = ("binary", "multiclass", "regression")
BUILTIN_TARGET = "target"  # sklearn's frames call the label column "target"
_SHOW = 5  # rows / values quoted in a message
_LIST_COLUMNS = 12  # list a file's columns in a message when it has at most this many
_NEEDS_NUMBERS = "needs numeric targets (for class labels set task: binary or multiclass)"


class Scaler:
    """x' = (x - offset) / scale per feature (per element for images), from the train rows.

    standard: offset = mean, scale = std; minmax: offset = min, scale = max - min. A constant
    feature gets scale 1, so it maps to 0 instead of dividing by zero.
    """

    KINDS = ("standard", "minmax")

    def __init__(self, kind: str, offset, scale):
        if kind not in self.KINDS:
            raise ValueError(f"scaler kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        self.kind = kind
        self.offset = np.asarray(offset, dtype=np.float32).reshape(-1)
        self.scale = np.asarray(scale, dtype=np.float32).reshape(-1)
        if self.offset.shape != self.scale.shape:
            raise ValueError(f"offset and scale differ in size: {self.offset.size} vs {self.scale.size}")

    @classmethod
    def fit(cls, kind: str, x: np.ndarray) -> Scaler:
        flat = _flat(x)
        if len(flat) == 0:
            raise ValueError("cannot fit a scaler on zero rows")
        # Accumulate in float64 (no float64 copy of x is kept) so large splits do not lose precision.
        if kind == "standard":
            offset = flat.mean(axis=0, dtype=np.float64)
            spread = flat.std(axis=0, dtype=np.float64)
        elif kind == "minmax":
            offset = flat.min(axis=0).astype(np.float64)
            spread = flat.max(axis=0) - offset
        else:
            raise ValueError(f"scaler kind must be one of {', '.join(cls.KINDS)}, got {kind!r}")
        return cls(kind, offset, np.where(spread > 0, spread, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        flat = _flat(x)
        if flat.shape[1] != self.offset.size:
            raise ValueError(f"the scaler was fitted on {self.offset.size} values a row, got {flat.shape[1]}")
        out = flat - self.offset  # a new float32 array; the caller's x is left as it is
        out /= self.scale
        return out.reshape(x.shape)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        try:
            return cls(d["kind"], d["offset"], d["scale"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a stored scaler (needs kind, offset, scale): {exc}") from None

    def __repr__(self) -> str:
        return f"Scaler({self.kind!r}, {self.offset.size} values per row)"


@dataclass
class Dataset:
    """A loaded `data:` section.

    Each split is either in memory, `(x, y)` numpy arrays already scaled (x float32 (n, *input_shape);
    y int64 class ids (n,) or float32 (n, k) for regression), which the trainer indexes by batch, or a
    `torch.utils.data.Dataset` (map-style or iterable) yielding one `(x, y)` sample at a time, scaled
    and, for the train split, augmented: x a float32 tensor of `input_shape`, y an int class id or a
    float32 (k,) tensor. The trainer reads those through DataLoader workers. An iterable split may
    define `set_epoch(epoch)` to reshuffle, and must define `__len__` (its number of samples).
    """

    splits: dict[str, Any]  # "train" always; "val"/"test" when present
    task: str  # "binary" | "multiclass" | "regression"
    input_shape: tuple[int, ...]  # per sample, channels first
    feature_names: list[str] | None  # table columns used, in order (None for images)
    classes: list | None  # original label values, index = class id; None for regression
    scaler: Scaler | None
    source: str
    counts: list[int] | None = None  # train samples per class id, for splits not held in memory
    notes: list[str] = field(default_factory=list)  # what loading did that a user should hear (rows dropped, ...)

    def class_counts(self) -> list[int] | None:
        """Train-split samples per class id (for class weights and summaries)."""
        if self.classes is None:
            return None
        train = self.splits["train"]
        if in_memory(train):
            return np.bincount(train[1], minlength=len(self.classes)).tolist()
        return self.counts

    def rows(self) -> dict[str, int]:
        return {name: len(split[0]) if in_memory(split) else len(split) for name, split in self.splits.items()}

    @property
    def target_width(self) -> int:
        """Values per target row: 1 for classification, k for a regression target of k values."""
        if self.task != "regression":
            return 1
        train = self.splits["train"]
        y = train[1] if in_memory(train) else np.asarray(train[0][1] if hasattr(train, "__getitem__")
                                                          else next(iter(train))[1])
        return int(y.shape[-1]) if y.ndim else 1


def in_memory(split) -> bool:
    """A split held as (x, y) arrays, as opposed to a torch Dataset read sample by sample."""
    return isinstance(split, tuple)


# ----------------------------------------------------------------------------------------------
# Entry points


def load_dataset(data: DataConfig, *, task: str, seed: int, scaler: Scaler | None = None,
                 classes: list | None = None) -> Dataset:
    """Read, check, split, label-encode and scale the rows `data:` describes."""
    _check_task(task)
    parts, source = _parts(data, task, seed)
    train = parts["train"]
    input_shape, names = tuple(train.x.shape[1:]), train.names
    if task != "regression" and classes is None:
        classes = _class_list(train.y)
    if scaler is None and data.scale != "none":
        scaler = Scaler.fit(data.scale, train.x)
    del train
    # Pop each raw split as it is scaled, so at most one unscaled copy is alive besides the results.
    splits = {name: _finish(parts.pop(name), task, scaler, classes, name) for name in list(parts)}
    return Dataset(splits, task, input_shape, names, list(classes) if task != "regression" else None,
                   scaler, source)


def load_rows(file: str | Path, data: DataConfig, *, task: str, scaler: Scaler | None, classes: list | None,
              feature_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every row of one extra file, with the stored scaler and labels: for `dlcli evaluate --data FILE`.

    Pass the run's `feature_names` to pick table columns by name, so an evaluation file whose
    columns are in another order, or which has extra columns, still lines up with the model.
    """
    _check_task(task)
    origin = _Origin(str(Path(file).expanduser().resolve()), "path", data, main=False, in_config=False)
    columns = _source_columns(feature_names) if feature_names else None
    rows = _read_file(origin, task, columns=columns)
    expected = scaler.offset.size if scaler else len(feature_names) if feature_names else None
    width = math.prod(rows.x.shape[1:])
    if expected is not None and width != expected:
        raise SpecError(f"{origin.file} gives {width} values per row, but the model was trained on "
                        f"{expected}", origin.key)
    if task != "regression" and classes is None:
        classes = _class_list(rows.y)
    return _finish(rows, task, scaler, classes, split="evaluation")


# ----------------------------------------------------------------------------------------------
# Where rows come from, for error messages


@dataclass
class _Origin:
    file: str  # absolute path, or "iris (scikit-learn)"
    key: str  # the data: key naming this file: path, train, val, test, dataset
    data: DataConfig
    main: bool  # features were chosen from this file; False for val/test/evaluation files
    in_config: bool = True  # named in the config (relative to its folder), not on the command line

    @property
    def target(self) -> str:
        return self.data.target or BUILTIN_TARGET

    def feature_key(self, name: str) -> str:
        """The key to fix for a bad feature column: where it is listed, else where it could be dropped."""
        if not self.main:
            return self.key
        if self.data.features and name in self.data.features:
            return f"features[{self.data.features.index(name)}]"
        return "drop" if self.data.drop is not None else "features"

    @property
    def target_key(self) -> str:
        return "target" if self.main else self.key


@dataclass
class _Rows:
    x: np.ndarray  # float32 (n, *input_shape)
    y: np.ndarray  # raw labels (n,) for classification; float32 (n, k) for regression
    columns: list[str]  # csv columns or npz keys the features came from
    names: list[str] | None  # one name per feature value; None for images
    origin: _Origin

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(self.x[index], self.y[index], self.columns, self.names, self.origin)


# ----------------------------------------------------------------------------------------------
# Sources


def _parts(data: DataConfig, task: str, seed: int) -> tuple[dict[str, _Rows], str]:
    """The raw splits and a description of where they came from."""
    if data.dataset:
        rows = _load_builtin(data, task)
        return _carve(rows, data.split.test, data.split.val, task, seed), f"{data.dataset} (scikit-learn)"
    if data.path:
        rows = _read_file(_Origin(data.path, "path", data, main=True), task)
        return _carve(rows, data.split.test, data.split.val, task, seed), data.path
    files = " + ".join(f for f in (data.train, data.val, data.test) if f)
    return _file_splits(data, task, seed), files


def _load_builtin(data: DataConfig, task: str) -> _Rows:
    from sklearn import datasets

    origin = _Origin(f"{data.dataset} (scikit-learn)", "dataset", data, main=True)
    if data.target not in (None, BUILTIN_TARGET):
        raise SpecError(f"the built-in dataset {data.dataset} has one target, '{BUILTIN_TARGET}'; "
                        "leave data.target out", "target")
    loader = getattr(datasets, f"load_{data.dataset}")
    if data.dataset == "digits":
        for key in ("features", "drop"):
            if getattr(data, key) is not None:
                raise SpecError("digits are 8x8 images; features and drop apply to tables only", key)
        bunch = loader()
        x = bunch.images.astype(np.float32).reshape(-1, 1, 8, 8)  # pixel values 0..16, channels first
        return _Rows(x, _target(pd.Series(bunch.target), origin, task), [], None, origin)
    frame = loader(as_frame=True).frame
    return _frame_rows(frame, origin, task)


def _file_splits(data: DataConfig, task: str, seed: int) -> dict[str, _Rows]:
    """A train file, plus val/test files or splits carved from the train file."""
    train = _read_file(_Origin(data.train, "train", data, main=True), task)
    files = {}
    for name in ("val", "test"):
        path = getattr(data, name)
        if path is None:
            continue
        if getattr(data.split, name) > 0:
            raise SpecError(f"give data.{name} or split.{name}, not both: the {name} rows already come "
                            f"from {path}", f"split.{name}")
        rows = _read_file(_Origin(path, name, data, main=False), task, columns=train.columns)
        if rows.x.shape[1:] != train.x.shape[1:]:
            raise SpecError(f"{path} rows have shape {rows.x.shape[1:]} but the train file's have "
                            f"{train.x.shape[1:]}", name)
        files[name] = rows
    test = 0.0 if "test" in files else data.split.test
    val = 0.0 if "val" in files else data.split.val
    return {**_carve(train, test, val, task, seed), **files}


def _read_file(origin: _Origin, task: str, columns: list[str] | None = None) -> _Rows:
    """One csv or npz file; `columns` are the feature columns to take (else chosen from the config)."""
    file = Path(origin.file)
    if not file.exists():
        hint = "; relative paths are relative to the config file's folder" if origin.in_config else ""
        raise SpecError(f"data file not found: {file}{hint}", origin.key)
    if file.is_dir():
        raise SpecError(f"{file} is a folder; give a .csv or .npz file", origin.key)
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return _read_csv(origin, task, columns)
    if suffix == ".npz":
        return _read_npz(origin, task, columns)
    raise SpecError(f"unsupported file type '{file.suffix}' ({file}); csv and npz are supported now",
                    origin.key)


def _read_csv(origin: _Origin, task: str, columns: list[str] | None) -> _Rows:
    try:
        header = [str(c) for c in pd.read_csv(origin.file, nrows=0).columns]
        columns = _choose(header, origin, columns, "column")
        # Read only the columns used, so unused wide columns never take memory.
        frame = pd.read_csv(origin.file, usecols=[*columns, origin.target])
    except pd.errors.EmptyDataError:
        raise SpecError(f"{origin.file} is empty; a csv needs a header line and data rows",
                        origin.key) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"cannot read {origin.file} as csv: {first}", origin.key) from None
    frame.columns = [str(c) for c in frame.columns]
    return _frame_rows(frame, origin, task, columns)


def _frame_rows(frame: pd.DataFrame, origin: _Origin, task: str, columns: list[str] | None = None) -> _Rows:
    """Feature columns -> one float32 array (column by column: no float64 table copy), target -> labels."""
    if columns is None:
        columns = _choose([str(c) for c in frame.columns], origin, None, "column")
    if len(frame) == 0:
        raise SpecError(f"{origin.file} has no data rows (only a header)", origin.key)
    x = np.empty((len(frame), len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        x[:, j] = _numeric(frame[name], origin, origin.feature_key(name),
                           "features must be numbers: encode categories as numbers, or drop the column")
    _check_finite(x, columns, origin)
    y = _target(frame[origin.target], origin, task)
    return _Rows(x, y, list(columns), list(columns), origin)


def _read_npz(origin: _Origin, task: str, columns: list[str] | None) -> _Rows:
    try:
        archive = np.load(origin.file, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SpecError(f"cannot read {origin.file} as an .npz archive: {exc}", origin.key) from None
    with archive:
        keys = _choose(list(archive.files), origin, columns, "array")
        y = _npz_array(archive, origin.target, origin, origin.target_key)
        arrays = [_npz_array(archive, k, origin, origin.feature_key(k)) for k in keys]
    if y.ndim == 0 or len(y) == 0:
        raise SpecError(f"{origin.file}: the target array '{origin.target}' has no rows", origin.target_key)
    for key, a in zip(keys, arrays, strict=True):
        if a.ndim == 0 or len(a) != len(y):
            rows = "a scalar" if a.ndim == 0 else f"{len(a)} rows"
            raise SpecError(f"{origin.file}: array '{key}' has {rows} but the target '{origin.target}' has "
                            f"{len(y)}; every array needs one entry per row", origin.feature_key(key))
        if a.dtype.kind not in "biuf":
            raise SpecError(f"{origin.file}: array '{key}' holds {a.dtype} values; features must be numbers",
                            origin.feature_key(key))
    x, names = _npz_features(keys, arrays, origin)
    del arrays
    _check_finite(x.reshape(len(x), -1), names or keys, origin)
    return _Rows(x, _npz_target(y, origin, task), keys, names, origin)


def _npz_array(archive, key: str, origin: _Origin, error_key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError:  # object arrays need pickle, which is never allowed for data files
        raise SpecError(f"{origin.file}: array '{key}' holds Python objects; save numeric or string arrays",
                        error_key) from None


def _npz_features(keys: list[str], arrays: list[np.ndarray], origin: _Origin):
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


def _npz_target(y: np.ndarray, origin: _Origin, task: str) -> np.ndarray:
    if y.ndim > 2:
        raise SpecError(f"{origin.file}: the target array '{origin.target}' has shape {y.shape}; "
                        "use (n,) labels or values, or (n, k)", origin.target_key)
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise SpecError(f"{origin.file}: the target '{origin.target}' holds {y.dtype} values; a "
                            f"regression task {_NEEDS_NUMBERS}", origin.target_key)
        y = np.ascontiguousarray(y, dtype=np.float32).reshape(len(y), -1)
        _check_finite(y, [origin.target], origin, key=origin.target_key)
        return y
    if y.ndim == 2 and y.shape[1] > 1:
        return _from_one_hot(y, origin)
    return _target(pd.Series(y.reshape(-1)), origin, task)


def _from_one_hot(y: np.ndarray, origin: _Origin) -> np.ndarray:
    """(n, C) rows with a single 1 -> class ids (n,)."""
    ok = None
    if y.dtype.kind in "biuf":
        ok = ((y == 0) | (y == 1)).all(axis=1) & ((y == 1).sum(axis=1) == 1)
    if ok is None or not ok.all():
        where = "" if ok is None else f" (first bad row: {int(np.flatnonzero(~ok)[0]) + 1})"
        raise SpecError(f"{origin.file}: the target '{origin.target}' has shape {y.shape} but is not "
                        f"one-hot{where}; give class labels (n,) or rows with a single 1", origin.target_key)
    return y.argmax(axis=1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Columns and values


def _choose(available: list[str], origin: _Origin, wanted: list[str] | None, kind: str) -> list[str]:
    """The feature columns (csv) or arrays (npz): the config's `features`, else all but target and `drop`."""
    target = origin.target
    if target not in available:
        raise SpecError(f"{origin.file} has no {kind} '{target}'{did_you_mean(target, available)}"
                        f"{_listing(available, kind)}", origin.target_key)
    if wanted is not None:  # val/test/evaluation files: the train file's columns
        for name in wanted:
            if name not in available:
                raise SpecError(f"{origin.file} has no {kind} '{name}', a feature of the training data"
                                f"{did_you_mean(name, available)}{_listing(available, kind)}", origin.key)
        return wanted
    data = origin.data
    if data.features is not None:
        for i, name in enumerate(data.features):
            if name == target:
                raise SpecError(f"'{name}' is the target; it cannot also be a feature", f"features[{i}]")
            if name not in available:
                raise SpecError(f"{origin.file} has no {kind} '{name}'{did_you_mean(name, available)}"
                                f"{_listing(available, kind)}", f"features[{i}]")
            if name in data.features[:i]:
                raise SpecError(f"'{name}' is listed twice", f"features[{i}]")
        return list(data.features)
    drop = data.drop or []
    for i, name in enumerate(drop):
        if name not in available:
            raise SpecError(f"{origin.file} has no {kind} '{name}' to drop{did_you_mean(name, available)}"
                            f"{_listing(available, kind)}", f"drop[{i}]")
    chosen = [c for c in available if c != target and c not in drop]
    if not chosen:
        raise SpecError(f"{origin.file} has no feature {kind}s besides the target '{target}'",
                        "drop" if drop else "target")
    return chosen


def _few(items, fmt=str, limit: int = _SHOW) -> str:
    """The first few items of a list for a message: "3, 7, 9, ..."."""
    items = list(items)
    return ", ".join(fmt(i) for i in items[:limit]) + (", ..." if len(items) > limit else "")


def _listing(names: list[str], kind: str) -> str:
    if len(names) <= _LIST_COLUMNS:
        return f" ({kind}s: {', '.join(names)})" if names else f" (it has no {kind}s)"
    return f" (it has {len(names)} {kind}s)"


def _source_columns(feature_names: list[str]) -> list[str]:
    """Stored feature names -> csv columns / npz keys: npz 2-D arrays are named 'x[0]', 'x[1]', ..."""
    columns: list[str] = []
    for name in feature_names:
        match = re.fullmatch(r"(.+)\[\d+\]", name)
        column = match.group(1) if match else name
        if column not in columns:
            columns.append(column)
    return columns


def _numeric(col: pd.Series, origin: _Origin, key: str, hint: str) -> np.ndarray:
    """A column as float32; text that is not a number names the column, the row and the value."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float32, na_value=np.nan)
    numbers = pd.to_numeric(col, errors="coerce")
    bad = np.flatnonzero((numbers.isna() & col.notna()).to_numpy())
    if len(bad):
        raise SpecError(f"column '{col.name}' in {origin.file} is not numeric: row {bad[0] + 1} holds "
                        f"{col.iloc[bad[0]]!r}; {hint}", key)
    return numbers.to_numpy(dtype=np.float32, na_value=np.nan)


def _check_finite(x2d: np.ndarray, names: list[str], origin: _Origin, key: str | None = None) -> None:
    """NaN/inf anywhere in (n, d) values: how many, in which columns, first rows (1 = first data row)."""
    bad = ~np.isfinite(x2d)
    if not bad.any():
        return
    rows = np.flatnonzero(bad.any(axis=1))
    cols = np.flatnonzero(bad.any(axis=0))
    # Images have one name per array, not per value.
    columns = [names[j] for j in cols] if len(names) == x2d.shape[1] else names
    raise SpecError(f"{origin.file}: {int(bad.sum())} missing (NaN) or infinite value(s) in "
                    f"{_few(columns)} at row(s) {_few(rows + 1)}; fill or remove those rows",
                    key or origin.feature_key(columns[0]))


def _target(col: pd.Series, origin: _Origin, task: str) -> np.ndarray:
    """Regression: float32 (n, 1). Classification: the raw labels (n,), checked for gaps and fractions."""
    missing = np.flatnonzero(col.isna().to_numpy())
    if len(missing):
        raise SpecError(f"{origin.file}: the target '{origin.target}' is missing in {len(missing)} row(s): "
                        f"{_few(missing + 1)}; fill or remove those rows", origin.target_key)
    if task == "regression":
        y = _numeric(col, origin, origin.target_key, f"a regression task {_NEEDS_NUMBERS}")
        _check_finite(y.reshape(-1, 1), [origin.target], origin, key=origin.target_key)
        return y.reshape(-1, 1)
    y = col.to_numpy()
    if y.dtype.kind == "f":
        fractional = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(fractional):
            row = fractional[0]
            raise SpecError(f"{origin.file}: the target '{origin.target}' has fractional values such as "
                            f"{y[row]:g} (row {row + 1}); a {task} task needs class labels (set task: "
                            "regression for numeric targets)", origin.target_key)
    if origin.data.positive is not None:
        y = _binarize(y, origin)
    return y


def _binarize(y: np.ndarray, origin: _Origin) -> np.ndarray:
    """`positive: [labels]`: those rows become class 1 (signal), every other row class 0."""
    wanted = {str(v) for v in origin.data.positive}
    as_text = np.array([str(v.item() if hasattr(v, "item") else v) for v in np.unique(y)])
    if origin.main and not wanted & set(as_text):
        raise SpecError(f"{origin.file}: none of the positive labels {sorted(wanted)} occur in the target "
                        f"'{origin.target}' (its labels: {_few(list(as_text))})", "positive")
    text = np.array([str(v.item() if hasattr(v, "item") else v) for v in y])
    return np.isin(text, list(wanted)).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Splits, labels, scaling


def _carve(rows: _Rows, test: float, val: float, task: str, seed: int) -> dict[str, _Rows]:
    """Test, then val, as fractions of all rows; stratified by class for classification."""
    labels = rows.y if task != "regression" else None
    rest = np.arange(len(rows))
    carved = {}
    # Row counts come from the total, so val is a fraction of all rows, not of what test left.
    for name, fraction in (("test", test), ("val", val)):
        if fraction > 0:
            count = max(1, math.ceil(fraction * len(rows) - 1e-9))  # sklearn's rounding, minus float noise
            rest, carved[name] = _split_off(rest, count, labels, seed, rows.origin, f"split.{name}")
    if not carved:
        return {"train": rows}
    return {"train": rows.take(rest), **{name: rows.take(index) for name, index in reversed(carved.items())}}


def _split_off(index: np.ndarray, count: int, labels: np.ndarray | None, seed: int, origin: _Origin,
               key: str) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle `index` with the seed and split `count` rows off: (rest, split)."""
    from sklearn.model_selection import train_test_split

    if count >= len(index):
        raise SpecError(f"{origin.file}: {len(index)} row(s) are too few to carve {count} for {key} and keep "
                        "training rows; lower the fraction or add rows", key)
    if labels is not None:
        try:
            return train_test_split(index, test_size=count, random_state=seed, shuffle=True,
                                    stratify=labels[index])
        except ValueError:
            pass  # a class too small to stratify: split without stratification
    return train_test_split(index, test_size=count, random_state=seed, shuffle=True)


def _class_list(y: np.ndarray) -> list:
    """Sorted unique labels of the train rows, as plain JSON-friendly Python values."""
    try:
        values = np.unique(y)
    except TypeError:
        raise SpecError("the target mixes numbers and text; use one kind of class label", "target") from None
    return [_plain(v) for v in values]


def _plain(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 are one class; store it as the int
    return value


def _encode(rows: _Rows, classes: list, split: str) -> np.ndarray:
    """Labels -> int64 class ids, looking up each distinct label once."""
    values, inverse = np.unique(rows.y, return_inverse=True)
    index = {c: i for i, c in enumerate(classes)}
    plain = [_plain(v) for v in values]
    unknown = [v for v in plain if v not in index]
    if unknown:
        raise SpecError(f"{rows.origin.file}: label(s) {_few(unknown, repr)} in the {split} rows are not "
                        f"among the training classes: {_few(classes, repr, 20)}", "target")
    return np.array([index[v] for v in plain], dtype=np.int64)[inverse.reshape(-1)]


def _finish(rows: _Rows, task: str, scaler: Scaler | None, classes: list | None,
            split: str) -> tuple[np.ndarray, np.ndarray]:
    y = rows.y if task == "regression" else _encode(rows, classes, split)
    x = scaler.transform(rows.x) if scaler is not None else rows.x
    return x, y


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)} (resolve 'auto' first), got {task!r}")
