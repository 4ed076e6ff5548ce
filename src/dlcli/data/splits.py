"""Splits: test, then val, carved from the rows as fractions of all of them, seeded and stratified by class.

The same config and seed always carve the same rows, so `dlcli evaluate` re-creates a run's test
split. Tables carve their rows, image sources their images, by the same row numbers.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import DataConfig
from ..errors import SpecError


def carve(n: int, labels: np.ndarray | None, test: float, val: float, seed: int,
          file: str) -> dict[str, np.ndarray] | None:
    """Row numbers of "train", then "val" and "test" (those with a fraction above 0); None when nothing is
    carved, so all rows train. `labels` (classification) stratify; `file` names the rows in messages."""
    rest = np.arange(n)
    carved = {}
    # Row counts come from the total, so val is a fraction of all rows, not of what test left.
    for name, fraction in (("test", test), ("val", val)):
        if fraction > 0:
            count = max(1, math.ceil(fraction * n - 1e-9))  # sklearn's rounding, minus float noise
            rest, carved[name] = _split_off(rest, count, labels, seed, file, f"split.{name}")
    if not carved:
        return None
    return {"train": rest, **dict(reversed(carved.items()))}


def _split_off(index: np.ndarray, count: int, labels: np.ndarray | None, seed: int, file: str,
               key: str) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle `index` with the seed and split `count` rows off: (rest, split)."""
    from sklearn.model_selection import train_test_split

    if count >= len(index):
        raise SpecError(f"{file}: {len(index)} row(s) are too few to carve {count} for {key} and keep "
                        "training rows; lower the fraction or add rows", key)
    if labels is not None:
        try:
            return train_test_split(index, test_size=count, random_state=seed, shuffle=True,
                                    stratify=labels[index])
        except ValueError:
            pass  # a class too small to stratify: split without stratification
    return train_test_split(index, test_size=count, random_state=seed, shuffle=True)


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
