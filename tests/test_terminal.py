"""A quiet, tidy terminal: lines that fit 80 columns, a running loss read a few times a second, paths
relative to the current directory, every error line labelled, the resume command, and the shortcuts
(a folder of runs; `evaluate --data` after the training data has gone)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tomllib
import typer
from rich.console import Console

from dlcli import evaluate, train
from dlcli.cli import app, render
from dlcli.commands.reports import newest_run
from dlcli.config import load_config
from dlcli.engine import progress as progress_module
from dlcli.engine.callbacks import ProgressBar
from dlcli.engine.progress import Progress, epoch_line, fitted_line
from dlcli.errors import ConfigError, Problem, Stopped
from dlcli.messages import relative_paths, short_name

ROOT = Path(__file__).resolve().parents[1]
ROW = {"epoch": 12, "lr": 0.001, "train_loss": 0.6442, "train_accuracy": 0.6716, "train_precision": 0.6564,
       "train_recall": 1.0, "train_f1": 0.7926, "train_auc": 0.882, "val_loss": 0.6125, "val_accuracy": 0.6579,
       "val_precision": 0.6455, "val_recall": 1.0, "val_f1": 0.7845, "val_auc": 0.979, "epoch_seconds": 0.7284}


def console(width: int) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=True, color_system=None, highlight=False), buffer


def widest(text: str) -> int:
    return max(map(len, text.splitlines()))


# ----------------------------------------------------------------------------------------------
# uv: no "Bytecode compiled ..." on every command


def test_bytecode_is_compiled_once_by_ci_not_by_every_uv_run():
    uv = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("tool", {}).get("uv", {})
    assert "compile-bytecode" not in uv  # there, every `uv run` re-checks 12,000 files and says so
    assert "uv sync --locked --compile-bytecode" in (ROOT / ".ci" / "run").read_text()


# ----------------------------------------------------------------------------------------------
# The epoch line and the progress bar


def test_short_names_are_keras_ones():
    assert [short_name(c) for c in ("train_loss", "val_loss", "train_accuracy", "val_precision", "val_recall",
                                    "train_f1", "val_auc", "lr", "val_r2")] == \
        ["loss", "val_loss", "acc", "val_prec", "val_rec", "f1", "val_auc", "lr", "val_r2"]


@pytest.mark.parametrize("width", [60, 80, 120, 400])
def test_an_epoch_line_fits_the_terminal_losses_first(width):
    line, left_out = fitted_line(ROW, 60, width)
    assert len(line) <= width and line.startswith("epoch 12/60  ")
    items = line.split("  ")[1:]
    assert "loss 0.6442" in items and "val_loss 0.6125" in items  # what Keras shows first: always room for it
    assert len(items) + left_out == len(ROW) - 1  # every value is shown or counted as left out
    order = [short_name(k) for k in ROW if k != "epoch_seconds"] + ["728ms"]
    assert sorted(items, key=lambda item: order.index(item.split(" ")[0])) == items  # in metrics.csv's order
    if width == 400:
        assert left_out == 0 and line.endswith("val_auc 0.9790  728ms")
    if width == 80:  # the validation metrics before the train ones
        assert items[:4] == ["loss 0.6442", "val_loss 0.6125", "val_acc 0.6579", "val_prec 0.6455"]


def test_a_log_file_gets_every_value_under_its_metrics_csv_name():
    line = epoch_line(ROW, 60)
    assert line.startswith("epoch 12/60  lr 0.0010  train_loss 0.6442  train_accuracy 0.6716")
    assert line.endswith("val_auc 0.9790  epoch_seconds 0.7284")


def test_the_bar_reads_the_running_loss_a_few_times_a_second_not_per_step(monkeypatch):
    clock = iter(np.arange(0, 3, 0.001))  # 3000 batches in 3 s of a fake clock
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: float(next(clock)))
    shown, reads = [], []
    bar = Progress(epochs=2, batches=3000, enabled=True)
    bar.console, _ = console(80)
    with bar:
        bar.start_epoch(1)
        for b in range(3000):
            bar.batch(b, lambda b=b: reads.append(b) or 0.25)
            shown.append(bar.bar.tasks[0].fields["loss"])
    assert 3 * progress_module.REFRESH - 1 <= len(reads) <= 3 * progress_module.REFRESH + 1
    assert 2999 not in reads  # not at the epoch's last batch: the epoch's own read follows
    assert shown[0] == "-" and shown[-1] == "0.2500"


def test_the_running_loss_is_the_mean_of_the_batches_so_far():
    import torch

    from dlcli.engine.state import RunningLoss

    running = RunningLoss(torch.zeros(()))
    losses, sizes = [0.9, 0.5, 0.2], [32, 32, 7]
    for loss, n in zip(losses, sizes):
        running.add(torch.tensor(loss), n)
    assert running.rows == 71
    assert running.mean() == pytest.approx(np.average(losses, weights=sizes), rel=1e-6)


def test_a_resume_says_where_it_goes_on_from(capsys):
    callback = ProgressBar(epochs=10, enabled=False, run_dir=Path.cwd() / "runs" / "q" / "20260101-120000")
    training = SimpleNamespace(resumed=True, state=SimpleNamespace(epoch=4), batches_per_epoch=3,
                               setup=SimpleNamespace(data=SimpleNamespace(notes=[])))
    callback.on_fit_start(training)
    callback.on_fit_end(training)
    out = capsys.readouterr().out
    assert out == "resuming runs/q/20260101-120000 from epoch 4 of 10 (its last checkpoint)\n"


# ----------------------------------------------------------------------------------------------
# Errors: paths relative to here, every line labelled, the resume command


def test_paths_under_the_current_directory_are_written_relative_to_it():
    text = ("/w/p/cfg.yaml, line 3: data.path: not found: /w/p/data/x.csv; '/w/p/q.csv' (/w/p/r.csv) "
            "/w/pp/other.csv /x/w/p/y.csv /w/p")
    assert relative_paths(text, "/w/p") == ("cfg.yaml, line 3: data.path: not found: data/x.csv; 'q.csv' (r.csv) "
                                            "/w/pp/other.csv /x/w/p/y.csv /w/p")
    assert relative_paths("/a/b.csv", "/") == "/a/b.csv"


def failing(exc: BaseException):
    @app.friendly
    def command():
        raise exc

    return command


def test_every_line_of_a_report_starts_with_error_and_names_files_from_here(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    problems = [Problem("train.epochs", "must be a positive integer, got 0", 10),
                Problem("model.layers[1].unitz", "unknown key 'unitz'; did you mean 'units'?", 7)]
    with pytest.raises(typer.Exit) as exit_:
        failing(ConfigError(problems, str(tmp_path / "sub" / "bad.yaml")))()
    assert exit_.value.exit_code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: sub/bad.yaml, line 10: train.epochs: must be a positive integer, got 0",
        "error: sub/bad.yaml, line 7: model.layers[1].unitz: unknown key 'unitz'; did you mean 'units'?"]


def test_ctrl_c_prints_the_command_that_resumes_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(typer.Exit) as exit_:
        failing(Stopped(2, tmp_path / "runs" / "my run" / "20260101-120000"))()
    assert exit_.value.exit_code == 130
    assert capsys.readouterr().err.splitlines() == [
        "interrupted: the run is marked interrupted; continue it with",
        "  dlcli train --resume 'runs/my run/20260101-120000'"]  # quoted: it pastes as one argument


# ----------------------------------------------------------------------------------------------
# 80 columns: runs, predict, evaluate


def run_summary(path: str, name: str, evaluated: bool) -> dict:
    return {"path": path, "name": name, "started": "2026-12-02T18:45:54+01:00", "status": "completed",
            "epochs": 60, "monitor": "val_loss", "best_value": 0.0712, "best_epoch": 48,
            "evaluation": {"split": "test", "checkpoint": "best", "epoch": 48,
                           "metrics": {"loss": 0.0652, "accuracy": 0.9825, "precision": 0.9859, "recall": 0.9859,
                                       "f1": 0.9859, "auc": 0.9977}} if evaluated else None}


def test_runs_fit_80_columns_as_lines_and_a_wide_terminal_gets_the_table():
    found = [run_summary("runs/digits-cnn/20261202-184604", "digits-cnn", False),
             run_summary("runs/sweep/lr-0.01/20261202-184554", "quickstart", True)]
    narrow, text = console(80)
    render.runs(narrow, found, Path("runs"))
    lines = text.getvalue().splitlines()
    assert widest(text.getvalue()) <= 80
    assert lines[0] == "2 runs under runs, newest first"
    assert lines[1] == "runs/digits-cnn/20261202-184604"  # whole, on its own line: what evaluate takes
    assert lines[3] == "runs/sweep/lr-0.01/20261202-184554 (quickstart)"
    assert lines[4] == "  completed, 60 epochs  started 2026-12-02 18:45  best val_loss 0.0712 @ 48"
    assert lines[5] == "  test: loss 0.0652  acc 0.9825  prec 0.9859  rec 0.9859  f1 0.9859  auc 0.9977"

    wide, text = console(160)
    render.runs(wide, found, Path("runs"))
    assert "evaluation" in text.getvalue() and "accuracy 0.9825" in text.getvalue()
    assert widest(text.getvalue()) <= 160


def predictions(classes: list[str]) -> SimpleNamespace:
    probs = np.random.default_rng(0).dirichlet(np.ones(len(classes)), size=12).astype(np.float32)
    table = pd.DataFrame(probs, columns=[f"prob_{c}" for c in classes])
    table.insert(0, "file", [f"digit_{i:03d}.png" for i in range(12)])
    table["predicted"] = np.array(classes, dtype=object)[probs.argmax(axis=1)]
    return SimpleNamespace(table=table, outputs=list(table.columns[1:]), checkpoint="best", epoch=3)


def test_a_ten_class_prediction_shows_the_class_and_its_probability_at_80_columns():
    result = predictions([str(c) for c in range(10)])
    narrow, text = console(80)
    render.predictions(narrow, result, None)
    out = text.getvalue()
    assert widest(out) <= 80 and "…" not in out
    assert "predicted" in out and "probability" in out and "prob_0" not in out
    first = next(line for line in out.splitlines() if "digit_000.png" in line).split("│")
    row = result.table.iloc[0]
    assert first[2].strip() == row["predicted"]
    assert float(first[3]) == pytest.approx(max(row[c] for c in result.outputs[:-1]), abs=5e-5)
    assert "(2 more rows, 10 class probabilities a row; write them all with -o FILE.csv)" in out

    wide, text = console(200)  # room for every class: the full table
    render.predictions(wide, result, None)
    assert "prob_9" in text.getvalue() and "probability" not in text.getvalue()


def test_predict_split_at_80_columns_shows_the_probability_of_the_class_not_the_weight():
    """predict --split adds `true` and `weight` after the probabilities: the narrow view's probability is the
    largest prob_ column's, and integer columns (row numbers, event IDs) print as integers."""
    result = predictions(["background", "signal"])
    table = result.table.drop(columns="file")
    table.insert(0, "event_id", 123456789012345 + np.arange(12))
    table.insert(0, "row", np.arange(1, 13))
    table.insert(2, "w", np.linspace(3.0, 9.0, 12))
    table.insert(3, "comment", ["a long comment that takes room " * 2] * 12)
    table["true"] = "signal"
    table["weight"] = np.linspace(3.0, 9.0, 12)
    result = SimpleNamespace(table=table, outputs=["prob_background", "prob_signal", "predicted", "true", "weight"],
                             checkpoint="best", epoch=3)
    narrow, text = console(80)
    render.predictions(narrow, result, None)
    out = text.getvalue()
    assert widest(out) <= 80 and "…" not in out  # columns left out (and counted), never numbers cut short
    assert "more column" in out
    first = next(line for line in out.splitlines() if "123456789012345" in line).split("│")
    assert first[1].strip() == "1"  # not 1.0000
    header = next(line for line in out.splitlines() if "probability" in line).split("┃")
    shown = float(first[[h.strip() for h in header].index("probability")])
    assert shown == pytest.approx(table[["prob_background", "prob_signal"]].iloc[0].max(), abs=5e-5)


CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.parametrize("classes", [[str(c) for c in range(10)], CIFAR, [f"class_{i}" for i in range(40)]])
def test_evaluate_fits_80_columns(classes):
    n = len(classes)
    matrix = (np.eye(n, dtype=int) * 30 + 1).tolist()
    result = {"split": "test", "n_samples": n * (30 + n), "checkpoint": "best", "epoch": 3,
              "metrics": {"loss": 0.25, "accuracy": 0.9}, "confusion_matrix": matrix, "classes": classes,
              "plots": ["plots/learning_curves.png", "plots/test_roc.png", "plots/test_confusion_matrix.png",
                        "plots/test_scores.png"]}
    narrow, text = console(80)
    render.evaluation(narrow, Path("runs/cifar10-resnet-small/20261202-184604"), result)
    out = text.getvalue()
    assert widest(out) <= 80 and "…" not in out
    assert out.startswith(f"runs/cifar10-resnet-small/20261202-184604\n  test split, {n * (30 + n)} rows, best checkpoint (epoch 3)\n")
    if n == 10 and classes[0] == "0":
        assert "confusion matrix (rows: true class, columns: predicted class)" in out
    elif n == 10:  # the names head the rows, their numbers the columns
        assert "columns: predicted class by number)" in out and "│ 1 automobile │  1 │ 31 │" in out
    else:
        assert f"confusion matrix: {n} classes are too many" in out
    assert "  learning_curves.png  test_roc.png  test_confusion_matrix.png  test_scores.png" in out


