"""Metrics by name, computed on the whole split after each epoch.

Accuracy, MSE, RMSE and MAE are one line of numpy each, precision, recall and F1 three
bincounts (tests check them all against scikit-learn); the rest come from scikit-learn, imported at the
first of them: a run with only those metrics never pays its import (memory and start-up time).

Classification metrics take class indices and probabilities; precision, recall and F1 are for the
positive class (index 1) in a binary task and macro-averaged over classes in a multi-class one;
ROC AUC is one-vs-rest, macro-averaged, for multi-class.

With event weights (`Outputs.weight`, data.weight) every metric is weighted, as scikit-learn's
`sample_weight`; the AUC is computed from the weighted ROC (physics.py), which works with negative
weights. The binary figures of merit take their working point in the name: `rejection@eff=0.5`
(1/eps_B at signal efficiency 0.5), `efficiency@rej=100`, and `ams` (`ams@b_reg=10`, or
`{name: ams, b_reg: 10}`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from ..registry import BINARY, CLASSIFICATION, REGRESSION, Registry
from . import physics


class MetricRegistry(Registry):
    """Metric names may carry their parameters: `rejection@eff=0.5` is {name: rejection, eff: 0.5}, and is
    the metric's name in metrics.csv, evaluation.json and an early-stopping monitor (`val_rejection@eff=0.5`)."""

    def expand(self, spec: Any) -> Any:
        if isinstance(spec, str) and "@" in spec:
            base, _, rest = spec.partition("@")
            params = {}
            for part in rest.split(","):
                key, _, value = part.partition("=")
                try:
                    params[key.strip()] = float(value)
                except ValueError:
                    params[key.strip()] = value.strip()
            return {"name": base.strip(), **params}
        return spec

    def check(self, spec: Any, where: tuple = ()):
        checked, problems = super().check(spec, where)
        if checked is None or problems:
            return checked, problems
        return {"name": metric_label(checked)}, problems

    def canonical(self, name: Any) -> str | None:
        if isinstance(name, str) and "@" in name:
            spec = self.expand(name)
            return super().canonical(spec["name"]) and name
        return super().canonical(name)

    def column(self, column: str) -> str:
        """A metrics.csv column named by a metric's plain name, as its label with the default working point:
        `val_ams` -> `val_ams@b_reg=10`, `train_rejection` -> `train_rejection@eff=0.5`; others unchanged."""
        prefix, _, name = column.partition("_")
        if prefix not in ("train", "val") or "@" in name or self.canonical(name) is None:
            return column
        checked, problems = self.check(name)
        return f"{prefix}_{checked['name']}" if checked is not None and not problems else column

    def get(self, name: str):
        if isinstance(name, str) and "@" in name:
            spec = self.expand(name)
            entry, params, _ = self.parse(spec)
            return replace(entry, name=metric_label({"name": entry.name, **params}),
                           builder=partial(entry.builder, **params))
        return super().get(name)


def metric_label(spec: dict) -> str:
    """{name: rejection, eff: 0.5} -> "rejection@eff=0.5"; a plain name stays as it is."""
    params = {k: v for k, v in spec.items() if k != "name"}
    if not params:
        return spec["name"]
    return spec["name"] + "@" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in params.items())


METRICS = MetricRegistry("metric")


@dataclass
class Outputs:
    """What a model produced on a split, on the CPU."""

    task: str
    y_true: np.ndarray | None  # class ids (n,) (uint8 for binary), or values (n, k); None for inputs alone
    y_prob: np.ndarray  # probabilities (n, C) for classification (C = 2 for binary); values (n, k) for regression
    weight: np.ndarray | None = None  # event weights (n,) (data.weight); None: every row weighs 1

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
    return float(_mean(out.y_true == out.y_pred, out.weight)) if len(out.y_true) else math.nan


@METRICS.register("precision", tasks=CLASSIFICATION)
def precision(out: Outputs) -> float:
    """TP / (TP + FP): of the rows predicted positive, the share that are."""
    tp, predicted, true = _counts(out)
    return _score(tp, predicted, out)


@METRICS.register("recall", tasks=CLASSIFICATION)
def recall(out: Outputs) -> float:
    """TP / (TP + FN): of the positive rows, the share predicted so."""
    tp, predicted, true = _counts(out)
    return _score(tp, true, out)


@METRICS.register("f1", "f1_score", tasks=CLASSIFICATION)
def f1(out: Outputs) -> float:
    """The harmonic mean of precision and recall: 2 TP / (2 TP + FP + FN)."""
    tp, predicted, true = _counts(out)
    return _score(2 * tp, predicted + true, out)


