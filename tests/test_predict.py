"""`dlcli predict`: outputs that agree with `evaluate`, identifying columns kept, columns matched by name,
and bad inputs reported as one line naming the input, exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score
from typer.testing import CliRunner

from dlcli import evaluate, predict, train
from dlcli.cli.app import app
from dlcli.errors import DataError

_SCRIPT = Path(sys.executable).with_name("dlcli")
DLCLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "dlcli.cli"]
FEATURES = ["mean radius", "mean texture", "mean smoothness", "worst area"]


def train_run(folder: Path, frame: pd.DataFrame, data: dict, layers: list, loss: str, **extra) -> Path:
    frame.to_csv(folder / "rows.csv", index=False)
    config = {"name": folder.name, "data": {"path": "rows.csv", "scale": "standard", **data},
              "model": {"layers": layers}, "loss": loss, "train": {"epochs": 4, "batch_size": 32}, **extra}
    (folder / "c.yaml").write_text(yaml.safe_dump(config))
    return train(folder / "c.yaml", run_dir=folder / "run", progress=False).run_dir


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    """Breast-cancer rows with text labels, an id and a comment column the model never sees."""
    folder = tmp_path_factory.mktemp("binary")
    bc = load_breast_cancer(as_frame=True).frame
    frame = pd.DataFrame({"event": np.arange(5000, 5000 + len(bc)), "note": [f"n{i % 7}" for i in range(len(bc))]})
    frame[FEATURES] = bc[FEATURES]
    frame["diagnosis"] = np.where(bc["target"] == 1, "benign", "malignant")
    layers = [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]
    run = train_run(folder, frame, {"target": "diagnosis", "features": FEATURES}, layers, "bce",
                    metrics=["accuracy", "auc"])
    return run, folder / "rows.csv", frame


def test_outputs_agree_with_evaluate_on_the_same_file(binary_run, tmp_path):
    run, rows, frame = binary_run
    result = predict(run, rows, output=tmp_path / "out.csv", batch_size=50)  # batches that do not divide 569
    evaluate(run, data=rows, plots=False)
    metrics = json.loads((run / "evaluation.json").read_text())["metrics"]
    table = pd.read_csv(tmp_path / "out.csv")
    assert result.outputs == ["prob_benign", "prob_malignant", "predicted"]
    assert list(table.columns) == ["event", "note", "diagnosis", *result.outputs]  # the input's order, then outputs
    np.testing.assert_array_equal(table["event"], frame["event"])
    np.testing.assert_allclose(table["prob_benign"] + table["prob_malignant"], 1, atol=1e-6)
    probs = table[["prob_benign", "prob_malignant"]].to_numpy()
    assert (table["predicted"] == np.where(probs[:, 1] > 0.5, "malignant", "benign")).all()
    assert accuracy_score(table["diagnosis"], table["predicted"]) == pytest.approx(metrics["accuracy"], abs=1e-12)
    truth = (table["diagnosis"] == "malignant").astype(int)
    assert log_loss(truth, probs[:, 1]) == pytest.approx(metrics["loss"], rel=1e-5)


def test_columns_in_another_order_line_up_by_name(binary_run, tmp_path):
    run, rows, frame = binary_run
    shuffled = frame[["worst area", "note", "mean smoothness", "mean radius", "diagnosis", "mean texture", "event"]]
    shuffled = shuffled.drop(columns="diagnosis")  # no target: predicting needs none
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    first, second = predict(run, rows), predict(run, tmp_path / "shuffled.csv")
    assert list(second.table.columns) == ["note", "event", *first.outputs]
    pd.testing.assert_frame_equal(first.table[first.outputs], second.table[second.outputs])


def test_a_missing_feature_column_names_the_input(binary_run, tmp_path):
    run, _, frame = binary_run
    frame.drop(columns="mean texture").to_csv(tmp_path / "partial.csv", index=False)
    with pytest.raises(DataError, match=rf"{tmp_path / 'partial.csv'} has no column 'mean texture'"):
        predict(run, tmp_path / "partial.csv")
    with pytest.raises(DataError, match="not found"):
        predict(run, tmp_path / "nothing.csv")
    with pytest.raises(DataError, match=r"the model takes table rows \(mean radius, .*\), not images"):
        predict(run, tmp_path)  # a folder means images
    outcome = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "partial.csv")])
    assert outcome.exit_code == 2 and "Traceback" not in outcome.output


def test_regression_values_match_evaluate(tmp_path):
    diabetes = load_diabetes(as_frame=True).frame.iloc[:200]
    frame = diabetes.rename(columns={"target": "progression"})
    frame.insert(0, "patient", [f"p{i:03d}" for i in range(len(frame))])
    frame.loc[[3, 50, 51], "bmi"] = np.nan  # missing: mean fills these with the training mean
    layers = [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 1}]
    run = train_run(tmp_path, frame, {"target": "progression", "drop": ["patient"], "missing": "mean"}, layers,
                    "mse", metrics=["mse", "r2"])
    result = predict(run, tmp_path / "rows.csv")
    metrics = evaluate(run, data=tmp_path / "rows.csv", plots=False, write=False)["metrics"]
    assert result.outputs == ["pred_progression"] and result.task == "regression"
    assert list(result.table.columns[:2]) == ["patient", "progression"]
    pred, truth = result.table["pred_progression"], result.table["progression"]
    assert mean_squared_error(truth, pred) == pytest.approx(metrics["mse"], rel=1e-5)
    assert r2_score(truth, pred) == pytest.approx(metrics["r2"], rel=1e-5)
    frame.fillna({"bmi": frame["bmi"].mean()}).to_csv(tmp_path / "filled.csv", index=False)
    filled = predict(run, tmp_path / "filled.csv").table["pred_progression"]
    np.testing.assert_allclose(pred, filled, rtol=1e-5)
    assert "bmi" in result.notes[0] and result.notes[1].startswith("threads: ")  # what was filled is said


def test_cli_writes_the_csv(binary_run, tmp_path):
    run, rows, _ = binary_run
    out = tmp_path / "predictions.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*DLCLI, "predict", str(run), str(rows), "-o", str(out), "--checkpoint", "last"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"569 predictions (last checkpoint, epoch 4); written to {out}" in proc.stdout
    expected = predict(run, rows, checkpoint="last").table
    pd.testing.assert_frame_equal(pd.read_csv(out), expected, check_dtype=False, atol=1e-7)


def test_image_folder_predictions_name_each_file(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, level in (("dark", 40), ("light", 210)):  # classes a tiny model separates at once
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(level + rng.normal(0, 20, (6, 6)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / "images" / label / f"{i}.png")
    config = {"data": {"images": "images", "scale": "standard"},
              "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}]},
              "loss": "cce", "optimizer": {"name": "adam", "lr": 0.05}, "train": {"epochs": 15, "batch_size": 4}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run = train(tmp_path / "c.yaml", run_dir=tmp_path / "run", progress=False).run_dir

    result = predict(run, tmp_path / "images")
    assert list(result.table.columns) == ["file", "prob_dark", "prob_light", "predicted"]
    assert result.table["file"].tolist() == [f"{c}/{i}.png" for c in ("dark", "light") for i in range(8)]
    assert (result.table["predicted"] == result.table["file"].str.split("/").str[0]).all()
    single = predict(run, tmp_path / "images" / "light" / "3.png").table
    assert single["file"].tolist() == ["3.png"]
    np.testing.assert_allclose(single["prob_light"], result.table["prob_light"][11], rtol=1e-6)

    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_csv(tmp_path / "table.csv", index=False)
    with pytest.raises(DataError, match=r"table\.csv: the model takes images shaped \[1, 6, 6\] but the input gives"):
        predict(run, tmp_path / "table.csv")
