"""Keras habits (issue 19): each is accepted and trains as its dlcli spelling does, or `dlcli validate` exits 2
with the dlcli way to say it. Trainings are tiny (breast_cancer, 2 epochs) and run in this process."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

import dlcli
from dlcli.cli.app import app
from dlcli.commands.train import train

KERAS_LOSS = """\
import torch


def keras_bce(y_true, y_pred):
    # Keras' order: the target first. Swapped, it would learn nothing (recall 0).
    y_pred = y_pred.clamp(1e-7, 1 - 1e-7)
    return -(y_true * torch.log(y_pred) + (1 - y_true) * torch.log(1 - y_pred)).mean()


def vague(a, b):
    return ((a - b) ** 2).mean()
"""

# Written as a Keras user would: a plain list, input_shape on the first layer, LeakyReLU's alpha,
# learning_rate, ExponentialDecay in optimizer steps, a loss given as a function.
KERAS = """\
data: {dataset: breast_cancer, scale: standard, split: {val: 0.2}}
model:
  - {type: Dense, units: 8, input_shape: [30], activation: {name: LeakyReLU, alpha: 0.1}}
  - {type: Dense, units: 1, activation: sigmoid}
loss: keras_losses.py:keras_bce
optimizer: {name: Adam, learning_rate: 0.5}
schedule: {name: ExponentialDecay, decay_steps: 2, decay_rate: 0.5}
metrics: [recall]
train: {epochs: 2, batch_size: 128, device: cpu}
"""
DLCLI = """\
data: {dataset: breast_cancer, scale: standard, split: {val: 0.2}}
model:
  input_shape: [30]
  layers:
    - {type: dense, units: 8, activation: {name: leaky_relu, negative_slope: 0.1}}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, lr: 0.01}
schedule: {name: exponential_decay, decay_steps: 2, decay_rate: 0.5, interval: step}
metrics: [recall]
train: {epochs: 2, batch_size: 128, device: cpu}
"""
STEPS = math.ceil(455 / 128)  # breast_cancer's 569 rows, 80 % of them for training: 4 steps an epoch


def rows(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("keras")
    (folder / "keras_losses.py").write_text(KERAS_LOSS)
    (folder / "keras.yaml").write_text(KERAS)
    (folder / "dlcli.yaml").write_text(DLCLI)
    # optimizer.lr on the command line replaces the file's learning_rate: one key, two spellings.
    keras = train(folder / "keras.yaml", ["optimizer.lr=0.01"], run_dir=folder / "keras", progress=False)
    plain = train(folder / "dlcli.yaml", run_dir=folder / "dlcli", progress=False)
    return {"folder": folder, "keras": keras, "dlcli": plain}


def test_keras_spellings_train_as_their_dlcli_spelling(trained):
    keras, plain = rows(trained["keras"].run_dir), rows(trained["dlcli"].run_dir)
    assert [r["lr"] for r in keras] == [r["lr"] for r in plain]
    for k, p in zip(keras, plain):  # a BCE on probabilities, against dlcli's on logits
        assert k["train_loss"] == pytest.approx(p["train_loss"], rel=1e-4)
        assert k["val_recall"] == p["val_recall"] > 0.5  # (swapped, the train loss would be ~10 times larger)
    stored = yaml.safe_load((trained["keras"].run_dir / "config.yaml").read_text())
    assert stored["model"]["input_shape"] == [30] and len(stored["model"]["layers"]) == 2
    assert stored["model"]["layers"][0]["activation"] == {"name": "leaky_relu", "negative_slope": 0.1}
    assert stored["optimizer"]["lr"] == 0.01 and "learning_rate" not in stored["optimizer"]
    assert stored["loss"]["name"] == "custom" and stored["loss"]["function"].endswith("keras_losses.py:keras_bce")


def test_exponential_decay_counts_steps_and_the_lr_column_is_each_epochs_first(trained):
    # Keras: lr0 * decay_rate ^ (step / decay_steps); epoch 2 starts after STEPS optimizer steps.
    assert [r["lr"] for r in rows(trained["keras"].run_dir)] == pytest.approx([0.01, 0.01 * 0.5 ** (STEPS / 2)])


def test_train_returns_the_history(trained):
    result = trained["keras"]
    assert result.history == rows(result.run_dir) and result.metrics == result.history[-1]
    assert [row["epoch"] for row in result.history] == [1, 2]


def test_input_layer_and_binary_focal_crossentropy_train(trained):
    folder = trained["folder"]
    config = DLCLI.replace("  input_shape: [30]\n  layers:\n", "  layers:\n    - {type: Input, shape: [30]}\n")
    (folder / "focal.yaml").write_text(config.replace("loss: binary_crossentropy", "loss: BinaryFocalCrossentropy"))
    (folder / "focal_ref.yaml").write_text(DLCLI.replace("loss: binary_crossentropy", "loss: focal"))
    keras = train(folder / "focal.yaml", ["train.epochs=1"], run_dir=folder / "focal", progress=False)
    plain = train(folder / "focal_ref.yaml", ["train.epochs=1"], run_dir=folder / "focal_ref", progress=False)
    assert keras.history == [{**row, "epoch_seconds": keras.history[0]["epoch_seconds"]} for row in plain.history]
    stored = yaml.safe_load((keras.run_dir / "config.yaml").read_text())
    assert stored["model"]["input_shape"] == [30] and stored["loss"]["name"] == "focal"


# ----------------------------------------------------------------------------------------------
# Hints: exit 2 and the dlcli way


def validate(folder: Path, config: str, *overrides: str):
    (folder / "cfg.yaml").write_text(config)
    (folder / "keras_losses.py").write_text(KERAS_LOSS)
    return CliRunner().invoke(app, ["validate", str(folder / "cfg.yaml"), *overrides])


CONV = """\
data: {dataset: digits}
model:
  - {type: Input, shape: SHAPE}
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: Flatten}
  - {type: Dense, units: 10, activation: softmax}
