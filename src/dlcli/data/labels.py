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


def class_names(names, classes: list | None) -> list[str] | None:
    """`data.class_names` -> one display name per class id: a list in class order, or {label or id: name}
    (others keep their label). Without it, the labels themselves ("0", "1", or text labels). SpecError
    (key `class_names`) when a list has the wrong length or a mapping names no class."""
    if classes is None:
        return None
    shown = [str(c) for c in classes]
    if names is None:
        return shown
    if isinstance(names, list):
        if len(names) != len(classes):
            raise SpecError(f"class_names has {len(names)} names but there are {len(classes)} classes "
                            f"({few(classes, repr)}); give one per class, in class order", "class_names")
        return [str(n) for n in names]
    by_label = {str(c): i for i, c in enumerate(classes)}
    for key, name in names.items():
        if str(key) in by_label:
            shown[by_label[str(key)]] = str(name)
        elif isinstance(key, int) and 0 <= key < len(classes):
            shown[key] = str(name)
        else:
            raise SpecError(f"class_names names class {key!r}, but the classes are {few(classes, repr)}",
                            f"class_names.{key}")
    return shown
