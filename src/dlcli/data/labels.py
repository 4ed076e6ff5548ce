"""Class labels: the sorted classes of the train rows, and labels -> int64 class ids.

Labels can be numbers or text; 1.0 and 1 are one class, stored as the int. The mapping is kept with
the run (labels.json), so every split and every later file gets the same class ids.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..messages import few


def class_list(y: np.ndarray) -> list:
    """Sorted unique labels of the train rows, as plain JSON-friendly Python values."""
    try:
        values = np.unique(y)
    except TypeError:
        raise SpecError("the target mixes numbers and text; use one kind of class label", "target") from None
    return [plain(v) for v in values]


def plain(value):
    """A label as a plain Python value: numpy scalars unwrapped, bytes decoded, 1.0 as 1."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 are one class; store it as the int
    return value


def encode(y: np.ndarray, classes: list, file: str, split: str) -> np.ndarray:
    """Labels -> int64 class ids, looking up each distinct label once."""
    values, inverse = np.unique(y, return_inverse=True)
    index = {c: i for i, c in enumerate(classes)}
    labels = [plain(v) for v in values]
    unknown = [v for v in labels if v not in index]
    if unknown:
        raise SpecError(f"{file}: label(s) {few(unknown, repr)} in the {split} rows are not among the training "
                        f"classes: {few(classes, repr, 20)}", "target")
    return np.array([index[v] for v in labels], dtype=np.int64)[inverse.reshape(-1)]
