"""Plots: `evaluate` writes real PNGs of the documented pixel size, and the ROC it draws is sklearn's.

Tiny real runs (a binary table read from CSV, iris, diabetes) are trained in-process once for the
module; the plot functions are also checked directly on seeded outputs for the cases the runs do
not reach (several regression targets, many classes, a class missing from the split).
"""

from __future__ import annotations

import io
import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score

from dlcli import evaluate, train
from dlcli.commands import plots as P
from dlcli.config import load_config
from dlcli.nn.metrics import Outputs


def config(name: str, data: dict, layers: list, loss: str, metrics: list, epochs: int = 3) -> dict:
    return {"name": name, "seed": 0, "data": {**data, "scale": "standard"}, "model": {"layers": layers},
            "loss": loss, "optimizer": {"name": "adam", "lr": 0.01},
            "train": {"epochs": epochs, "batch_size": 64, "device": "cpu"}, "metrics": metrics}


def dense(units, activation=None):
    return {"type": "dense", "units": units, **({"activation": activation} if activation else {})}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A binary run on a CSV file, a multi-class run on iris and a regression run on diabetes."""
    folder = tmp_path_factory.mktemp("plots")
    table = load_breast_cancer(as_frame=True).frame
    table.iloc[:500].to_csv(folder / "cancer.csv", index=False)
    table.iloc[500:].to_csv(folder / "held out rows.csv", index=False)  # a --data file, spaces in its name
    configs = {
        "binary": config("cancer", {"path": str(folder / "cancer.csv"), "target": "target",
                                    "split": {"val": 0.25, "test": 0.25}, "stream": False},
                         [dense(8, "relu"), dense(1, "sigmoid")], "bce", ["accuracy", "auc"]),
        "multiclass": config("iris", {"dataset": "iris", "split": {"val": 0.25, "test": 0.3}},
                             [dense(8, "relu"), dense(3, "softmax")], "cce", ["accuracy"]),
        "regression": config("diabetes", {"dataset": "diabetes", "split": {"val": 0.25, "test": 0.25}},
                             [dense(8, "relu"), dense(1)], "mse", ["mae", "r2"]),
    }
    return SimpleNamespace(folder=folder, **{
        task: train(load_config(cfg), run_dir=folder / task, progress=False).run_dir for task, cfg in configs.items()})


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every pixel: a truncated file fails here
    assert image.format == "PNG"
    return image.size


# Hand-worked from the documented sizes: 100 dpi, learning-curve and score panels 4 x 3 in, three to
# a row; ROC 5 x 5 in; confusion matrix two 6 x 5 in panels (counts, row-normalised); binary scores
# 6 x 4 in; predicted-vs-true 4 x 4 in; HEP ROC 6 x 5 in; overtraining as the scores; residuals 4 x 3 in.
EXPECTED = {
    "binary": {"plots/learning_curves.png": (1200, 300),  # loss, accuracy, auc
               "plots/test_roc.png": (500, 500), "plots/test_confusion_matrix.png": (1200, 500),
               "plots/test_scores.png": (600, 400), "plots/test_roc_rejection.png": (600, 500),
               "plots/test_overtraining.png": (600, 400)},
    "multiclass": {"plots/learning_curves.png": (800, 300),  # loss, accuracy
                   "plots/test_roc.png": (500, 500), "plots/test_confusion_matrix.png": (1200, 500),
                   "plots/test_scores.png": (1200, 300),  # a panel per class
                   "plots/test_overtraining.png": (1200, 300)},  # likewise (no HEP ROC: it is binary)
    "regression": {"plots/learning_curves.png": (1200, 300),  # loss, mae, r2
                   "plots/test_pred_vs_true.png": (400, 400), "plots/test_residuals.png": (400, 300)},
}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_evaluate_writes_every_plot_of_the_task(trained, task):
    run = getattr(trained, task)
    result = evaluate(run)
    assert result["plots"] == list(EXPECTED[task])  # learning curves first, then the split's plots
    assert json.loads((run / "evaluation.json").read_text())["plots"] == result["plots"]
    for name, size in EXPECTED[task].items():
        assert png_size((run / name).read_bytes()) == size, name
    written = {f"plots/{p.name}" for p in (run / "plots").iterdir()}
    assert {p for p in written if p.startswith(("plots/test_", "plots/learning"))} == set(EXPECTED[task])
    assert not [p for p in (run / "plots").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_no_plots_writes_none(trained, tmp_path):
    run = shutil.copytree(trained.multiclass, tmp_path / "copy", ignore=shutil.ignore_patterns("plots"))
    result = evaluate(run, split="val", plots=False)
    assert "plots" not in result and "plots" not in json.loads((run / "evaluation.json").read_text())
    assert not (run / "plots").exists()
    assert "plots" not in evaluate(run, write=False) and not (run / "plots").exists()  # write=False: no files


def test_a_data_file_names_its_plots_after_the_file(trained):
    run = trained.binary
    result = evaluate(run, data=trained.folder / "held out rows.csv")
    assert result["n_samples"] == 69
    assert result["plots"] == ["plots/learning_curves.png", "plots/held_out_rows_roc.png",
                               "plots/held_out_rows_confusion_matrix.png", "plots/held_out_rows_scores.png",
                               "plots/held_out_rows_roc_rejection.png"]  # no overtraining check: not a split
    assert all((run / p).is_file() for p in result["plots"])


def test_the_val_split_plots_are_named_after_it(trained):
    result = evaluate(trained.regression, split="val")
    assert result["plots"] == ["plots/learning_curves.png", "plots/val_pred_vs_true.png", "plots/val_residuals.png"]


def test_safe_stem():
    assert P.safe_stem("/data/new rows (2024).csv") == "new_rows_2024"
    assert P.safe_stem("x/test.csv") == "test-file"  # never overwrites the test split's plots
    assert P.safe_stem("...csv") == "data"


# ----------------------------------------------------------------------------------------------
# The figures, on seeded outputs


def binary_outputs(n=300, seed=0, ties=False) -> Outputs:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(2.0 * y - 1 + rng.normal(0, 1.2, n))))
    if ties:
        p = np.round(p, 1)  # many equal scores: the ROC has diagonal steps
    return Outputs("binary", y, np.stack([1 - p, p], axis=1))


def multiclass_outputs(n=400, classes=4, seed=1) -> Outputs:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Outputs("multiclass", y, p)


@pytest.mark.parametrize("ties", [False, True])
def test_binary_roc_auc_is_sklearns(ties):
    out = binary_outputs(ties=ties)
    (curve,) = P.roc_curves(out, ["benign", "malignant"])
    assert curve.auc == pytest.approx(roc_auc_score(out.y_true, out.y_prob[:, 1]), abs=1e-12)
    assert curve.label == "malignant vs benign"
    assert (curve.fpr[0], curve.tpr[0], curve.fpr[-1], curve.tpr[-1]) == (0, 0, 1, 1)


def test_multiclass_roc_is_one_vs_rest_per_class():
    out = multiclass_outputs()
    curves = P.roc_curves(out, ["a", "b", "c", "d"])
    assert [c.label for c in curves] == ["a", "b", "c", "d"]
    for k, c in enumerate(curves):
        assert c.auc == pytest.approx(roc_auc_score(out.y_true == k, out.y_prob[:, k]), abs=1e-12)
    macro = roc_auc_score(out.y_true, out.y_prob, multi_class="ovr", average="macro")
    assert np.mean([c.auc for c in curves]) == pytest.approx(macro, abs=1e-12)


def test_a_class_missing_from_the_split_has_no_curve():
    out = multiclass_outputs()
    keep = out.y_true != 2
    out = Outputs("multiclass", out.y_true[keep], out.y_prob[keep])
    assert [c.label for c in P.roc_curves(out)] == ["0", "1", "3"]
    single = Outputs("binary", np.ones(5, dtype=int), np.tile([0.3, 0.7], (5, 1)))
    assert P.roc_curves(single) == [] and P.roc_plot(single) is None  # one class: no ROC at all
    assert png_size(P.scores_plot(single)) == (600, 400)  # the scores still are


@pytest.mark.parametrize("classes, size", [(5, (1200, 600)), (13, (600, 400))])
def test_multiclass_scores_panel_per_class_then_pooled(classes, size):
    # Up to MAX_PANELS (12) classes a panel each, three to a row; above, one pooled panel.
    out = multiclass_outputs(n=60 * classes, classes=classes)
    assert png_size(P.scores_plot(out)) == size


def test_pred_vs_true_a_panel_per_target():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(50, 2)).astype(np.float32)
    out = Outputs("regression", y, y + rng.normal(0, 0.1, y.shape))
    assert png_size(P.pred_vs_true_plot(out, ["energy", "angle"])) == (800, 400)


def test_learning_curves_plot_whatever_pairs_exist():
    rows = [{"epoch": e, "lr": 0.1, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_auc": 0.8,
             "train_accuracy": 0.7, "epoch_seconds": 0.1} for e in (1, 2)]
    rows[1]["val_auc"] = math.nan  # undefined values leave a gap, not an error
    assert png_size(P.learning_curves([("r", rows)])) == (1200, 300)  # loss, auc, accuracy: not lr or time
    only_train = [{"epoch": 1, "lr": 0.1, "train_loss": 0.5}]
    assert png_size(P.learning_curves([("r", only_train)])) == (400, 300)
    assert P.learning_curves([("r", [])]) is None


def test_a_look_at_one_figure_in_memory():
    """Render, decode, and check the figure is not blank: a real drawing has many colours."""
    image = Image.open(io.BytesIO(P.confusion_plot(multiclass_outputs(), ["w", "x", "y", "z"]))).convert("RGB")
    assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 50


def test_classifier_outputs_are_binned_over_their_own_range_when_they_fill_little_of_0_to_1():
    from dlcli.commands.plots import score_bins

    spread = score_bins(np.array([0.1, 0.9]), np.array([0.5]))
    assert spread[0] == 0 and spread[-1] == 1 and len(spread) == 41
    low = score_bins(np.array([0.002, 0.05]), np.array([0.09]))  # a weighted training's tiny signal prior
    assert low[0] == pytest.approx(0.002 - 0.02 * 0.088) and low[-1] == pytest.approx(0.09 + 0.02 * 0.088)
    assert score_bins(np.array([0.3, 0.3]))[-1] == 1  # one value: the usual [0, 1]
