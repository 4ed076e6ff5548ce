"""End to end: the real `dlcli` command, run in a subprocess the way a user runs it.

Each test starts `dlcli` as its own process, in a temporary folder (so `runs/` lands there), and
checks the exit code, what it printed and the files it wrote. The configs are tiny (scikit-learn's
bundled tables, a few epochs) so a command takes a few seconds, most of it importing torch. The
bad-input cases, which fail within a second once torch is imported, share one process that runs
`dlcli`'s `main()` for each of them in turn (`Cli.run_each`); it starts with the first test and runs
beside the others, and the uninterrupted run the Ctrl-C test compares against trains while it
interrupts its own, so the CPU is rarely idle.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from sklearn.metrics import accuracy_score, precision_score, recall_score

_SCRIPT = Path(sys.executable).with_name("dlcli")
DLCLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "dlcli.cli"]
WORKERS = max(2, min(4, os.cpu_count() or 2))  # dlcli processes at a time on the pool
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")
# Tests that train through dlcli processes are marked slow (a few seconds each, most of it importing
# torch): `pytest -m "not slow"` keeps the bad-input cases, which share one process.


# ----------------------------------------------------------------------------------------------
# Running dlcli


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:  # what a failed assertion shows
        return (f"$ dlcli {' '.join(self.args)}\nexit code {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


class Cli:
    def __init__(self, env: dict[str, str]):
        self.env = env

    def run(self, *args, cwd: Path, timeout: float = 300) -> Result:
        args = [str(a) for a in args]
        proc = subprocess.run([*DLCLI, *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        return Result(args, proc.returncode, proc.stdout, proc.stderr)

    def run_each(self, commands: list[tuple[list[str], Path]], timeout: float = 300) -> list[Result]:
        """Several commands in one process, one after the other, each as `dlcli ARGS` run in its folder would:
        its exit code, its stdout and stderr (an uncaught exception's traceback included)."""
        todo = json.dumps([[[str(a) for a in args], str(cwd)] for args, cwd in commands])
        proc = subprocess.run([sys.executable, "-c", EACH], input=todo, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stderr
        return [Result(args, *outcome) for (args, _), outcome in zip(commands, json.loads(proc.stdout))]

    def start(self, *args, cwd: Path, log: Path) -> subprocess.Popen:
        """A dlcli process left running, its stdout and stderr going to `log`.out / `log`.err."""
        preexec = None
        if sys.platform != "win32" and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            # Started in the background without job control, this process ignores Ctrl-C, and so
            # would its children; give dlcli the SIGINT a terminal would.
            def preexec():
                signal.signal(signal.SIGINT, signal.SIG_DFL)
        with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
            return subprocess.Popen([*DLCLI, *map(str, args)], cwd=cwd, env=self.env, stdout=out, stderr=err,
                                    preexec_fn=preexec)


EACH = """\
import contextlib, io, json, os, sys, traceback
import dlcli.cli.app as app
results = []
for args, cwd in json.load(sys.stdin):
    os.chdir(cwd)
    app.DEBUG, sys.argv, code = False, ["dlcli", *args], 0
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            app.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def finished(proc: subprocess.Popen, log: Path, timeout: float = 300) -> Result:
    proc.wait(timeout=timeout)
    return Result(list(map(str, proc.args[len(DLCLI):])), proc.returncode,
                  log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text())


def ok(result: Result) -> Result:
    assert result.returncode == 0, result
    assert "Traceback" not in result.output, result
    return result


@pytest.fixture(scope="session")
def cli() -> Cli:
    env = dict(os.environ)
    for key in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE"):
        env.pop(key, None)  # rich's defaults for a pipe: 80 columns, no colour
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1",
               # One CPU thread per process: tiny models gain nothing from more, and on a busy
               # 2-core machine OpenMP threads of side-by-side processes slow each other ~100x.
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # PYTHONDONTWRITEBYTECODE (set on CI machines) stays: the packages' bytecode was compiled once, when CI
    # installed them (.ci/run: uv sync --compile-bytecode), and a PYTHONPYCACHEPREFIX would make every process
    # look for it there instead, so the first one compiled torch again.
    return Cli(env)


@pytest.fixture(scope="module")
def pool():
    with ThreadPoolExecutor(max_workers=WORKERS) as executor:
        yield executor


# ----------------------------------------------------------------------------------------------
# Reading a run directory


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def metrics_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]


def completed_runs(folder: Path) -> list[Path]:
    return [p.parent for p in Path(folder).rglob("run.json") if read_json(p).get("status") == "completed"]


def wait_for_epochs(proc: subprocess.Popen, metrics: Path, epochs: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dlcli exited ({proc.returncode}) before epoch {epochs}"
        if metrics.exists() and len(metrics_rows(metrics)) >= epochs:
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no {epochs} epochs in {metrics} after {timeout} s")


# ----------------------------------------------------------------------------------------------
# 1. train -> evaluate -> summarize

# Aliases on purpose (Dense, bce, Adam): the stored config must hold the canonical names.
BC_CONFIG = """\
name: bc
seed: 3
data:
  dataset: breast_cancer
  split: {val: 0.2, test: 0.2}
  scale: standard
model:
  layers:
    - {type: Dense, units: 8, activation: relu}
    - {type: dropout, rate: 0.1}
    - {type: dense, units: 1, activation: sigmoid}
loss: bce
optimizer: {name: Adam}
train: {epochs: 3, batch_size: 32, device: cpu}
metrics: [accuracy, precision, recall, f1, auc]
"""
BC_PARAMS = (30 * 8 + 8) + (8 * 1 + 1)  # dense 30 -> 8, dense 8 -> 1, with biases
BC_ROWS = {"train": 341, "val": 114, "test": 114}  # 569 rows; test and val are ceil(0.2 * 569)


@pytest.fixture(scope="module")
def bc(cli, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bc")
    (folder / "bc.yaml").write_text(BC_CONFIG)
    # A path longer than a line of 80 columns: printed whole, never folded.
    run = folder / "a-run-directory-with-a-name-long-enough-to-pass-eighty-columns"
    result = cli.run("train", "bc.yaml", "--run-dir", run, cwd=folder)
    return SimpleNamespace(folder=folder, config=folder / "bc.yaml", run=run, result=result)


@pytest.mark.slow
def test_train_fills_the_run_directory(bc):
    out = ok(bc.result).stdout
    assert "completed 3 epochs" in out
    assert f"run directory: {bc.run}\n" in out
    assert f"next: dlcli evaluate {bc.run}\n" in out
    for name in ("config.yaml", "metrics.csv", "run.json", "scaler.json", "labels.json", "summary.txt",
                 "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (bc.run / name).is_file(), name
    assert not (bc.folder / "runs").exists()  # --run-dir was used

    resolved = yaml.safe_load((bc.run / "config.yaml").read_text())
    assert [layer["type"] for layer in resolved["model"]["layers"]] == ["dense", "dropout", "dense"]
    assert resolved["model"]["layers"][0] == {"type": "dense", "activation": "relu", "units": 8, "use_bias": True}
    assert resolved["loss"] == {"name": "binary_crossentropy", "label_smoothing": 0.0}
    assert resolved["optimizer"]["name"] == "adam" and resolved["optimizer"]["lr"] == 0.001
    assert resolved["schedule"] == {"name": "constant", "interval": "epoch"}
    assert resolved["train"]["epochs"] == 3 and resolved["train"]["shuffle"] is True
    assert resolved["data"]["dataset"] == "breast_cancer" and resolved["data"]["scale"] == "standard"
    assert resolved["seed"] == 3 and resolved["task"] == "auto"

    with open(bc.run / "metrics.csv") as f:
        header = f.readline().strip()
    assert header == ("epoch,lr,train_loss,train_accuracy,train_precision,train_recall,train_f1,train_auc,"
                      "val_loss,val_accuracy,val_precision,val_recall,val_f1,val_auc,epoch_seconds")
    rows = metrics_rows(bc.run / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert all(float(row["lr"]) == 0.001 for row in rows)
    for row in rows:
        assert all(math.isfinite(float(v)) for v in row.values()), row
        assert 0 <= float(row["val_accuracy"]) <= 1

    info = read_json(bc.run / "run.json")
    assert info["status"] == "completed" and info["epochs_completed"] == 3
    assert info["name"] == "bc" and info["device"] == "cpu" and info["ended"]
    for key in ("python", "torch", "dlcli"):
        assert info[key], key
    assert info["monitor"] == "val_loss" and 1 <= info["best_epoch"] <= 3
    assert info["best_value"] == min(float(row["val_loss"]) for row in rows)
    assert info["best_value"] == float(rows[info["best_epoch"] - 1]["val_loss"])

    scaler = read_json(bc.run / "scaler.json")
    assert scaler["kind"] == "standard" and len(scaler["offset"]) == len(scaler["scale"]) == 30
    labels = read_json(bc.run / "labels.json")
    assert labels["task"] == "binary" and labels["classes"] == [0, 1]
    assert labels["rows"] == BC_ROWS and len(labels["feature_names"]) == 30
    assert f"Total params: {BC_PARAMS}" in (bc.run / "summary.txt").read_text()


def _from_confusion_matrix(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The (true, predicted) label pairs a confusion matrix counts."""
    pairs = [(t, p) for t, row in enumerate(cm) for p, n in enumerate(row) for _ in range(n)]
    y_true, y_pred = zip(*pairs)
    return np.array(y_true), np.array(y_pred)


@pytest.mark.slow
def test_evaluate_json_on_the_test_split(cli, bc):
    result = ok(cli.run("evaluate", bc.run, "--json", "--device", "cpu", cwd=bc.folder))
    report = json.loads(result.stdout)
    assert report == read_json(bc.run / "evaluation.json")
    best_epoch = read_json(bc.run / "run.json")["best_epoch"]
    assert (report["split"], report["checkpoint"], report["epoch"]) == ("test", "best", best_epoch)
    assert report["task"] == "binary" and report["n_samples"] == BC_ROWS["test"]
    metrics = report["metrics"]
    # a binary evaluation adds the figures of merit (issue 15) to the config's metrics
    assert set(metrics) == {"loss", "accuracy", "precision", "recall", "f1", "auc", "rejection@eff=0.5",
                            "efficiency@rej=100", "ams@b_reg=10"}
    # 1/eps_B is infinite when no background event passes the cut that keeps half the signal
    assert all(math.isfinite(v) for k, v in metrics.items() if k != "rejection@eff=0.5"), metrics
    assert metrics["rejection@eff=0.5"] >= 1
    cm = report["confusion_matrix"]
    assert len(cm) == 2 and all(len(row) == 2 for row in cm)
    assert sum(map(sum, cm)) == BC_ROWS["test"]
    y_true, y_pred = _from_confusion_matrix(cm)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["accuracy"] == pytest.approx((cm[0][0] + cm[1][1]) / BC_ROWS["test"])
    assert metrics["precision"] == pytest.approx(precision_score(y_true, y_pred, zero_division=0))
    assert metrics["recall"] == pytest.approx(recall_score(y_true, y_pred, zero_division=0))
    assert report["classes"] == [0, 1]


@pytest.mark.slow
def test_evaluate_table_on_the_val_split_with_the_last_checkpoint(cli, bc):
    result = ok(cli.run("evaluate", bc.run, "--split", "val", "--checkpoint", "last", "--device", "cpu",
                        cwd=bc.folder))
    assert f"{bc.run}\n  val split, {BC_ROWS['val']} rows, last checkpoint (epoch 3)\n" in result.stdout  # > 80 columns
    for name in ("loss", "accuracy", "precision", "recall", "f1", "auc", "confusion matrix"):
        assert name in result.stdout
    assert f"written to {bc.run / 'evaluation.json'}\n" in result.stdout
    report = read_json(bc.run / "evaluation.json")
    assert (report["split"], report["checkpoint"], report["epoch"]) == ("val", "last", 3)
    assert sum(map(sum, report["confusion_matrix"])) == BC_ROWS["val"]
    # The last checkpoint on the val split is what training measured after its last epoch.
    last = metrics_rows(bc.run / "metrics.csv")[-1]
    assert report["metrics"]["loss"] == pytest.approx(float(last["val_loss"]), rel=1e-5)
    for name in ("accuracy", "precision", "recall", "f1", "auc"):
        assert report["metrics"][name] == pytest.approx(float(last[f"val_{name}"]), rel=1e-6), name


@pytest.mark.slow
def test_summarize_a_run_and_a_config(cli, bc, pool):
    table = pool.submit(cli.run, "summarize", bc.run, cwd=bc.folder)
    as_json = pool.submit(cli.run, "summarize", "bc.yaml", "--json", cwd=bc.folder)
    out = ok(table.result()).stdout
    for text in ('Model: "bc"', "dense (Dense)", "dropout (Dropout)", "dense_1 (Dense)", "(None, 8)",
                 f"Total params: {BC_PARAMS}", f"Trainable params: {BC_PARAMS}", "Non-trainable params: 0"):
        assert text in out, text
    summary = json.loads(ok(as_json.result()).stdout)
    assert summary["total_params"] == summary["trainable_params"] == BC_PARAMS
    assert summary["input_shape"] == [None, 30] and summary["output_activation"] == "sigmoid"
    assert [(layer["name"], layer["output_shape"], layer["params"]) for layer in summary["layers"]] == [
        ("dense", [None, 8], 30 * 8 + 8), ("dropout", [None, 8], 0), ("dense_1", [None, 1], 8 + 1)]


@pytest.mark.slow
def test_resuming_a_completed_run_asks_for_more_epochs(cli, bc):
    before = (bc.run / "metrics.csv").read_text()
    result = cli.run("train", "--resume", bc.run, cwd=bc.folder)
    assert result.returncode == 2, result
    assert "already completed 3 epochs" in result.stderr and "train.epochs" in result.stderr, result
    assert "Traceback" not in result.output
    assert (bc.run / "metrics.csv").read_text() == before
    assert read_json(bc.run / "run.json")["status"] == "completed"


# 2. Determinism


@pytest.mark.slow
def test_same_config_and_seed_train_identically(cli, bc):
    again = bc.folder / "again"
    ok(cli.run("train", "bc.yaml", "--run-dir", again, cwd=bc.folder))
    first, second = metrics_rows(bc.run / "metrics.csv"), metrics_rows(again / "metrics.csv")
    assert len(second) == 3
    assert without_timing(second) == without_timing(first)  # exact: the same floats, digit for digit


# 3. Overrides, and a regression run

DIABETES_CONFIG = """\
name: diabetes
seed: 0
data:
  dataset: diabetes
  split: {val: 0.2, test: 0.2}
  scale: standard
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 1}
loss: mse
optimizer: {name: adam, lr: 0.001}
train: {epochs: 5, batch_size: 32, device: cpu}
"""


@pytest.fixture(scope="module")
def diabetes(cli, tmp_path_factory):
    folder = tmp_path_factory.mktemp("diabetes")
    (folder / "diabetes.yaml").write_text(DIABETES_CONFIG)
    result = cli.run("train", "diabetes.yaml", "train.epochs=2", "optimizer.lr=0.01", cwd=folder)
    runs = sorted((folder / "runs" / "diabetes").iterdir()) if (folder / "runs" / "diabetes").is_dir() else []
    return SimpleNamespace(folder=folder, result=result, runs=runs)


@pytest.mark.slow
def test_overrides_change_what_is_trained(diabetes):
    out = ok(diabetes.result).stdout
    assert len(diabetes.runs) == 1, diabetes.runs  # runs/<name>/<time>/ under the working directory
    run = diabetes.runs[0]
    assert f"run directory: {Path('runs', 'diabetes', run.name)}\n" in out
    rows = metrics_rows(run / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert [float(row["lr"]) for row in rows] == [0.01, 0.01]
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_mae", "train_r2", "val_loss", "val_mae", "val_r2",
                             "epoch_seconds"]
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["train"]["batch_size"] == 32
    assert resolved["optimizer"]["name"] == "adam" and resolved["optimizer"]["lr"] == 0.01
    info = read_json(run / "run.json")
    assert info["status"] == "completed" and info["epochs_completed"] == 2
    assert "optimizer.lr=0.01" in info["command"]
    labels = read_json(run / "labels.json")
    assert labels["task"] == "regression" and labels["classes"] is None
    assert not (run / "scaler.json").exists() or read_json(run / "scaler.json")["kind"] == "standard"


@pytest.mark.slow
def test_evaluate_a_regression_run(cli, diabetes):
    ok(diabetes.result)
    run = diabetes.runs[0]
    report = json.loads(ok(cli.run("evaluate", run, "--json", "--device", "cpu", cwd=diabetes.folder)).stdout)
    assert report["task"] == "regression" and report["split"] == "test"
    assert report["n_samples"] == math.ceil(0.2 * 442)
    metrics = report["metrics"]
    assert set(metrics) == {"loss", "mse", "rmse", "mae", "r2"}
    assert "confusion_matrix" not in report
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert metrics["mse"] == pytest.approx(metrics["loss"], rel=1e-4)  # the loss is mse
    assert metrics["rmse"] ** 2 == pytest.approx(metrics["mse"])
    assert 0 < metrics["mae"] <= metrics["rmse"] and metrics["r2"] < 1


# ----------------------------------------------------------------------------------------------
# 4. Interrupted runs resume exactly (SIGKILL at random moments: tests/test_kill.py)

# Wide enough, and in small enough batches, that an epoch takes a noticeable time (~0.05-0.2 s):
# the tests stop it after a few epochs, well before the last. Dropout and a cosine schedule make
# the RNG and schedule state part of what a resume must restore.
LONG_CONFIG = """\
name: long
seed: 11
data:
  dataset: breast_cancer
  split: {val: 0.2}
  scale: standard
model:
  layers:
    - {type: dense, units: 256, activation: relu}
    - {type: dropout, rate: 0.2}
    - {type: dense, units: 256, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, lr: 0.0005}
schedule: cosine
train: {epochs: 12, batch_size: 4, device: cpu}
"""
LONG_EPOCHS = 12


@pytest.fixture(scope="module")
def long(cli, pool, tmp_path_factory):
    """The config, and an uninterrupted run of it training meanwhile on the pool."""
    folder = tmp_path_factory.mktemp("long")
    (folder / "long.yaml").write_text(LONG_CONFIG)
    reference: Future = pool.submit(cli.run, "train", "long.yaml", "--run-dir", "reference", cwd=folder)

    def reference_rows() -> list[dict[str, str]]:
        ok(reference.result())
        return metrics_rows(folder / "reference" / "metrics.csv")

    return SimpleNamespace(folder=folder, reference_rows=reference_rows)


def _check_resumed(run: Path, reference: list[dict[str, str]]) -> None:
    rows = metrics_rows(run / "metrics.csv")
    assert [int(row["epoch"]) for row in rows] == list(range(1, LONG_EPOCHS + 1))  # each epoch once
    info = read_json(run / "run.json")
    assert info["status"] == "completed" and info["epochs_completed"] == LONG_EPOCHS
    assert len(info["resumed"]) == 1
    assert without_timing(rows) == without_timing(reference)  # as if never stopped: exact on the CPU


@pytest.mark.slow
@posix_only
def test_ctrl_c_marks_the_run_interrupted_and_resume_completes_it(cli, long):
    run, log = long.folder / "interrupted", long.folder / "interrupted-log"
    proc = cli.start("train", "long.yaml", "--run-dir", run, cwd=long.folder, log=log)
    wait_for_epochs(proc, run / "metrics.csv", 2)
    proc.send_signal(signal.SIGINT)
    result = finished(proc, log)
    assert result.returncode == 130, result
    # The command to paste, on a line of its own, with the run's path as seen from here.
    assert "\n  dlcli train --resume interrupted\n" in result.stderr, result
    assert "Traceback" not in result.output, result
    info = read_json(run / "run.json")
    assert info["status"] == "interrupted" and info["ended"]
    assert 2 <= info["epochs_completed"] < LONG_EPOCHS
    assert "--resume" in info["message"]

    resumed = ok(cli.run("train", "--resume", run, cwd=long.folder))
    said = re.search(rf"^resuming interrupted from epoch (\d+) of {LONG_EPOCHS} ", resumed.stdout, re.M)
    assert said and int(said[1]) in (info["epochs_completed"], info["epochs_completed"] + 1), resumed  # its checkpoint's
    _check_resumed(run, long.reference_rows())


# ----------------------------------------------------------------------------------------------
# 5. Bad input: exit code 2, one message naming the file and key, no traceback, no run


@dataclass
class Case:
    args: list[str]
    files: dict[str, str] = field(default_factory=dict)
    expect: list[str] = field(default_factory=list)  # fragments of stderr


TINY = """\
name: tiny
data: {dataset: breast_cancer}
model:
  layers:
    - {type: dense, units: 4, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, device: cpu}
"""
MALFORMED = TINY.replace("activation: sigmoid}", "activation: sigmoid]")  # line 6


def tiny(old: str, new: str) -> dict[str, str]:
    assert old in TINY
    return {"cfg.yaml": TINY.replace(old, new)}


def on_table(data: str, table: str = "a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n1,3,x\n2,4,y\n") -> dict[str, str]:
    config = (f"data: {data}\n"
              "model:\n  layers:\n    - {type: dense, units: 1, activation: sigmoid}\n"
              "loss: binary_crossentropy\n")
    return {"cfg.yaml": config, "table.csv": table}


def on_builtin(dataset: str, layers: list[str], loss: str, extra: str = "") -> dict[str, str]:
    lines = "".join(f"    - {layer}\n" for layer in layers)
    return {"cfg.yaml": f"{extra}data: {{dataset: {dataset}}}\nmodel:\n  layers:\n{lines}loss: {loss}\n"}


CONV_TOO_BIG = on_builtin("digits", ["{type: conv2d, filters: 4, kernel_size: 9}", "{type: flatten}",
                                     "{type: dense, units: 10, activation: softmax}"], "categorical_crossentropy")
NO_FLATTEN = on_builtin("digits", ["{type: conv2d, filters: 4, kernel_size: 3, activation: relu}",
                                   "{type: dense, units: 10, activation: softmax}"], "categorical_crossentropy")
CUSTOM_LOSS = {"cfg.yaml": TINY.replace("loss: binary_crossentropy",
                                        'loss: {name: custom, function: "my_losses.py:smooth_loss"}'),
               "my_losses.py": "import no_such_module_for_dlcli\n\n\ndef smooth_loss(p, y):\n    return p.mean()\n"}
VECTOR_LOSS = {"cfg.yaml": CUSTOM_LOSS["cfg.yaml"], "my_losses.py": "def smooth_loss(p, y):\n    return (p - y).sum().repeat(3)\n"}
PGM = "P2\n2 2\n255\n0 10\n20 30\n"  # a 2x2 grayscale image, as text
HUGE_IMAGES = {"cfg.yaml": "data: {images: imgs, image_size: [1000000, 1000000]}\nmodel:\n  layers:\n"
                           "    - {type: flatten}\n    - {type: dense, units: 1, activation: sigmoid}\n"
                           "loss: binary_crossentropy\n",
               "imgs/a/1.pgm": PGM, "imgs/b/2.pgm": PGM}

CASES = {
    "malformed-yaml": Case(["validate", "cfg.yaml"], {"cfg.yaml": MALFORMED},
                           ["cfg.yaml, line 6: malformed YAML: expected ',' or '}', but got ']'"]),
    "malformed-yaml-train": Case(["train", "cfg.yaml"], {"cfg.yaml": MALFORMED},
                                 ["cfg.yaml, line 6: malformed YAML"]),
    "unknown-top-level-key": Case(["validate", "cfg.yaml"], tiny("optimizer:", "optimzer:"),
                                  ["cfg.yaml, line 8: optimzer: unknown key 'optimzer'; did you mean 'optimizer'?"]),
    "unknown-layer-type": Case(["validate", "cfg.yaml"], tiny("type: dense, units: 4", "type: Dens, units: 4"),
                               ["cfg.yaml, line 5: model.layers[0].type: unknown layer type 'Dens'; "
                                "did you mean 'dense'?"]),
    "unknown-activation": Case(["validate", "cfg.yaml"], tiny("relu", "rellu"),
                               ["cfg.yaml, line 5: model.layers[0].activation: unknown activation 'rellu'; "
                                "did you mean 'relu'?"]),
    "unknown-loss": Case(["validate", "cfg.yaml"], tiny("loss: binary_crossentropy", "loss: binary_crosentropy"),
                         ["cfg.yaml, line 7: loss: unknown loss 'binary_crosentropy'; "
                          "did you mean 'binary_crossentropy'?"]),
    "unknown-optimizer": Case(["validate", "cfg.yaml"], tiny("name: adam", "name: adamm"),
                              ["cfg.yaml, line 8: optimizer.name: unknown optimizer 'adamm'; did you mean 'adam'?"]),
    "wrong-type": Case(["validate", "cfg.yaml"], tiny("epochs: 2", "epochs: abc"),
                       ["cfg.yaml, line 9: train.epochs: must be an integer, got 'abc'"]),
    "wrong-range": Case(["validate", "cfg.yaml"], tiny("units: 4", "units: -3"),
                        ["cfg.yaml, line 5: model.layers[0].units: must be a positive integer, got -3"]),
    "bad-override": Case(["validate", "cfg.yaml", "train.epochs=abc"], {"cfg.yaml": TINY},
                         ["cfg.yaml: train.epochs: must be an integer, got 'abc' "
                          "(from the command-line override 'train.epochs=abc')"]),
    "bad-override-train": Case(["train", "cfg.yaml", "train.epochs=abc"], {"cfg.yaml": TINY},
                               ["train.epochs: must be an integer", "override 'train.epochs=abc'"]),
    "missing-data-file": Case(["validate", "cfg.yaml"], on_table("{path: no-such-table.csv, target: label}"),
                              ["cfg.yaml", "data.path: data file not found:", "no-such-table.csv"]),
    "unknown-target": Case(["validate", "cfg.yaml"], on_table("{path: table.csv, target: lable}"),
                           ["cfg.yaml", "data.target:", "table.csv has no column 'lable'; did you mean 'label'?"]),
    "unknown-feature": Case(["validate", "cfg.yaml"], on_table("{path: table.csv, target: label, features: [a, c]}"),
                            ["cfg.yaml", "data.features[1]:", "table.csv has no column 'c'"]),
    "non-numeric-feature": Case(["validate", "cfg.yaml"],
                                on_table("{path: table.csv, target: label}", "a,b,label\n1,2,x\n3,oops,y\n5,6,x\n"),
                                ["cfg.yaml", "data.features:", "column 'b' in", "table.csv is not numeric: "
                                 "row 2 holds 'oops'"]),
    "nan-in-data": Case(["validate", "cfg.yaml"],
                        on_table("{path: table.csv, target: label}", "a,b,label\n1,2,x\n3,4,y\n5,,x\n7,8,y\n"),
                        ["cfg.yaml", "table.csv: 1 missing (NaN) or infinite value(s) in b at row(s) 3"]),
    "kernel-bigger-than-input": Case(["validate", "cfg.yaml"], CONV_TOO_BIG,
                                     ["cfg.yaml, line 4: model.layers[0].kernel_size: kernel [9, 9] does not fit "
                                      "the input [1, 8, 8]"]),
    "kernel-bigger-than-input-train": Case(["train", "cfg.yaml"], CONV_TOO_BIG,
                                           ["cfg.yaml, line 4: model.layers[0].kernel_size: kernel [9, 9]"]),
    "dense-after-conv-without-flatten": Case(["validate", "cfg.yaml"], NO_FLATTEN,
                                             ["cfg.yaml, line 5: model.layers[1]: dense needs a flat input, got "
                                              "shape [4, 6, 6]; add {type: flatten} before it"]),
    "sigmoid-output-with-3-classes": Case(
        ["validate", "cfg.yaml"], on_builtin("iris", ["{type: dense, units: 1, activation: sigmoid}"],
                                             "binary_crossentropy"),
        ["cfg.yaml, line 4: model.layers[0].activation: a sigmoid output is for two classes but the target "
         "has 3 (0, 1, 2); use units: 3 with activation: softmax and loss: categorical_crossentropy"]),
    "binary-loss-with-3-classes": Case(
        ["validate", "cfg.yaml"], on_builtin("iris", ["{type: dense, units: 3, activation: softmax}"],
                                             "binary_crossentropy"),
        ["cfg.yaml, line 5: loss: binary_crossentropy is for two classes but the target has 3 (0, 1, 2); "
         "use units: 3 with activation: softmax and loss: categorical_crossentropy"]),
    "binary-task-with-3-classes": Case(
        ["validate", "cfg.yaml"], on_builtin("iris", ["{type: dense, units: 1, activation: sigmoid}"],
                                             "binary_crossentropy", extra="task: binary\n"),
        ["cfg.yaml, line 1: task: is binary but the target has 3 classes (0, 1, 2); set task: multiclass"]),
    "custom-loss-does-not-import": Case(["validate", "cfg.yaml"], CUSTOM_LOSS,
                                        ["cfg.yaml, line 7: loss.function: cannot import", "my_losses.py",
                                         "no module named 'no_such_module_for_dlcli'"]),
    # Issue 17: values checked at validate, and by train before a run directory exists.
    "run-name-escapes": Case(["train", "cfg.yaml", "name=../../escaped"], {"cfg.yaml": TINY},
                             ["cfg.yaml: name: is a path, not one folder name", "dlcli train --run-dir PATH"]),
    "run-name-too-long": Case(["train", "cfg.yaml", "name=" + "a" * 300], {"cfg.yaml": TINY},
                              ["name: is 300 bytes long, over 200"]),
    "custom-loss-is-a-module": Case(["validate", "cfg.yaml"], tiny("loss: binary_crossentropy",
                                                                   'loss: {name: custom, function: "os.path:join"}'),
                                    ["cfg.yaml, line 7: loss.function: must be 'path/to/file.py:function'"]),
    "custom-loss-returns-a-vector-train": Case(["train", "cfg.yaml"], VECTOR_LOSS,
                                               ["cfg.yaml, line 7: loss.function: custom loss", "my_losses.py:smooth_loss",
                                                "must return per-event losses, shape (2,) or (2, k), or a scalar "
                                                "tensor, got a tensor of shape (3,) on a batch of 2 (prediction "
                                                "float32 (2, 1), target float32 (2, 1))"]),
    "device-not-here": Case(["validate", "cfg.yaml"], tiny("device: cpu", "device: cuda:7"),
                            ["cfg.yaml, line 9: train.device: 'cuda:7' is not on this machine, which has cpu"]),
    "device-not-here-train": Case(["train", "cfg.yaml"], tiny("device: cpu", "device: cuda:7"),
                                  ["line 9: train.device: 'cuda:7' is not on this machine"]),
    "model-too-large-train": Case(["train", "cfg.yaml", "model.layers[0].units=1000000000"], {"cfg.yaml": TINY},
                                  ["cfg.yaml, line 5: model.layers[0]: the model is too large: a training step of 32 "
                                   "samples would need 1,024.0 GB", "memory available"]),
    "image-size-too-large": Case(["validate", "cfg.yaml"], HUGE_IMAGES,
                                 ["cfg.yaml, line 1: data.image_size: one 1000000x1000000 grayscale image as float32 "
                                  "would need 4,000.0 GB of memory"]),
    "one-class-in-the-training-split": Case(["validate", "cfg.yaml"],
                                            on_table("{path: table.csv, target: label}", "a,b,label\n1,2,x\n3,4,x\n"),
                                            ["cfg.yaml, line 1: data.target: the training split holds one class only "
                                             "('x'), and a binary classifier needs two classes or more"]),
    "missing-config-file": Case(["train", "no-such-config.yaml"], {}, ["no-such-config.yaml: file not found"]),
    "evaluate-a-folder-that-is-not-a-run": Case(["evaluate", "not-a-run"], {"not-a-run/notes.txt": "hello\n"},
                                                ["not-a-run: not a dlcli run directory"]),
}
DEBUG_CASE = Case(["--debug", "validate", "cfg.yaml"], tiny("type: dense, units: 4", "type: Dens, units: 4"))


@pytest.fixture(scope="module", autouse=True)
def bad_inputs(cli, tmp_path_factory, request):
    """Every case this session collected, each in its own folder, run by one process (`Cli.run_each`).

    It starts with the module's first test, on a worker of its own: the tests above run one dlcli at
    a time, so the cases use the CPU those leave idle instead of adding to the wall time. Their tests
    below then mostly read results that are already there.
    """
    selected = [getattr(item, "originalname", None) for item in request.session.items]
    cases = {item.callspec.params["case"]: CASES[item.callspec.params["case"]] for item in request.session.items
             if getattr(item, "originalname", None) == "test_bad_input"}
    if "test_debug_shows_the_traceback" in selected:
        cases["debug"] = DEBUG_CASE
    if not cases:
        yield {}
        return
    base = tmp_path_factory.mktemp("bad")
    for name, case in cases.items():
        folder = base / name
        folder.mkdir()
        for file, text in case.files.items():
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / file).write_text(text)
    executor = ThreadPoolExecutor(max_workers=1)
    results = executor.submit(cli.run_each, [(case.args, base / name) for name, case in cases.items()])
    yield {name: (base / name, i, results) for i, name in enumerate(cases)}
    executor.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, bad_inputs):
    folder, i, results = bad_inputs[case]
    result: Result = results.result()[i]
    assert result.returncode == 2, result
    assert "Traceback" not in result.output, result
    assert result.stderr.startswith("error: "), result
    for fragment in CASES[case].expect:
        assert fragment in result.stderr, f"{fragment!r} not in\n{result}"
    assert not (folder / "runs").exists(), "a bad input must fail before a run directory is made"
    assert not completed_runs(folder)


