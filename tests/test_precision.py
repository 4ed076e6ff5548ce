"""train.precision, train.compile and train.channels_last against plain fp32 on the same seed.

Each option changes how the arithmetic is done, not what is computed, so two epochs of the same
seeded run must give nearly the same losses. Tolerances: channels-last and compile reorder float32
sums (1e-4 relative); bf16 keeps 8 bits of mantissa and fp16 11, so their losses may drift by a few
percent over two epochs (5e-2 relative). On CPU bf16 and fp16 autocast run too, so these also run
in CI; the CUDA versions are marked `cuda` (skipped without a GPU: conftest.py) and run on a GPU machine.
"""

from __future__ import annotations

import copy

import pytest
import torch

from dlcli import train
from dlcli.config import load_config
from dlcli.runs import read_metrics

CNN = {
    "seed": 1,
    "data": {"dataset": "digits", "split": {"val": 0.2}, "scale": "standard"},
    "model": {"layers": [
        {"type": "conv2d", "filters": 8, "kernel_size": 3, "activation": "relu"},
        {"type": "max_pool2d", "pool_size": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ]},
    "loss": "categorical_crossentropy",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 2, "batch_size": 64},
}
FFNN = {
    "seed": 1,
    "data": {"dataset": "breast_cancer", "split": {"val": 0.2}, "scale": "standard"},
    "model": {"layers": [
        {"type": "dense", "units": 32, "activation": "relu"},
        {"type": "dense", "units": 1, "activation": "sigmoid"},
    ]},
    "loss": "binary_crossentropy",
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 2, "batch_size": 32},
}


def losses(tmp_path, base, device="cpu", **train_options):
    cfg = copy.deepcopy(base)
    cfg["train"].update(device=device, **train_options)
    tag = "-".join(f"{k}{v}" for k, v in train_options.items()) or "fp32"
    run = train(load_config(cfg), run_dir=tmp_path / f"{device}-{tag}", progress=False).run_dir
    rows = read_metrics(run / "metrics.csv")
    return [r["train_loss"] for r in rows] + [r["val_loss"] for r in rows]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_tracks_fp32(tmp_path, device, precision):
    reference = losses(tmp_path, CNN, device)
    assert losses(tmp_path, CNN, device, precision=precision) == pytest.approx(reference, rel=5e-2)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_channels_last_tracks_fp32(tmp_path, device):
    reference = losses(tmp_path, CNN, device, channels_last=False)
    assert losses(tmp_path, CNN, device, channels_last=True) == pytest.approx(reference, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_compile_tracks_eager(tmp_path, device):
    reference = losses(tmp_path, FFNN, device)
    assert losses(tmp_path, FFNN, device, compile=True) == pytest.approx(reference, rel=1e-4)


def test_compile_falls_back_with_a_warning_where_it_fails(tmp_path, monkeypatch, capsys):
    def broken_compile(model, **_):
        def call(x):
            raise RuntimeError("no C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    reference = losses(tmp_path, FFNN)
    assert losses(tmp_path, FFNN, compile=True) == reference
    assert "train.compile: torch.compile failed here (RuntimeError: no C++ compiler found)" in capsys.readouterr().out


def test_fp16_checkpoint_keeps_the_gradient_scaler(tmp_path):
    cfg = copy.deepcopy(FFNN)
    cfg["train"].update(precision="fp16", epochs=1)
    run = train(load_config(cfg), run_dir=tmp_path / "r", progress=False).run_dir
    saved = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert saved["grad_scaler"]["scale"] > 0
