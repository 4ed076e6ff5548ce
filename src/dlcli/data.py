"""The `data:` section -> float32 arrays per split, ready for training.

Rows come from a scikit-learn bundled dataset, one table file cut into splits, or train (+ val,
test) files; tables.py reads the files (one reader per format), stream.py streams the ones too
large for memory. Every problem a user can fix raises SpecError with the key relative to `data:` and a
message naming the file. Splits are deterministic for a given config and seed: `dlcli evaluate`
re-creates the test split this way. Class labels and scaler statistics come from the train rows
only, or from a stored run when passed in, so every split sees the same mapping.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .columns import (
    BUILTIN_TARGET,
    Origin,
    apply_fill,
    check_missing,
    choose,
    feature_values,
    few,
    fill_note,
    fit_fill,
    row_blocks,
    source_columns,
    target_labels,
)
from .config import DataConfig
from .errors import SpecError
from .tables import Rows, frame_rows, open_table, read_rows

TASKS = ("binary", "multiclass", "regression")


class Scaler:
    """x' = (x - offset) / scale, with offset and scale from the train rows.

    per="feature": one offset and scale per value of a row (a table's columns; each pixel of
    digits' 8x8 images on its own). per="channel": one per channel, axis 1 of (n, C, H, W), over
    every pixel of the train images, as torchvision's Normalize does.
    standard: offset = mean, scale = std; minmax: offset = min, scale = max - min. A constant
    feature gets scale 1, so it maps to 0 instead of dividing by zero.
    """

    KINDS = ("standard", "minmax")
    PER = ("feature", "channel")

    def __init__(self, kind: str, offset, scale, per: str = "feature"):
        if kind not in self.KINDS:
            raise ValueError(f"scaler kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        if per not in self.PER:
            raise ValueError(f"scaler per must be one of {', '.join(self.PER)}, got {per!r}")
        self.kind = kind
        self.per = per
        self.offset = np.asarray(offset, dtype=np.float32).reshape(-1)
        self.scale = np.asarray(scale, dtype=np.float32).reshape(-1)
        if self.offset.shape != self.scale.shape:
            raise ValueError(f"offset and scale differ in size: {self.offset.size} vs {self.scale.size}")

    @classmethod
    def fit(cls, kind: str, x: np.ndarray, per: str = "feature") -> Scaler:
        if kind not in cls.KINDS:
            raise ValueError(f"scaler kind must be one of {', '.join(cls.KINDS)}, got {kind!r}")
        if per == "channel":
            stats = ChannelStats()
            for block in row_blocks(x):
                stats.add(block)
            return stats.scaler(kind)
        flat = _flat(x)
        if len(flat) == 0:
            raise ValueError("cannot fit a scaler on zero rows")
        # Two passes over row blocks, accumulating in float64: precise for large splits, and never a
        # float64 copy of the whole table (np.std would make one for the deviations).
        if kind == "standard":
            offset = sum(b.sum(axis=0, dtype=np.float64) for b in row_blocks(flat)) / len(flat)
            squares = sum(_squared_deviations(b, offset) for b in row_blocks(flat))
            spread = np.sqrt(squares / len(flat))
        else:
            offset = flat.min(axis=0).astype(np.float64)
            spread = flat.max(axis=0) - offset
        return cls(kind, offset, np.where(spread > 0, spread, 1.0))

    def transform(self, x: np.ndarray, *, inplace: bool = False) -> np.ndarray:
        """The scaled values: a new float32 array, or, with `inplace`, x itself where it is a writable float32
        array (so a large table is not held twice)."""
        x = np.asarray(x, dtype=np.float32)
        inplace = inplace and x.flags.writeable and x.flags.c_contiguous
        if self.per == "channel":
            if x.ndim < 2 or x.shape[1] != self.offset.size:
                raise ValueError(f"the scaler was fitted on {self.offset.size} channels, got shape {list(x.shape)}")
            shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast over the batch and pixel axes
            out = np.subtract(x, self.offset.reshape(shape), out=x if inplace else None)
            out /= self.scale.reshape(shape)
            return out
        flat = _flat(x)
        if flat.shape[1] != self.offset.size:
            raise ValueError(f"the scaler was fitted on {self.offset.size} values a row, got {flat.shape[1]}")
        out = np.subtract(flat, self.offset, out=flat if inplace else None)
        out /= self.scale
        return out.reshape(x.shape)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "per": self.per, "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        try:
            # Runs stored before per-channel scaling existed have no "per": they were per feature.
            return cls(d["kind"], d["offset"], d["scale"], d.get("per", "feature"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a stored scaler (needs kind, offset, scale): {exc}") from None

    def __repr__(self) -> str:
        unit = "channels" if self.per == "channel" else "values per row"
        return f"Scaler({self.kind!r}, {self.offset.size} {unit})"


def _squared_deviations(block: np.ndarray, mean: np.ndarray) -> np.ndarray:
    deviations = block - mean  # float64, one block's worth
    return np.square(deviations, out=deviations).sum(axis=0)


class ChannelStats:
    """Per-channel count, mean, squared deviations, min and max, gathered chunk by chunk.

    Chunks are merged with Chan et al.'s pairwise update in float64, so a split read in pieces
    (from files, or too large for a float64 copy) gets the same mean and std as one pass would,
    without the cancellation of sum-of-squares formulas.
    """

    def __init__(self):
        self.n = 0
        self.mean = self.m2 = self.low = self.high = None

    def add(self, x) -> None:
        """A chunk shaped (n, C, ...): any numeric array or tensor."""
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[0] == 0:
            return
        values = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1).astype(np.float64)
        count = values.shape[1]
        mean = values.mean(axis=1)
        m2 = np.square(values - mean[:, None]).sum(axis=1)
        low, high = values.min(axis=1), values.max(axis=1)
        if self.n == 0:
            self.n, self.mean, self.m2, self.low, self.high = count, mean, m2, low, high
            return
        if mean.shape != self.mean.shape:
            raise ValueError(f"chunks differ in channels: {self.mean.size} vs {mean.size}")
        total = self.n + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + np.square(delta) * (self.n * count / total)
        self.low, self.high = np.minimum(self.low, low), np.maximum(self.high, high)
        self.n = total

    def scaler(self, kind: str) -> Scaler:
        if self.n == 0:
            raise ValueError("cannot fit a scaler on zero rows")
        if kind == "standard":
            offset, spread = self.mean, np.sqrt(self.m2 / self.n)
        else:
            offset, spread = self.low, self.high - self.low
        return Scaler(kind, offset, np.where(spread > 0, spread, 1.0), per="channel")


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
    fill: dict[str, float] | None = None  # missing: mean: the train-split mean per feature, stored with the run

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
        from torch.utils.data import IterableDataset

        train = self.splits["train"]
        if in_memory(train):
            y = train[1]
        else:  # one sample's target: the first one served, or item 0 of a map-style data set
            y = np.asarray(next(iter(train))[1] if isinstance(train, IterableDataset) else train[0][1])
        return int(y.shape[-1]) if y.ndim else 1


def in_memory(split) -> bool:
    """A split held as (x, y) arrays, as opposed to a torch Dataset read sample by sample."""
    return isinstance(split, tuple)


def available_memory() -> int | None:
    """Bytes of memory free for new data (Linux MemAvailable: free pages plus reclaimable cache), or None when
    unknown. `stream: auto` compares a table's or an image folder's float32 size with it."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# ----------------------------------------------------------------------------------------------
# Entry points


def load_dataset(data: DataConfig, *, task: str, seed: int, scaler: Scaler | None = None,
                 classes: list | None = None, fill: dict[str, float] | None = None) -> Dataset:
    """Read, check, split, label-encode and scale the rows `data:` describes.

    A stored run passes its `scaler`, `classes` and `fill` (missing: mean) so nothing is refitted.
    """
    _check_task(task)
    if data.torchvision is not None or data.images is not None:
        from .images import load_images  # images may stream through torch Datasets: their own path

        return load_images(data, task=task, seed=seed, scaler=scaler, classes=classes)
    if (data.path or data.train) and data.stream is not False:
        from . import stream  # imports torch: only for table files that may be streamed

        if stream.should_stream(data):
            return stream.load_streamed(data, task=task, seed=seed, scaler=scaler, classes=classes, fill=fill)
    parts, source = _parts(data, task, seed)
    notes = list(dict.fromkeys(note for rows in parts.values() for note in rows.notes))
    fill = _fill_missing(parts, data, fill, notes)
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
                   scaler, source, notes=notes, fill=fill)


