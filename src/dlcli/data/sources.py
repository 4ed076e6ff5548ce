"""The `data:` section -> a `Dataset`: one registered loader per source key, exactly one of which a config sets.

    key           loader (below)   rows from
    path          path_table       one table file, cut into splits by `split:` (streamed when too large)
    train         train_files      a train file, plus val/test files or fractions carved from it
    dataset       sklearn_dataset  a data set bundled with scikit-learn
    openml        openml_table     an OpenML table, cached under data.root (openml.py)
    torchvision   images           a torchvision image set (images/torchvision.py)
    images        images           a folder of images, one subfolder per class (images/folders.py)

Table sources give raw rows per split (tables/), which `table_dataset` finishes the same way for all:
missing values, class ids, scaling. Every problem a user can fix raises SpecError with the key
relative to `data:` and a message naming the file. Splits are deterministic for a given config and
seed, and class labels and scaler statistics come from the train rows only, or from a stored run
(`Fitted`), so every split sees the same mapping.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import DataConfig
from ..errors import SpecError
from ..registry import Registry
from .dataset import Dataset, Fitted, check_task
from .labels import class_list, encode
from .scaler import Scaler
from .splits import carve, split_files
from .tables import Origin, Rows, frame_rows, read_rows
from .tables.columns import BUILTIN_TARGET, apply_fill, fill_note, fit_fill, flat_rows, target_labels

SOURCES = Registry("data source")


def load_dataset(data: DataConfig, *, task: str, seed: int, scaler: Scaler | None = None,
                 classes: list | None = None, fill: dict[str, float] | None = None) -> Dataset:
    """Read, check, split, label-encode and scale the rows `data:` describes.

    A stored run passes its `scaler`, `classes` and `fill` (missing: mean) so nothing is refitted.
    """
    check_task(task)
    key = next(name for name in SOURCES.names() if getattr(data, name) is not None)
    return SOURCES.get(key).builder(data, task, seed, Fitted(scaler, classes, fill))


# ----------------------------------------------------------------------------------------------
# Table sources


@SOURCES.register("path")
def path_table(data: DataConfig, task: str, seed: int, fitted: Fitted) -> Dataset:
    streamed = _streamed(data, task, seed, fitted)
    if streamed is not None:
        return streamed
    rows = read_rows(Origin(data.path, "path", data, main=True), task)
    return table_dataset(carve_rows(rows, data.split.test, data.split.val, task, seed), data, task, fitted,
                         data.path)


@SOURCES.register("train")
def train_files(data: DataConfig, task: str, seed: int, fitted: Fitted) -> Dataset:
    """A train file, plus val/test files or splits carved from the train file."""
    streamed = _streamed(data, task, seed, fitted)
    if streamed is not None:
        return streamed
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
    parts = {**carve_rows(train, test, val, task, seed), **files}
    source = " + ".join(f for f in (data.train, data.val, data.test) if f)
    return table_dataset(parts, data, task, fitted, source)


@SOURCES.register("dataset")
def sklearn_dataset(data: DataConfig, task: str, seed: int, fitted: Fitted) -> Dataset:
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
        rows = Rows(x, target_labels(pd.Series(bunch.target), origin, task), [], None, origin)
    else:
        rows = frame_rows(loader(as_frame=True).frame, origin, task)
    return table_dataset(carve_rows(rows, data.split.test, data.split.val, task, seed), data, task, fitted,
                         f"{data.dataset} (scikit-learn)")


@SOURCES.register("openml")
def openml_table(data: DataConfig, task: str, seed: int, fitted: Fitted) -> Dataset:
    from .openml import load_openml  # sklearn's OpenML client, only when used

    rows = load_openml(data, task)
    return table_dataset(carve_rows(rows, data.split.test, data.split.val, task, seed), data, task, fitted,
                         rows.origin.file)


def _streamed(data: DataConfig, task: str, seed: int, fitted: Fitted) -> Dataset | None:
    """Table files too large for memory (or `stream: true`) as streamed splits; None to read them whole."""
    if data.stream is False:
        return None
    from . import stream  # imports torch: only for table files that may be streamed

    return stream.load_streamed(data, task=task, seed=seed, fitted=fitted) if stream.should_stream(data) else None


def carve_rows(rows: Rows, test: float, val: float, task: str, seed: int) -> dict[str, Rows]:
    """Test, then val, as fractions of all rows; stratified by class for classification."""
    index = carve(len(rows), rows.y if task != "regression" else None, test, val, seed, rows.origin.file)
    return {"train": rows} if index is None else {name: rows.take(i) for name, i in index.items()}


def table_dataset(parts: dict[str, Rows], data: DataConfig, task: str, fitted: Fitted, source: str) -> Dataset:
    """Raw rows per split -> the Dataset: missing values filled, classes and scaler fitted on train, applied."""
    notes = list(dict.fromkeys(note for rows in parts.values() for note in rows.notes))
    fill = _fill_missing(parts, data, fitted.fill, notes)
    train = parts["train"]
    input_shape, names = tuple(train.x.shape[1:]), train.names
    classes, scaler = fitted.classes, fitted.scaler
    if task != "regression" and classes is None:
        classes = class_list(train.y)
    if scaler is None and data.scale != "none":
        scaler = Scaler.fit(data.scale, train.x)
    del train
    weights = {name: rows.w for name, rows in parts.items() if rows.w is not None} or None
    index = {name: rows.file_rows() for name, rows in parts.items()}
    files = {name: rows.origin.file for name, rows in parts.items()}
    # Pop each raw split as it is scaled, so at most one unscaled copy is alive besides the results.
    splits = {name: finish(parts.pop(name), task, scaler, classes, name) for name in list(parts)}
    return Dataset(splits, task, input_shape, names, list(classes) if task != "regression" else None,
                   scaler, source, notes=notes, fill=fill, weights=weights, index=index, files=files)


def finish(rows: Rows, task: str, scaler: Scaler | None, classes: list | None,
           split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw rows -> (x scaled in place, y as class ids or values)."""
    y = rows.y if task == "regression" else encode(rows.y, classes, rows.origin.file, split)
    x = scaler.transform(rows.x, inplace=True) if scaler is not None else rows.x  # rows are ours: no copy
    return x, y


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
        fill = fit_fill(flat_rows(train.x), train.names, train.origin)
    filled: dict[str, int] = {}
    for rows in parts.values():
        for name, count in apply_fill(flat_rows(rows.x), rows.names, fill, rows.origin).items():
            filled[name] = filled.get(name, 0) + count
    if filled:
        notes.append(fill_note(filled))
    return fill


# ----------------------------------------------------------------------------------------------
# Image sources: images may stream through torch Datasets, so they have their own path (images/)


@SOURCES.register("images")
@SOURCES.register("torchvision")  # (decorators apply bottom up: this one first, as in the config's order)
def images(data: DataConfig, task: str, seed: int, fitted: Fitted) -> Dataset:
    """A torchvision image set, or a folder of images with a subfolder per class."""
    from .images import load_images

    return load_images(data, task=task, seed=seed, fitted=fitted)
