"""The training loop in-process: reproducibility, early stopping, schedules, checkpoints, failures."""

import json
import re
from pathlib import Path

import pytest
import torch

from dlcli import evaluate, train
from dlcli.engine.callbacks import OnEpochEnd, on_rank, standard_callbacks
from dlcli.errors import RunError, TrainingFailed
from dlcli.runs import read_metrics

CFG = """\
name: t
seed: 3
data: {dataset: breast_cancer, split: {val: 0.25, test: 0.2}, scale: standard}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dropout, rate: 0.1}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
train: {epochs: 4, batch_size: 32}
metrics: [accuracy, auc]
"""


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(CFG)
    return path


def without_time(rows):
    return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows]


def test_same_seed_gives_the_same_metrics(cfg, tmp_path):
    a = train(cfg, run_dir=tmp_path / "a", progress=False).run_dir
    b = train(cfg, run_dir=tmp_path / "b", progress=False).run_dir
    c = train(cfg, ["seed=4"], run_dir=tmp_path / "c", progress=False).run_dir
    assert without_time(read_metrics(a / "metrics.csv")) == without_time(read_metrics(b / "metrics.csv"))
    assert without_time(read_metrics(a / "metrics.csv")) != without_time(read_metrics(c / "metrics.csv"))


def test_metrics_rows_log_lr_losses_and_metrics(cfg, tmp_path):
    run = train(cfg, ["schedule={name: exponential, gamma: 0.5, warmup_epochs: 2}"], run_dir=tmp_path / "r",
                progress=False).run_dir
    rows = read_metrics(run / "metrics.csv")
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_accuracy", "train_auc", "val_loss", "val_accuracy",
                             "val_auc", "epoch_seconds"]
    assert [r["lr"] for r in rows] == pytest.approx([0.025, 0.05, 0.05, 0.025])  # warmup, then gamma^k
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["epochs_completed"] == 4
    assert info["best_epoch"] == min(rows, key=lambda r: r["val_loss"])["epoch"]


def test_best_checkpoint_holds_the_best_epoch(cfg, tmp_path):
    run = train(cfg, ["train.epochs=6"], run_dir=tmp_path / "r", progress=False).run_dir
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)
    info = json.loads((run / "run.json").read_text())
    assert best["state"]["epoch"] == info["best_epoch"]
    assert evaluate(run, checkpoint="best")["epoch"] == info["best_epoch"]
    assert evaluate(run, checkpoint="last")["epoch"] == 6


def test_early_stopping_stops_after_patience(cfg, tmp_path):
    # lr 1e-7 never improves val_loss by min_delta after epoch 1: patience 2 stops at epoch 1 + 2 + 1 = 4.
    run = train(cfg, ["optimizer.lr=1e-7", "train.epochs=20",
                      "train.early_stopping={monitor: val_loss, patience: 2, min_delta: 0.01}"],
                run_dir=tmp_path / "r", progress=False).run_dir
    info = json.loads((run / "run.json").read_text())
    assert info["stopped_early"] and info["epochs_completed"] == 4
    with pytest.raises(RunError, match="stopped early at epoch 4"):  # a resume told nothing new refuses
        train(None, resume=run, progress=False)
    # Killed after the last checkpoint, before run.json said so: the checkpoint records the stop (early
    # stopping decides before it is saved), so the resume trains no more and marks the run completed.
    (run / "run.json").write_text(json.dumps({**info, "status": "running", "stopped_early": None}))
    resumed = train(None, resume=run, progress=False)
    assert resumed.epochs == 4 and resumed.stopped_early and len(read_metrics(run / "metrics.csv")) == 4


def test_early_stopping_on_a_train_metric(cfg, tmp_path):
    # min_delta 0.5: no later epoch beats epoch 1's train accuracy by that, so patience 1 stops at epoch 3.
    result = train(cfg, ["train.epochs=20", "train.early_stopping={monitor: train_accuracy, patience: 1, "
                         "min_delta: 0.5}"], run_dir=tmp_path / "r", progress=False)
    rows = read_metrics(result.run_dir / "metrics.csv")
    assert (result.monitor, result.epochs, result.best_epoch, result.stopped_early) == ("train_accuracy", 3, 1, True)
    assert result.best_value == rows[0]["train_accuracy"]


