"""Event weights: `data.weight` (a column, HDF5 field, npz array or ROOT branch) and what is done with them.

A simulated event's weight is cross-section x luminosity / generated events; NLO generators give
some events a negative weight, which is physics and kept by default (`negative_weights: keep`;
`zero` or `abs` change that, and loading says how many there were). `train.class_weight`, Keras'
per-class factor, multiplies into the train split's weights (engine/setup.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import SpecError
from ...messages import few
from .columns import Block, Origin, numeric


def weight_key(origin: Origin) -> str:
    """The key to fix for a bad weight column: data.weight in the main file, the file's key otherwise."""
    return "weight" if origin.main else origin.key


def check_weight_column(names: list[str], kind: str, origin: Origin) -> None:
    """SpecError naming the column and the file when `data.weight` is not one of the file's columns."""
    from ...messages import did_you_mean

    weight = origin.data.weight
    if weight is not None and weight not in names:
        raise SpecError(f"{origin.file} has no {kind} '{weight}' for the event weights (data.weight)"
                        f"{did_you_mean(weight, names)}", weight_key(origin))


def weight_values(block: Block, origin: Origin, first_row: int = 0) -> np.ndarray | None:
    """The weight column of a block as float64 (n,), the negative-weight policy applied; None without data.weight.
    NaN or infinite weights are refused, naming the column, the file and the rows."""
    name = origin.data.weight
    if name is None:
        return None
    column = block[name]
    if isinstance(column, pd.Series):
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            numeric(column, origin, weight_key(origin), "event weights must be numbers", first_row)  # names bad text
            column = pd.to_numeric(column, errors="coerce")
        w = column.to_numpy(dtype=np.float64, na_value=np.nan)  # float64: a weight is never rounded to float32
    else:
        w = np.asarray(column)
        if w.dtype.kind not in "biuf" or w.ndim != 1:
            raise SpecError(f"{origin.file}: the weight array '{name}' holds {w.dtype} values shaped {w.shape}; "
                            "event weights are one number per row", weight_key(origin))
        w = w.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(w))
    if len(bad):
        raise SpecError(f"{origin.file}: the weight column '{name}' is NaN or infinite in {len(bad)} row(s): "
                        f"{few(bad + first_row + 1)}; every event needs a finite weight", weight_key(origin))
    return w


def negative_note(negative: int, total: int, file: str, policy: str) -> str | None:
    if not negative:
        return None
    done = {"keep": "kept as they are", "zero": "set to 0 (negative_weights: zero)",
            "abs": "made positive (negative_weights: abs)"}[policy]
    return f"data.weight: {negative} of {total} events of {file} have a negative weight, {done}"


def apply_negative(w: np.ndarray, policy: str) -> tuple[np.ndarray, int]:
    """(weights under `negative_weights:`, how many were negative)."""
    negative = int((w < 0).sum())
    if negative and policy == "zero":
        w = np.where(w < 0, 0.0, w)
    elif negative and policy == "abs":
        w = np.abs(w)
    return w, negative


def class_factors(class_weight, classes: list, totals: np.ndarray) -> np.ndarray:
    """`train.class_weight` -> one factor per class id: a mapping by class id or label (others 1.0), or
    `balanced` (scikit-learn's and Keras': total / (classes x the class's total))."""
    n = len(classes)
    if class_weight == "balanced":
        totals = np.asarray(totals, dtype=np.float64)
        if (totals <= 0).any():
            empty = [classes[i] for i in np.flatnonzero(totals <= 0)]
            raise SpecError(f"balanced class weights need every class in the training split; {few(empty)} "
                            "has none (or a weight sum of 0 or less)", "class_weight")
        return totals.sum() / (n * totals)
    factors = np.ones(n)
    labels = {str(c): i for i, c in enumerate(classes)}
    for key, value in class_weight.items():
        if isinstance(key, int) and 0 <= key < n and (str(key) not in labels or labels[str(key)] == key):
            factors[key] = value
        elif str(key) in labels:
            factors[labels[str(key)]] = value
        else:
            raise SpecError(f"class_weight names class {key!r}, but the classes are {few(classes)} (ids 0 to "
                            f"{n - 1}); give a class id or label", f"class_weight.{key}")
    return factors