# ----------------------------------------------------------------------------------------------
# Shortcuts


def fake_run(folder: Path, status: str, started: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("name: x\n")
    (folder / "run.json").write_text(json.dumps({"name": folder.parent.name, "status": status, "started": started}))
    return folder


def test_a_folder_of_runs_means_its_newest_completed_run(tmp_path):
    old = fake_run(tmp_path / "runs" / "q" / "20260101-100000", "completed", "2026-01-01T10:00:00+00:00")
    new = fake_run(tmp_path / "runs" / "q" / "20260101-110000", "completed", "2026-01-01T11:00:00+00:00")
    fake_run(tmp_path / "runs" / "q" / "20260101-120000", "failed", "2026-01-01T12:00:00+00:00")
    assert newest_run(tmp_path / "runs" / "q") == (new, f"{tmp_path}/runs/q holds 3 runs: using the newest "
                                                         f"completed one, {new}")
    assert newest_run(tmp_path / "runs")[0] == new  # runs/NAME/STAMP, two levels down
    assert newest_run(old) == (old, None)  # a run directory is itself
    assert newest_run(tmp_path / "nowhere") == (tmp_path / "nowhere", None)  # for the run check to refuse
    assert newest_run(tmp_path)[0] == tmp_path  # three levels down: not searched

    only = fake_run(tmp_path / "one" / "20260101-100000", "interrupted", "2026-01-01T10:00:00+00:00")
    assert newest_run(tmp_path / "one") == (only, f"{tmp_path}/one holds one run, {only}")
    fake_run(tmp_path / "one" / "20260101-090000", "killed", "2026-01-01T09:00:00+00:00")
    assert newest_run(tmp_path / "one") == (only, f"{tmp_path}/one holds 2 runs: using the newest (interrupted: "
                                                  f"none completed), {only}")


def test_evaluate_data_needs_neither_the_training_file_nor_its_folder(tmp_path):
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    frame.iloc[:400].to_csv(project / "data" / "train.csv", index=False)
    frame.iloc[400:].to_csv(tmp_path / "new.csv", index=False)
    cfg = {"name": "bc", "seed": 0, "data": {"path": "data/train.csv", "target": "target", "scale": "standard",
                                             "split": {"val": 0.2}},
           "model": {"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                                {"type": "dense", "units": 1, "activation": "sigmoid"}]},
           "loss": "bce", "train": {"epochs": 1, "device": "cpu"}, "metrics": ["accuracy"]}
    (project / "bc.yaml").write_text(json.dumps(cfg))
    run = train(load_config(project / "bc.yaml"), run_dir=tmp_path / "run", progress=False).run_dir
    before = evaluate(run, data=tmp_path / "new.csv", write=False)
    (project / "data" / "train.csv").rename(tmp_path / "moved.csv")
    project.rename(tmp_path / "gone")
    after = evaluate(run, data=tmp_path / "new.csv", write=False)
    assert after["n_samples"] == len(frame) - 400
    assert after["metrics"] == before["metrics"]
    truth = frame["target"].to_numpy()[400:]
    assert after["confusion_matrix"][0][0] + after["confusion_matrix"][0][1] == int((truth == 0).sum())