def test_train_returns_how_the_run_ended(cfg, tmp_path):
    result = train(cfg, ["train.epochs=3"], run_dir=tmp_path / "r", progress=False)
    info = json.loads((result.run_dir / "run.json").read_text())
    rows = read_metrics(result.run_dir / "metrics.csv")
    assert result.status == info["status"] == "completed" and result.epochs == info["epochs_completed"] == 3
    assert result.monitor == info["monitor"] == "val_loss" and not result.stopped_early
    best = min(rows, key=lambda r: r["val_loss"])
    assert (result.best_epoch, result.best_value) == (best["epoch"], best["val_loss"])
    assert result.metrics == rows[-1]  # metrics.csv stores each float's repr: read back exactly
    assert Path(result) == result.run_dir and evaluate(result, plots=False)["epoch"] == best["epoch"]


def test_a_per_epoch_hook_sees_every_row_and_the_state(cfg, tmp_path):
    seen = []
    hook = OnEpochEnd(lambda training, row: seen.append((training.state.epoch, dict(row))))
    result = train(cfg, run_dir=tmp_path / "r", progress=False, callbacks=[hook])
    assert seen == [(row["epoch"], row) for row in read_metrics(result.run_dir / "metrics.csv")]
    assert [epoch for epoch, _ in seen] == [1, 2, 3, 4]


def test_callbacks_that_write_run_on_rank_zero_alone(cfg, tmp_path):
    from dlcli.config import load_config

    callbacks = standard_callbacks(load_config(cfg, ["train.early_stopping=true"]), tmp_path, progress=False)
    assert [type(cb).__name__ for cb in callbacks] == ["EarlyStopping", "Checkpoint", "MetricsLog", "ProgressBar"]
    assert on_rank(callbacks, 0) == callbacks
    assert [type(cb).__name__ for cb in on_rank(callbacks, 1)] == ["EarlyStopping"]  # every rank must stop together


def test_without_validation_data_best_is_last(cfg, tmp_path):
    run = train(cfg, ["data.split.val=0"], run_dir=tmp_path / "r", progress=False).run_dir
    assert "val_loss" not in read_metrics(run / "metrics.csv")[0]
    result = evaluate(run)
    assert result["checkpoint"] in ("best", "last") and result["epoch"] == 4


def test_nan_loss_fails_the_run_naming_the_epoch(cfg, tmp_path):
    with pytest.raises(TrainingFailed, match="epoch 1"):
        train(cfg, ["optimizer.lr=1e30", "data.scale=none"], run_dir=tmp_path / "r", progress=False)
    info = json.loads((tmp_path / "r/run.json").read_text())
    assert info["status"] == "failed" and "epoch 1" in info["message"]


def test_gradient_clipping_bounds_the_update(cfg, tmp_path):
    # plain SGD with lr 1 and clip_grad_value 1e-4: no weight moves by more than 1e-4 per step.
    run = train(cfg, ["optimizer={name: sgd, lr: 1.0}", "train.clip_grad_value=1e-4", "train.epochs=1",
                      "train.batch_size=1000", "data.split.val=0", "model.layers[1].rate=0"],
                run_dir=tmp_path / "r", progress=False).run_dir
    ckpt = torch.load(run / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    from dlcli.config import load_config
    from dlcli.engine.setup import prepare

    fresh = prepare(load_config(run / "config.yaml")).model.state_dict()
    for name, value in ckpt["model"].items():
        assert (value - fresh[name]).abs().max() <= 1e-4 + 1e-7, name


@pytest.mark.cuda
def test_trains_on_cuda(cfg, tmp_path):
    run = train(cfg, run_dir=tmp_path / "r", device="cuda", progress=False).run_dir
    info = json.loads((run / "run.json").read_text())
    assert info["device"].startswith("cuda") and info["status"] == "completed"
    assert evaluate(run, device="cuda")["metrics"]["accuracy"] > 0.9


def test_validate_checks_the_gpu_that_is_asked_for_on_a_pretend_gpu(cfg, monkeypatch):
    # The same checks as the test below, on any machine: torch.cuda says there is one GPU with 0.1 GB free.
    from dlcli.commands.validate import validate
    from dlcli.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Pretend GPU")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (100_000_000, 80_000_000_000))
    with pytest.raises(ConfigError, match=r"train.device: 'cuda:1' is not on this machine, which has cpu, "
                                          r"cuda:0 \(Pretend GPU\)(, mps)?; use one of them, or auto"):
        validate(cfg, ["train.device=cuda:1"])
    # 3.2e6 weights x 4 copies x 4 bytes (51.2 MB) and 32 samples x 3e5 outputs x 2 copies x 4 bytes (76.8 MB)
    with pytest.raises(ConfigError, match=r"model.layers\[0\]: the model is too large: a training step of 32 "
                                          r"samples would need 128 MB .*, 100 MB of this GPU's memory available"):
        validate(cfg, ["train.device=cuda:0", "model.layers[0].units=100000"])
    assert validate(cfg, ["train.device=cuda:0", "model.layers[0].units=10000"]).layers == 3


@pytest.mark.cuda
def test_validate_checks_the_gpu_that_is_asked_for(cfg):
    from dlcli.commands.validate import validate
    from dlcli.errors import ConfigError

    past = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=rf"train.device: 'cuda:{past}' is not on this machine, which has cpu, "
                                          rf"cuda:0 \({torch.cuda.get_device_name(0)}\)"):
        validate(cfg, [f"train.device=cuda:{past}"])
    free = torch.cuda.mem_get_info(0)[0] / 1e9
    with pytest.raises(ConfigError, match=r"model.layers\[0\]: the model is too large: .* would need 1,280.0 GB") as exc:
        validate(cfg, ["train.device=cuda:0", "model.layers[0].units=1000000000"])
    # 32e9 weights x 4 copies x 4 bytes, and per sample 1e9 outputs of the layer, its relu and the dropout x 2 copies
    said = re.search(r"([\d,.]+) GB of this GPU's memory available", str(exc.value))
    assert said and abs(float(said[1].replace(",", "")) - free) < 5
    assert validate(cfg, ["train.device=cuda:0"]).parameters == 30 * 16 + 16 + 16 + 1