def test_debug_shows_the_traceback(bad_inputs):
    _, i, results = bad_inputs["debug"]
    result: Result = results.result()[i]
    assert result.returncode != 0, result
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr, result
    assert "unknown layer type 'Dens'" in result.stderr


# ----------------------------------------------------------------------------------------------
# 6. A loss that becomes NaN fails the run

NAN_LOSS = """\
calls = 0


def goes_nan(prediction, target):
    global calls
    calls += 1
    loss = ((prediction - target) ** 2).mean()
    return loss * float("nan") if calls > 20 else loss
"""
NAN_CONFIG = """\
data: {dataset: breast_cancer, scale: standard}
model:
  layers:
    - {type: dense, units: 1, activation: sigmoid}
loss: {name: custom, function: "nan_loss.py:goes_nan"}
train: {epochs: 5, batch_size: 64, device: cpu}
"""


@pytest.mark.slow
def test_a_nan_loss_fails_the_run(cli, tmp_path):
    (tmp_path / "nan_loss.py").write_text(NAN_LOSS)
    (tmp_path / "nan.yaml").write_text(NAN_CONFIG)
    run = tmp_path / "run"
    # 569 rows in batches of 64: 9 loss calls an epoch, so call 21 falls in epoch 3.
    result = cli.run("train", "nan.yaml", "--run-dir", run, cwd=tmp_path)
    assert result.returncode == 1, result
    assert "Traceback" not in result.output, result
    assert "training failed: the training loss became nan at epoch 3" in result.stderr, result
    info = read_json(run / "run.json")
    assert info["status"] == "failed" and "epoch 3" in info["message"]
    assert info["epochs_completed"] == 2
    assert [row["epoch"] for row in metrics_rows(run / "metrics.csv")] == ["1", "2"]
    assert not completed_runs(tmp_path)