def load_rows(file: str | Path, data: DataConfig, *, task: str, scaler: Scaler | None, classes: list | None,
              feature_names: list[str] | None = None,
              fill: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every row of one extra file, with the stored scaler and labels: for `dlcli evaluate --data FILE`.

    Pass the run's `feature_names` to pick table columns by name, so an evaluation file whose
    columns are in another order, or which has extra columns, still lines up with the model; and
    its `fill` (missing: mean) so missing values get the training means.
    """
    _check_task(task)
    origin = _extra_file(file, data)
    columns = source_columns(feature_names) if feature_names else None
    rows = read_rows(origin, task, columns=columns)
    _check_width(math.prod(rows.x.shape[1:]), origin, scaler, feature_names)
    if data.missing == "mean":
        apply_fill(_flat(rows.x), rows.names or [], _stored_fill(fill, origin), origin)
    if task != "regression" and classes is None:
        classes = _class_list(rows.y)
    return _finish(rows, task, scaler, classes, split="evaluation")


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
        block = table.read([*columns, *others])
    x, names = feature_values(block, columns, origin)
    _check_width(math.prod(x.shape[1:]), origin, scaler, feature_names)
    check_missing(x, names or columns, origin)
    if isinstance(block, pd.DataFrame):
        passthrough = block[others].reset_index(drop=True) if others else None
    else:
        passthrough = pd.DataFrame({n: np.asarray(block[n]) for n in others}) if others else None
    y_raw = np.asarray(block[origin.target]) if origin.target in others else None
    del block
    rows, notes = np.arange(len(x)), []
    if data.missing == "drop":
        lost = np.isnan(_flat(x)).any(axis=1)
        if lost.any():
            notes.append(f"missing: skipped {int(lost.sum())} of {len(x)} rows with NaN features")
            x, rows = x[~lost], rows[~lost]
            y_raw = y_raw[~lost] if y_raw is not None else None
            passthrough = passthrough[~lost].reset_index(drop=True) if passthrough is not None else None
    elif data.missing == "mean":
        filled = apply_fill(_flat(x), names or [], _stored_fill(fill, origin), origin)
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


def _fill_missing(parts: dict[str, Rows], data: DataConfig, fill: dict[str, float] | None,
                  notes: list[str]) -> dict[str, float] | None:
    """missing: mean: NaN -> the train split's column means (or a stored run's), in every split."""
    if data.missing != "mean":
        return None
    train = parts["train"]
    if train.names is None:
        raise SpecError("missing: mean fills table columns with their means, but these rows are images; use "
                        "missing: drop", "missing")
    if fill is None:
        fill = fit_fill(_flat(train.x), train.names, train.origin)
    filled: dict[str, int] = {}
    for rows in parts.values():
        for name, count in apply_fill(_flat(rows.x), rows.names, fill, rows.origin).items():
            filled[name] = filled.get(name, 0) + count
    if filled:
        notes.append(fill_note(filled))
    return fill


# ----------------------------------------------------------------------------------------------
# Sources


def _parts(data: DataConfig, task: str, seed: int) -> tuple[dict[str, Rows], str]:
    """The raw splits and a description of where they came from."""
    if data.dataset:
        rows = _load_builtin(data, task)
        return _carve(rows, data.split.test, data.split.val, task, seed), f"{data.dataset} (scikit-learn)"
    if data.openml is not None:
        from .openml import load_openml  # sklearn's OpenML client, only when used

        rows = load_openml(data, task)
        return _carve(rows, data.split.test, data.split.val, task, seed), rows.origin.file
    if data.path:
        rows = read_rows(Origin(data.path, "path", data, main=True), task)
        return _carve(rows, data.split.test, data.split.val, task, seed), data.path
    files = " + ".join(f for f in (data.train, data.val, data.test) if f)
    return _file_splits(data, task, seed), files


def _load_builtin(data: DataConfig, task: str) -> Rows:
    from sklearn import datasets

    origin = Origin(f"{data.dataset} (scikit-learn)", "dataset", data, main=True)
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
        return Rows(x, target_labels(pd.Series(bunch.target), origin, task), [], None, origin)
    frame = loader(as_frame=True).frame
    return frame_rows(frame, origin, task)


def split_files(data: DataConfig) -> dict[str, str]:
    """The val/test files `data:` names, by split; a split cannot come from a file and a fraction both."""
    files = {}
    for name in ("val", "test"):
        path = getattr(data, name)
        if path is None:
            continue
        if getattr(data.split, name) > 0:
            raise SpecError(f"give data.{name} or split.{name}, not both: the {name} rows already come "
                            f"from {path}", f"split.{name}")
        files[name] = path
    return files


def _file_splits(data: DataConfig, task: str, seed: int) -> dict[str, Rows]:
    """A train file, plus val/test files or splits carved from the train file."""
    train = read_rows(Origin(data.train, "train", data, main=True), task)
    files = {}
    for name, path in split_files(data).items():
        rows = read_rows(Origin(path, name, data, main=False), task, columns=train.columns)
        if rows.x.shape[1:] != train.x.shape[1:]:
            raise SpecError(f"{path} rows have shape {rows.x.shape[1:]} but the train file's have "
                            f"{train.x.shape[1:]}", name)
        files[name] = rows
    test = 0.0 if "test" in files else data.split.test
    val = 0.0 if "val" in files else data.split.val
    return {**_carve(train, test, val, task, seed), **files}


# ----------------------------------------------------------------------------------------------
# Splits, labels, scaling


def _carve(rows: Rows, test: float, val: float, task: str, seed: int) -> dict[str, Rows]:
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


def _split_off(index: np.ndarray, count: int, labels: np.ndarray | None, seed: int, origin: Origin,
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


def _encode(rows: Rows, classes: list, split: str) -> np.ndarray:
    """Labels -> int64 class ids, looking up each distinct label once."""
    values, inverse = np.unique(rows.y, return_inverse=True)
    index = {c: i for i, c in enumerate(classes)}
    plain = [_plain(v) for v in values]
    unknown = [v for v in plain if v not in index]
    if unknown:
        raise SpecError(f"{rows.origin.file}: label(s) {few(unknown, repr)} in the {split} rows are not "
                        f"among the training classes: {few(classes, repr, 20)}", "target")
    return np.array([index[v] for v in plain], dtype=np.int64)[inverse.reshape(-1)]


def _finish(rows: Rows, task: str, scaler: Scaler | None, classes: list | None,
            split: str) -> tuple[np.ndarray, np.ndarray]:
    y = rows.y if task == "regression" else _encode(rows, classes, split)
    x = scaler.transform(rows.x, inplace=True) if scaler is not None else rows.x  # rows are ours: no copy
    return x, y


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)} (resolve 'auto' first), got {task!r}")
