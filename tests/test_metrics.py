"""The metrics dlcli computes itself, against scikit-learn's implementations."""

import numpy as np
import pytest
from sklearn import metrics as skm

from dlcli.nn.metrics import Outputs, compute

RNG = np.random.default_rng(7)


def _classification(task: str, n: int, classes: int) -> Outputs:
    prob = RNG.random((n, classes)).astype(np.float32)
    return Outputs(task, RNG.integers(0, classes, n), prob / prob.sum(axis=1, keepdims=True))


@pytest.mark.parametrize("task, classes", [("binary", 2), ("multiclass", 7)])
def test_accuracy_equals_scikit_learns(task, classes):
    out = _classification(task, 1001, classes)
    expected = skm.accuracy_score(out.y_true, out.y_prob.argmax(axis=1))
    assert compute(["accuracy"], out)["accuracy"] == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_errors_equal_scikit_learns(outputs):
    y_true = RNG.normal(5, 3, (997, outputs)).astype(np.float32)
    y_pred = (y_true + RNG.normal(0, 1, y_true.shape)).astype(np.float32)
    got = compute(["mse", "rmse", "mae"], Outputs("regression", y_true, y_pred))
    # dlcli averages in float64; scikit-learn keeps float32 inputs' precision, so give it float64 ones
    y_true, y_pred = y_true.astype(np.float64), y_pred.astype(np.float64)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y_true, y_pred), rel=1e-12)
    # over all outputs at once, as Keras' RootMeanSquaredError (scikit-learn's averages per-output roots)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y_true, y_pred)), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred), rel=1e-12)


def test_a_regression_target_of_one_column_given_flat():
    y_true = np.array([1.0, 2.0, 4.0], dtype=np.float32)  # (n,), as a single-target split may hold it
    y_pred = np.array([[1.5], [2.0], [3.0]], dtype=np.float32)
    got = compute(["mse", "mae"], Outputs("regression", y_true, y_pred))
    assert got == {"mse": pytest.approx((0.25 + 0 + 1) / 3), "mae": pytest.approx((0.5 + 0 + 1) / 3)}


def test_binary_predictions_are_numpys_argmax_ties_and_nan_included():
    p = np.concatenate([RNG.random(1000), [0.5, 0.5 + 2**-24, 0.5 - 2**-25, 0.0, 1.0, np.nan]]).astype(np.float32)
    both = np.stack([1 - p, p], axis=1)
    out = Outputs("binary", (p > 0.5).astype(np.int64), both)
    np.testing.assert_array_equal(out.y_pred, both.argmax(axis=1))
    assert out.y_pred[1000] == 0  # p = 0.5: both classes tie, and argmax takes the first


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
def test_binary_scores_from_one_byte_predictions_equal_scikit_learns(name):
    out = _classification("binary", 1001, 2)
    expected = getattr(skm, f"{name}_score")(out.y_true, out.y_prob.argmax(axis=1))
    assert compute([name], out)[name] == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("task, classes", [("binary", 2), ("multiclass", 2), ("multiclass", 7)])
def test_precision_recall_f1_equal_scikit_learns(task, classes, weighted):
    """The confusion-matrix counts against scikit-learn's scores (zero_division=0), with event weights of both
    signs, a class that is never predicted and one that is absent from the split (macro: it counts as 0)."""
    n = 997
    y_true = RNG.integers(0, classes, n)
    prob = RNG.random((n, classes)).astype(np.float32)
    if classes > 2:
        y_true[y_true == 3] = 4  # class 3: in no row
        prob[:, 5] = 0  # class 5: never the most probable
    out = Outputs(task, y_true.astype(np.uint8) if task == "binary" else y_true, prob / prob.sum(axis=1, keepdims=True),
                  RNG.normal(1.0, 0.8, n) if weighted else None)
    average, labels = ("binary", None) if task == "binary" else ("macro", list(range(classes)))
    got = compute(["precision", "recall", "f1"], out)
    for name in ("precision", "recall", "f1"):
        expected = getattr(skm, f"{name}_score")(out.y_true, out.y_pred, average=average, labels=labels,
                                                 sample_weight=out.weight, zero_division=0)
        assert got[name] == pytest.approx(expected, rel=1e-12, abs=1e-15), name


def test_a_true_class_the_model_has_no_output_for_counts_as_scikit_learn_counts_it():
    y = np.array([0, 1, 2, 3, 1, 3])  # class 3: in the file, not among the model's 3 outputs
    prob = np.eye(3, dtype=np.float32)[[0, 1, 2, 1, 0, 2]]
    got = compute(["precision", "recall", "f1"], Outputs("multiclass", y, prob))
    for name in got:
        expected = getattr(skm, f"{name}_score")(y, prob.argmax(axis=1), average="macro", labels=[0, 1, 2],
                                                 zero_division=0)
        assert got[name] == pytest.approx(expected, abs=1e-15), name


def test_precision_recall_f1_where_nothing_is_counted():
    # nothing predicted positive, then no positive row: scikit-learn's zero_division=0 gives 0 (by hand too)
    never = Outputs("binary", np.array([1, 0, 1], dtype=np.uint8), np.array([[0.9, 0.1]] * 3, dtype=np.float32))
    assert compute(["precision", "recall", "f1"], never) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    none = Outputs("binary", np.array([0, 0], dtype=np.uint8), np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32))
    assert compute(["precision", "recall", "f1"], none) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    empty = Outputs("multiclass", np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.float32))
    assert all(np.isnan(v) for v in compute(["precision", "recall", "f1"], empty).values())


def test_auc_of_two_softmax_classes_is_the_roc_of_class_1():
    # categorical_crossentropy over 2 softmax outputs is a multiclass task with two columns of scores;
    # scikit-learn's one-vs-rest refuses that shape, and its binary ROC of class 1 is the right answer
    out = _classification("multiclass", 1001, 2)
    expected = skm.roc_auc_score(out.y_true, out.y_prob[:, 1])
    assert compute(["auc"], out)["auc"] == pytest.approx(expected, abs=1e-12)