def _counts(out: Outputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: true positives, rows predicted as it, rows of it (sums of event weights with data.weight):
    three bincounts. scikit-learn's precision_score and its kin give the same (tests/test_metrics.py) at
    40 times the cost, most of it checking its inputs: 45% of a quickstart epoch. A true class id the
    model has no output for counts, as in scikit-learn with `labels`, only where it is predicted (wrongly)."""
    classes = out.y_prob.shape[1]
    y_true, y_pred, w = np.asarray(out.y_true, dtype=np.int64).reshape(-1), out.y_pred, out.weight
    hit = y_true == y_pred

    def per_class(ids, weights):
        return np.bincount(ids, weights=weights, minlength=classes)[:classes].astype(np.float64)

    return (per_class(y_pred[hit], None if w is None else w[hit]), per_class(y_pred, w), per_class(y_true, w))


def _score(numerator: np.ndarray, denominator: np.ndarray, out: Outputs) -> float:
    """The ratio for the positive class (binary), or its mean over the classes (macro); 0 where nothing is
    counted (scikit-learn's zero_division=0), NaN for an empty split."""
    if not len(out.y_pred):
        return math.nan
    ratio = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)
    return float(ratio[1] if out.task == "binary" else ratio.mean())


@METRICS.register("auc", "roc_auc", "AUC", tasks=CLASSIFICATION)
def auc(out: Outputs) -> float:
    """The area under the ROC curve; NaN when the split holds a single class, where it is undefined."""
    present = np.unique(out.y_true)
    if len(present) < 2:
        return math.nan
    if out.task == "binary" or out.y_prob.shape[1] == 2:  # two softmax classes: the ROC of class 1, as binary
        return physics.weighted_auc(out.y_true, out.y_prob[:, 1], out.weight)
    if len(present) < out.y_prob.shape[1]:
        return math.nan  # one-vs-rest needs every class present
    if out.weight is not None:  # one-vs-rest, macro-averaged, from the weighted ROC of each class
        return float(np.mean([physics.weighted_auc(out.y_true == c, out.y_prob[:, c], out.weight)
                              for c in range(out.y_prob.shape[1])]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _skm().roc_auc_score(out.y_true, out.y_prob, multi_class="ovr", average="macro")


@METRICS.register("mse", "mean_squared_error", tasks=REGRESSION)
def mse(out: Outputs) -> float:
    """mean((ŷ - y)²)."""
    return float(_mean(np.square(_error(out)), out.weight))


@METRICS.register("rmse", "root_mean_squared_error", tasks=REGRESSION)
def rmse(out: Outputs) -> float:
    """sqrt(mean((ŷ - y)²))."""
    return math.sqrt(mse(out))


@METRICS.register("mae", "mean_absolute_error", tasks=REGRESSION)
def mae(out: Outputs) -> float:
    """mean(abs(ŷ - y))."""
    return float(_mean(np.abs(_error(out)), out.weight))


@METRICS.register("r2", "r2_score", "r_squared", tasks=REGRESSION)
def r2(out: Outputs) -> float:
    """1 - Σ(ŷ - y)² / Σ(y - mean(y))²: the share of the target's variance the model explains."""
    return _skm().r2_score(out.y_true, out.y_pred, sample_weight=out.weight)


EfficiencyLevel = Annotated[float, Field(gt=0, lt=1)]


@METRICS.register("rejection", "background_rejection", tasks=BINARY)
def rejection(out: Outputs, *, eff: EfficiencyLevel = 0.5) -> float:
    """1/eps_B, the background rejection, at a signal efficiency eff: rejection@eff=0.5 (weighted ROC)."""
    return physics.rejection_at(out.y_true, out.y_prob[:, 1], out.weight, eff=eff)


@METRICS.register("efficiency", "signal_efficiency", tasks=BINARY)
def efficiency(out: Outputs, *, rej: Annotated[float, Field(gt=1)] = 100.0) -> float:
    """The signal efficiency at a background rejection 1/eps_B = rej: efficiency@rej=100 (weighted ROC)."""
    return physics.efficiency_at(out.y_true, out.y_prob[:, 1], out.weight, rej=rej)


@METRICS.register("ams", "AMS", tasks=BINARY)
def ams(out: Outputs, *, b_reg: Annotated[float, Field(ge=0)] = 10.0) -> float:
    """HiggsML's sqrt(2((s+b+b_reg) ln(1+s/(b+b_reg)) - s)) at the best cut; s, b: weight sums (data.weight)."""
    return physics.best_ams(out.y_true, out.y_prob[:, 1], out.weight, b_reg=b_reg)[0]


def _mean(values: np.ndarray, weight: np.ndarray | None) -> float:
    """Row values' mean, weighted by the event weights when there are some (rows of several values: their mean)."""
    if weight is None:
        return float(np.mean(values))
    values = np.asarray(values, dtype=np.float64).reshape(len(weight), -1).mean(axis=1)
    return float(np.sum(weight * values) / np.sum(weight))


def _error(out: Outputs) -> np.ndarray:
    """Prediction minus truth, in float64 (as scikit-learn averages); averaged over all outputs alike."""
    return out.y_pred.astype(np.float64) - np.asarray(out.y_true, dtype=np.float64).reshape(out.y_pred.shape)


def _skm():
    """scikit-learn's metrics, imported on first use: commands that compute none start faster."""
    from sklearn import metrics

    return metrics


REPORTED = {"rejection": "rejection@eff=0.5", "efficiency": "efficiency@rej=100", "ams": "ams@b_reg=10"}  # as
# `evaluate` lists them: the names metrics.csv gives them with their defaults


def compute(names: list[str], out: Outputs) -> dict[str, float]:
    return {name: float(METRICS.get(name).builder(out)) for name in names}


def report(out: Outputs, also: list[str] = ()) -> dict:
    """Every metric of the task and those in `also` (the config's, with their working points), plus the
    confusion matrix for classification: what `evaluate` shows."""
    names = [REPORTED.get(n, n) for n in METRICS.names() if out.task in METRICS.get(n).tasks]
    names += [n for n in also if n not in names and out.task in METRICS.get(n).tasks]
    result: dict = {"metrics": compute(names, out)}
    if out.task in CLASSIFICATION:
        labels = list(range(out.y_prob.shape[1]))
        matrix = _skm().confusion_matrix(out.y_true, out.y_pred, labels=labels, sample_weight=out.weight)
        result["confusion_matrix"] = matrix.tolist()
    return result
