"""MLflow tracking against a real, temporary sqlite store, read back with `mlflow.search_runs`; the
config flattening and `dlcli runs`' changed-key columns; `Network.predict`'s mode."""

import shutil

import numpy as np
import pytest
import torch

import dlcli
from dlcli.commands.reports import runs_table
from dlcli.config.flat import changed_keys, flatten
from dlcli.engine.callbacks import OnEpochEnd
from dlcli.nn.network import build_model

CONFIG = """name: {name}
data: {{dataset: breast_cancer, split: {{val: 0.2, test: 0.2}}, scale: standard}}
model:
  layers:
{layers}    - {{type: dense, units: 1, activation: sigmoid}}
loss: binary_crossentropy
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: {epochs}, batch_size: 64, threads: 1}}
metrics: [accuracy, auc]
"""


def write_config(folder, name="tracked", epochs=3, layers=1):
    text = CONFIG.format(name=name, epochs=epochs, layers="".join(
        "    - {type: dense, units: 4, activation: relu}\n" for _ in range(layers)))
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_flatten_and_changed_keys():
    cfg = {"name": "a", "optimizer": {"name": "adam", "lr": 0.01}, "model": {"layers": [{"units": 8}, {}]},
           "metrics": [], "tracking": [{"type": "mlflow"}]}
    assert flatten(cfg) == {"name": "a", "optimizer.name": "adam", "optimizer.lr": 0.01, "model.layers.0.units": 8,
                            "model.layers.1": {}, "metrics": [], "tracking.0.type": "mlflow"}
    other = flatten({**cfg, "name": "b", "optimizer": {"name": "adam", "lr": 0.1}, "tracking": None})
    assert changed_keys([flatten(cfg), other]) == ["optimizer.lr"]  # name and tracking do not tell runs apart
    assert changed_keys([flatten(cfg), {**flatten(cfg), "seed": 1}]) == ["seed"]  # a key only one run has