def _host_syncs(cfg, tmp_path, overrides) -> int:
    """How many times a CUDA run made the host wait for the GPU (torch's sync debug mode counts them)."""
    import warnings

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(cfg, overrides, run_dir=tmp_path / "-".join(overrides), device="cuda", progress=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.cuda
@pytest.mark.parametrize("loss", ["binary_crossentropy", "{name: focal, gamma: 2.0}", "{name: class_balanced, beta: 0.999}"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_epochs_sync_with_the_host_the_same_number_of_times_whatever_their_batch_count(
        cfg, tmp_path, loss, precision):
    # 341 training rows: 3 batches of 128 against 43 batches of 8. Per-batch syncs would show as 40 more.
    # One epoch: with two, whether the second improves val_loss (and so writes best.pt, a sync per
    # tensor) depends on the batch size.
    common = [f"loss={loss}", f"train.precision={precision}", "train.epochs=1"]
    _host_syncs(cfg, tmp_path, [*common, "train.batch_size=64"])  # warm-up: CUDA's one-off set-up
    few = _host_syncs(cfg, tmp_path, [*common, "train.batch_size=128"])
    many = _host_syncs(cfg, tmp_path, [*common, "train.batch_size=8"])
    assert few > 0  # the count works: the epoch reads its loss and outputs back, and saves
    assert many == few


def test_train_metrics_are_those_of_the_epochs_own_predictions(cfg, tmp_path):
    # With a learning rate too small to move the weights and no dropout, the predictions made while
    # training are those of the final model, so train_<metric> must equal evaluate on the train split.
    run = train(cfg, ["optimizer.lr=1e-12", "optimizer.momentum=0", "model.layers[1].rate=0", "train.epochs=1"],
                run_dir=tmp_path / "r", progress=False).run_dir
    row = read_metrics(run / "metrics.csv")[0]
    result = evaluate(run, split="train", write=False, plots=False)
    assert row["train_loss"] == pytest.approx(result["metrics"]["loss"], rel=1e-5)
    assert row["train_accuracy"] == result["metrics"]["accuracy"]
    assert row["train_auc"] == pytest.approx(result["metrics"]["auc"], abs=1e-12)


def test_tensorboard_gets_every_epoch_value(cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(cfg, ["train.tensorboard=true", "train.epochs=3"], run_dir=tmp_path / "r", progress=False).run_dir
    rows = read_metrics(run / "metrics.csv")
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {k for k in rows[0] if k not in ("epoch", "epoch_seconds")}
    for tag in ("train_loss", "val_auc", "lr"):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2, 3]
        assert [e.value for e in logged] == pytest.approx([r[tag] for r in rows], rel=1e-6)
