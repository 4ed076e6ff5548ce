"""Metrics by name, computed on the whole split after each epoch.

Accuracy, MSE, RMSE and MAE are one line of numpy each (tests check them against scikit-learn); the
rest come from scikit-learn, imported at the first of them: a run with only those metrics never
pays its import (memory and start-up time).

Classification metrics take class indices and probabilities; precision, recall and F1 are for the
positive class (index 1) in a binary task and macro-averaged over classes in a multi-class one;
ROC AUC is one-vs-rest, macro-averaged, for multi-class.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..registry import CLASSIFICATION, REGRESSION, Registry

METRICS = Registry("metric")


@dataclass
class Outputs:
    """What a model produced on a split, on the CPU."""

    task: str
    y_true: np.ndarray | None  # class ids (n,) (uint8 for binary), or values (n, k); None for inputs alone
    y_prob: np.ndarray  # probabilities (n, C) for classification (C = 2 for binary); values (n, k) for regression

    @property
    def y_pred(self) -> np.ndarray:
        """Predicted class indices (the most probable class; ties go to the lower index), or the values."""
        if self.task == "binary":  # argmax's result as one byte a row, not eight
            return np.greater(self.y_prob[:, 1], self.y_prob[:, 0]).view(np.uint8)
        return self.y_prob.argmax(axis=1) if self.task in CLASSIFICATION else self.y_prob

    @property
    def average(self) -> str:
        return "binary" if self.task == "binary" else "macro"


@METRICS.register("accuracy", "acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
                  tasks=CLASSIFICATION)
def accuracy(out: Outputs) -> float:
    """The share of rows whose predicted class is the true class."""
    return float(np.mean(out.y_true == out.y_pred)) if len(out.y_true) else math.nan


@METRICS.register("precision", tasks=CLASSIFICATION)
def precision(out: Outputs) -> float:
    """TP / (TP + FP): of the rows predicted positive, the share that are."""
    return _skm().precision_score(out.y_true, out.y_pred, average=out.average, zero_division=0,
                               labels=_labels(out))


@METRICS.register("recall", tasks=CLASSIFICATION)
def recall(out: Outputs) -> float:
    """TP / (TP + FN): of the positive rows, the share predicted so."""
    return _skm().recall_score(out.y_true, out.y_pred, average=out.average, zero_division=0, labels=_labels(out))


@METRICS.register("f1", "f1_score", tasks=CLASSIFICATION)
def f1(out: Outputs) -> float:
    """The harmonic mean of precision and recall."""
    return _skm().f1_score(out.y_true, out.y_pred, average=out.average, zero_division=0, labels=_labels(out))


@METRICS.register("auc", "roc_auc", "AUC", tasks=CLASSIFICATION)
def auc(out: Outputs) -> float:
    """The area under the ROC curve; NaN when the split holds a single class, where it is undefined."""
    present = np.unique(out.y_true)
    if len(present) < 2:
        return math.nan
    if out.task == "binary":
        return _skm().roc_auc_score(out.y_true, out.y_prob[:, 1])
    if len(present) < out.y_prob.shape[1]:
        return math.nan  # one-vs-rest needs every class present
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _skm().roc_auc_score(out.y_true, out.y_prob, multi_class="ovr", average="macro")


@METRICS.register("mse", "mean_squared_error", tasks=REGRESSION)
def mse(out: Outputs) -> float:
    """mean((ŷ - y)²)."""
    return float(np.mean(np.square(_error(out))))


@METRICS.register("rmse", "root_mean_squared_error", tasks=REGRESSION)
def rmse(out: Outputs) -> float:
    """sqrt(mean((ŷ - y)²))."""
    return math.sqrt(mse(out))


@METRICS.register("mae", "mean_absolute_error", tasks=REGRESSION)
def mae(out: Outputs) -> float:
    """mean(abs(ŷ - y))."""
    return float(np.mean(np.abs(_error(out))))


@METRICS.register("r2", "r2_score", "r_squared", tasks=REGRESSION)
def r2(out: Outputs) -> float:
    """1 - Σ(ŷ - y)² / Σ(y - mean(y))²: the share of the target's variance the model explains."""
    return _skm().r2_score(out.y_true, out.y_pred)


def _error(out: Outputs) -> np.ndarray:
    """Prediction minus truth, in float64 (as scikit-learn averages); averaged over all outputs alike."""
    return out.y_pred.astype(np.float64) - np.asarray(out.y_true, dtype=np.float64).reshape(out.y_pred.shape)


def _skm():
    """scikit-learn's metrics, imported on first use: commands that compute none start faster."""
    from sklearn import metrics

    return metrics


def _labels(out: Outputs):
    return None if out.task == "binary" else list(range(out.y_prob.shape[1]))


def compute(names: list[str], out: Outputs) -> dict[str, float]:
    return {name: float(METRICS.get(name).builder(out)) for name in names}


def report(out: Outputs) -> dict:
    """Every metric of the task, plus the confusion matrix for classification: what `evaluate` shows."""
    names = [n for n in METRICS.names() if out.task in METRICS.get(n).tasks]
    result: dict = {"metrics": compute(names, out)}
    if out.task in CLASSIFICATION:
        labels = list(range(out.y_prob.shape[1]))
        result["confusion_matrix"] = _skm().confusion_matrix(out.y_true, out.y_pred, labels=labels).tolist()
    return result