def test_network_predict_is_eval_mode_without_autograd():
    torch.manual_seed(0)
    net = build_model({"input_shape": [5], "layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                                       {"type": "dropout", "rate": 0.5},
                                                       {"type": "dense", "units": 3, "activation": "softmax"}]})
    net.train()
    x = torch.randn(8, 5)
    a, b = net.predict(x), net.predict(x)
    assert torch.equal(a, b) and not a.requires_grad and net.training  # the mode it was in is given back
    np.testing.assert_allclose(a.sum(dim=1).numpy(), np.ones(8), rtol=1e-6)
    net.eval()
    with torch.no_grad():
        np.testing.assert_allclose(a.numpy(), torch.softmax(net(x), dim=1).numpy(), rtol=1e-6)
    assert {"load_run", "export", "train", "Run"} <= set(dir(dlcli))


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_mlflow_records_params_metrics_files_and_studies_and_survives_a_failing_store(tmp_path, capsys,
                                                                                     monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH
    from typer.testing import CliRunner

    from dlcli.cli.app import app
    from dlcli.engine.tracking import child_run, config_params, start_parent_run

    # `dlcli train CFG --track mlflow`, as a user types it: the default store, runs/mlflow.db of the current folder.
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    root = tmp_path / "runs"
    cfg = write_config(tmp_path, layers=12)  # enough layers for more params than one MLflow batch takes
    trained = CliRunner().invoke(app, ["train", str(cfg), "--track", "mlflow", "--no-progress"])
    assert trained.exit_code == 0 and "warning" not in trained.output, trained.output
    result = dlcli.load_run(root / "tracked")
    assert (root / "mlflow.db").is_file() and (root / "mlruns").is_dir()  # the run's files beside the database
    dlcli.evaluate(result.path)
    dlcli.export(result.path, format="torch")  # the quicker format: ONNX's export is tested in test_export.py

    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["tracked"], output_format="list")  # experiment: the config's name
    assert len(found) == 1
    run = found[0]
    assert run.info.status == "FINISHED" and run.info.run_name == f"tracked/{result.path.name}"
    params = run.data.params
    assert len(params) > MAX_PARAMS_TAGS_PER_BATCH  # sent in more than one batch
    assert params["optimizer.lr"] == "0.01" and params["model.layers.11.units"] == "4"
    assert params["train.epochs"] == "3" and params["data.dataset"] == "breast_cancer"
    client = mlflow.tracking.MlflowClient(uri)
    rows = result.history
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r["val_loss"])) for r in rows]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_auc")] == [1, 2, 3]
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "summary.txt", "metrics.csv", "evaluation.json", "plots", "export"} <= files
    assert {a.path for a in client.list_artifacts(run.info.run_id, "export")} >= {"export/model.pt2",
                                                                                  "export/model.pt2.json"}
    assert "plots/test_roc.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    long = config_params({"a": "x" * (MAX_PARAM_VAL_LENGTH + 50), "b": True, "c": None})
    assert len(long["a"]) == MAX_PARAM_VAL_LENGTH and long["a"].endswith("...") and long["b"] == "true"

    # A study: a parent run, a child run per trial tagged with its state (no tracking: in the trial configs).
    parent = start_parent_run(uri, "study", "search", tags={"sampler": "tpe"})
    small = write_config(tmp_path, name="trial", epochs=1)
    for number, state in enumerate(["COMPLETE", "PRUNED"]):
        with child_run(parent, tags={"trial": str(number)}) as child:
            dlcli.train(small, [f"optimizer.lr={0.01 * (number + 1)}"], runs_root=root, progress=False)
            child.set_state(state)
    parent.finish()
    children = mlflow.search_runs(experiment_names=["study"],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.run_id}'")
    assert sorted(zip(children["tags.trial"], children["tags.state"], children["params.optimizer.lr"])) == [
        ("0", "COMPLETE", "0.01"), ("1", "PRUNED", "0.02")]
    study = mlflow.search_runs(experiment_names=["study"], filter_string="tags.sampler = 'tpe'")
    assert list(study["run_id"]) == [parent.run_id] and list(study["status"]) == ["FINISHED"]

    # dlcli runs tells the two trials apart by their lr.
    trials = [r for r in runs_table(root) if r["name"] == "trial"]
    assert sorted(r["changed"]["optimizer.lr"] for r in trials) == [0.01, 0.02]

    # The store fails in the middle of a run (its file damaged after epoch 2): one warning, training goes on.
    broken = tmp_path / "broken.db"
    shutil.copy(root / "mlflow.db", broken)  # already set up: no migrations to wait for

    def damage(training, row):
        if row["epoch"] == 2:
            broken.write_bytes(b"not a database" * 2000)

    capsys.readouterr()
    survived = dlcli.train(write_config(tmp_path, name="broken", epochs=5),
                           [f'tracking=[{{type: mlflow, uri: "sqlite:///{broken}"}}]'], runs_root=root,
                           progress=False, callbacks=[OnEpochEnd(damage)])
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert survived.status == "completed" and survived.epochs == 5 and len(survived.history) == 5
    assert len(dlcli.load_run(survived.run_dir).history) == 5  # metrics.csv has every epoch
    assert text.count("tracking with mlflow") == 1 and "training goes on" in text


@pytest.mark.parametrize("tracker, package", [("mlflow", "mlflow"), ("tensorboard", "torch.utils.tensorboard")])
def test_a_missing_tracker_package_stops_before_a_run_folder_is_made(tmp_path, monkeypatch, tracker, package):
    """`--track mlflow` without the mlflow extra (the import is blocked here): one error line naming the
    extra, exit 2, and nothing under runs/ (no failed run to resume)."""
    import sys

    from typer.testing import CliRunner

    from dlcli.cli.app import app

    monkeypatch.setitem(sys.modules, package, None)  # `import package` raises ImportError
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", str(write_config(tmp_path)), "--track", tracker, "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"needs the {tracker} package" in result.output and "--extra" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("run.json"))


def test_tracking_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    cfg = write_config(tmp_path, epochs=2)
    result = dlcli.train(cfg, ["tracking=[{type: tensorboard}]"], runs_root=tmp_path / "runs", progress=False)
    events = list((result.run_dir / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