loss: sparse_categorical_crossentropy
train: {device: cpu}
"""
HINTS = {
    "validation_split": (["validation_split=0.1"], "validation_split: unknown key 'validation_split': Keras' "
                                                   "validation_split is data.split.val here"),
    "epochs": (["epochs=3"], "epochs: unknown key 'epochs': it goes under train: train.epochs"),
    "batch_size": (["batch_size=64"], "batch_size: unknown key 'batch_size': it goes under train: train.batch_size"),
    "class_weight": (["class_weight={0: 1, 1: 5}"], "class weights go under train, as Keras' class_weight: train: "
                                                    "{class_weight: {0: 1.0, 1: 5.0}}"),
    "decay": (["optimizer.decay=0.01"], "optimizer.decay: unknown key 'decay': Keras' decay is a learning-rate decay, "
                                        "lr0 / (1 + decay * step); here it is a schedule: schedule: {name: "
                                        "inverse_time"),
    "negative-lr": (["optimizer.lr=-1"], "optimizer.lr: must be a positive number, got -1"),
    "negative-learning-rate": (["optimizer.learning_rate=-1"], "optimizer.learning_rate: must be a positive number"),
    "both-spellings": (["optimizer.lr=0.1", "optimizer.learning_rate=0.2"], "'lr' and 'learning_rate' are one key"),
    "gpu": (["train.device=gpu"], "train.device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'; a GPU is cuda here"),
    "plateau-per-step": (["schedule={name: plateau, interval: step}"],
                         "schedule.interval: must be epoch: reduce_on_plateau reads a metric once per epoch"),
    "exponential-decay-rate": (["schedule={name: exponential, decay_rate: 0.9}"],
                               "schedule.decay_rate: unknown key 'decay_rate': that is exponential_decay"),
}


@pytest.mark.parametrize("case", list(HINTS))
def test_keras_keys_get_the_dlcli_way(case, tmp_path):
    overrides, expected = HINTS[case]
    result = validate(tmp_path, DLCLI, *overrides)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.startswith("error: ")
    assert expected in result.output


def test_mps_when_absent_lists_the_devices_here(tmp_path):
    if torch.backends.mps.is_available():
        pytest.skip("this machine has mps")
    result = validate(tmp_path, DLCLI, "train.device=mps")
    assert result.exit_code == 2 and "train.device: 'mps' is not on this machine, which has cpu" in result.output


def test_a_channels_last_image_shape_is_explained(tmp_path):
    result = validate(tmp_path, CONV.replace("SHAPE", "[8, 8, 1]"))
    assert result.exit_code == 2, result.output
    assert ("cfg.yaml, line 3: model.input_shape: dlcli is channels-first ([channels, height, width], as "
            "PyTorch): use [1, 8, 8], not Keras' [8, 8, 1]") in result.output
    result = validate(tmp_path, CONV.replace("SHAPE", "[1, 8, 8]").replace("filters: 4", "filters: -4"))
    assert result.exit_code == 2 and "line 4: model.layers[0].filters: must be a positive integer" in result.output
    result = validate(tmp_path, CONV.replace("SHAPE", "[1, 8, 8]"))
    assert result.exit_code == 0 and "3 layers, 1,490 parameters" in result.output  # 4*(9+1) + 144*10+10


def test_an_input_layer_past_the_first_or_beside_input_shape_is_explained(tmp_path):
    config = DLCLI.replace("  layers:\n", "  layers:\n    - {type: Input, shape: [30]}\n")  # and input_shape: [30]
    result = validate(tmp_path, config)
    assert result.exit_code == 2, result.output
    assert "line 5: model.layers[0].type: Keras' Input layer is model.input_shape here; give the shape once" \
        in result.output


def test_validate_states_a_custom_losss_argument_order(tmp_path):
    keras = validate(tmp_path, DLCLI, "loss=keras_losses.py:keras_bce")
    assert keras.exit_code == 0, keras.output
    assert "is called as keras_bce(y_true=target, y_pred=prediction), by its argument names" in keras.output
    vague = validate(tmp_path, DLCLI, "loss=keras_losses.py:vague")
    assert vague.exit_code == 0, vague.output
    assert ("its argument names (a, b) do not say which is the prediction, so it is called as vague(prediction, "
            "target), the documented order") in vague.output


# ----------------------------------------------------------------------------------------------
# Python in a notebook


def test_the_public_api_is_listed_and_explained():
    assert dir(dlcli) == sorted(dlcli.__all__)
    assert all(getattr(dlcli, name) is not None for name in dlcli.__all__)
    assert "history" in dlcli.train.__doc__ and "overrides" in dlcli.train.__doc__


def test_build_loss_of_a_config(tmp_path):
    (tmp_path / "cfg.yaml").write_text(DLCLI)
    loss = dlcli.build_loss(dlcli.load_config(tmp_path / "cfg.yaml"))
    logits, target = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([[1.0], [0.0], [0.0]])
    assert loss(logits, target).item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, target).item())
    with pytest.raises(TypeError, match=r"build_loss\('bce'\) needs a context"):
        dlcli.build_loss("bce")
