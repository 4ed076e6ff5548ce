"""A loaded `data:` section: its splits, task, input shape, classes and fitted scaler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .scaler import Scaler

TASKS = ("binary", "multiclass", "regression")


@dataclass
class Fitted:
    """What a run fitted on its training rows and stores, passed back in so that nothing is refitted."""

    scaler: Scaler | None = None
    classes: list | None = None  # original label values, index = class id
    fill: dict[str, float] | None = None  # missing: mean: the train-split mean per feature


@dataclass
class Dataset:
    """A loaded `data:` section.

    Each split is either in memory, `(x, y)` numpy arrays already scaled (x float32 (n, *input_shape);
    y int64 class ids (n,) or float32 (n, k) for regression), which the training loop indexes by batch, or a
    `torch.utils.data.Dataset` (map-style or iterable) yielding one `(x, y)` sample at a time, scaled
    and, for the train split, augmented: x a float32 tensor of `input_shape`, y an int class id or a
    float32 (k,) tensor. The loop reads those through DataLoader workers. An iterable split may
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
    weights: dict[str, np.ndarray] | None = None  # data.weight: float64 event weights per in-memory split
    index: dict[str, np.ndarray] | None = None  # each in-memory table split's row numbers in `files[split]`
    files: dict[str, str] | None = None  # the file each table split's rows come from (predict --split)
    weight_sums: list[float] | None = None  # data.weight: train event-weight sum per class id, for streamed splits
    class_factors: np.ndarray | None = None  # train.class_weight's factor per class id, in the train split's weights
    train_events: np.ndarray | None = None  # with class_factors, in memory: the train rows' own weights (data.weight)
    event_weighted: bool = False  # data.weight was given (else the train split's weights are the factors alone)

    def weight(self, split: str, *, events: bool = False) -> np.ndarray | None:
        """The weights of an in-memory split's rows: data.weight's, times train.class_weight's factors for the
        train split (what the loss weighs); events=True: the events' own, which metrics, plots and predict's
        weight column use. None: all 1."""
        if events and split == "train" and self.class_factors is not None:
            return self.train_events
        return None if self.weights is None else self.weights.get(split)

    def served(self, split: str, *, events: bool = False):
        """A split's rows; events=True: a streamed train split serves its events' own weights, not times
        train.class_weight's factors."""
        rows = self.splits[split]
        if events and getattr(rows, "class_factors", None) is not None:
            return rows.weighed(None)
        return rows

    def without_class_factors(self, weights: np.ndarray | None, y) -> np.ndarray | None:
        """The weights of train rows of classes `y`, served with train.class_weight's factors, without them
        (train_<metric>: the events' own weights, as val_<metric> has). A class weighed 0 keeps 0."""
        if self.class_factors is None or weights is None:
            return weights
        if not self.event_weighted:
            return None
        factor = self.class_factors[np.asarray(y, dtype=np.int64).reshape(-1)]
        weights = np.asarray(weights, dtype=np.float64)
        return np.divide(weights, factor, out=np.zeros_like(weights), where=factor != 0)

    def class_weight_sums(self) -> list[float] | None:
        """The train split's event-weight sum per class id (None without weights or classes)."""
        if self.classes is None:
            return None
        train, w = self.splits["train"], self.weight("train")
        if in_memory(train):
            return None if w is None else np.bincount(train[1], weights=w, minlength=len(self.classes)).tolist()
        factors = getattr(train, "class_factors", None)  # train.class_weight, on a streamed split
        if self.weight_sums is None and factors is None:
            return None
        sums = np.asarray(self.weight_sums if self.weight_sums is not None else self.counts, dtype=np.float64)
        return (sums * (1.0 if factors is None else factors)).tolist()

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


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)} (resolve 'auto' first), got {task!r}")
