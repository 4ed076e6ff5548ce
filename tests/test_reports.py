"""`dlcli runs` and `dlcli compare`: run directories read back, in-process and through the command.

Four tiny real runs are trained once for the module under one runs folder: two named "alpha" (one
evaluated, one that failed at its first epoch), one "beta", and one written deeper with --run-dir.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from dlcli import evaluate, train
from dlcli.commands import reports as R
from dlcli.commands.plots import write_comparison
from dlcli.config import load_config
from dlcli.errors import RunError, TrainingFailed

_SCRIPT = Path(sys.executable).with_name("dlcli")
DLCLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "dlcli.cli"]


def config(name: str, dataset: str, units: int, activation: str, loss: str, metrics: list, **extra) -> dict:
    return {"name": name, "seed": 0, "data": {"dataset": dataset, "split": {"val": 0.25, "test": 0.25},
                                               "scale": "standard"},
            "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                                 {"type": "dense", "units": units, "activation": activation}]},
            "loss": loss, "optimizer": {"name": "adam", "lr": 0.01},
            "train": {"epochs": 3, "batch_size": 64, "device": "cpu"}, "metrics": metrics, **extra}


def set_started(run: Path, when: str) -> None:
    """Give a run a known start time: runs trained in the same second are otherwise tied."""
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "started": when}))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports") / "runs"
    alpha = train(load_config(config("alpha", "breast_cancer", 1, "sigmoid", "bce", ["accuracy"])),
                  runs_root=root, progress=False).run_dir
    beta = train(load_config(config("beta", "iris", 3, "softmax", "cce", ["accuracy", "f1"])),
                 runs_root=root, progress=False).run_dir
    deep = train(load_config(config("gamma", "iris", 3, "softmax", "cce", ["accuracy"], train={"epochs": 1})),
                 run_dir=root / "project" / "sweep" / "gamma-1", progress=False).run_dir
    with pytest.raises(TrainingFailed):  # a NaN loss at epoch 1: a failed run with no metrics rows
        train(load_config(config("alpha", "breast_cancer", 1, "sigmoid", "bce", ["accuracy"],
                                 optimizer={"name": "sgd", "lr": 1e30}, data={"dataset": "breast_cancer"})),
              runs_root=root, progress=False)
    failed = next(p.parent for p in root.glob("alpha/*/run.json") if p.parent != alpha)
    evaluate(alpha, plots=False)
    # Offsets on purpose: 12:00+02:00 is 10:00 UTC, older than 11:00+00:00, though it sorts later as text.
    set_started(alpha, "2024-05-01T12:00:00+02:00")
    set_started(beta, "2024-05-01T11:00:00+00:00")
    set_started(failed, "2024-05-02T09:00:00+00:00")
    set_started(deep, "2024-04-30T09:00:00+00:00")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run\n")
    return SimpleNamespace(root=root, alpha=alpha, beta=beta, deep=deep, failed=failed)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------------
# runs


def test_runs_are_listed_newest_first_with_their_fields(made):
    table = R.runs_table(made.root)
    assert [Path(r["path"]) for r in table] == [made.failed, made.beta, made.alpha, made.deep]
    for row in table:
        info = read_json(Path(row["path"]) / "run.json")
        assert (row["name"], row["started"], row["status"], row["epochs"]) == (
            info["name"], info["started"], info["status"], info["epochs_completed"])
    failed, beta, alpha, deep = table
    assert failed["status"] == "failed" and failed["epochs"] == 0 and failed["best_epoch"] is None
    assert (deep["name"], deep["epochs"]) == ("gamma", 1)
    for row, run in ((alpha, made.alpha), (beta, made.beta)):
        info = read_json(run / "run.json")
        rows = metrics_rows(run)
        assert row["status"] == "completed" and row["epochs"] == 3 and row["monitor"] == "val_loss"
        assert row["best_value"] == info["best_value"] == min(float(r["val_loss"]) for r in rows)
        assert row["best_epoch"] == info["best_epoch"]


def test_runs_show_the_evaluation_metrics_when_evaluated(made):
    by_path = {Path(r["path"]): r for r in R.runs_table(made.root)}
    evaluation = read_json(made.alpha / "evaluation.json")
    shown = by_path[made.alpha]["evaluation"]
    assert (shown["split"], shown["checkpoint"], shown["epoch"]) == ("test", "best", evaluation["epoch"])
    assert shown["metrics"] == evaluation["metrics"]
    assert set(shown["metrics"]) == {"loss", "accuracy", "precision", "recall", "f1", "auc", "rejection@eff=0.5",
                                     "efficiency@rej=100", "ams@b_reg=10"}
    assert by_path[made.beta]["evaluation"] is None


def test_runs_of_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(RunError, match="no such folder"):
        R.find_runs(tmp_path / "nowhere")
    assert R.find_runs(tmp_path) == []
    # A damaged run.json does not stop the listing: that run shows as unreadable.
    (tmp_path / "x" / "1").mkdir(parents=True)
    (tmp_path / "x" / "1" / "run.json").write_text("{")
    (row,) = R.runs_table(tmp_path)
    assert (row["path"], row["name"], row["status"], row["evaluation"]) == (str(tmp_path / "x" / "1"), "x",
                                                                            "unreadable", None)


# ----------------------------------------------------------------------------------------------
# compare


def test_compare_takes_final_and_best_epoch_values_and_evaluations(made):
    records = R.load_runs([made.alpha, made.beta, made.failed])
    # Two runs share the name alpha: their labels add the folder name.
    assert [r.label for r in records] == [f"alpha/{made.alpha.name}", "beta", f"alpha/{made.failed.name}"]
    data = R.compare(records)
    alpha, beta, failed = data["runs"]
    for item, run in ((alpha, made.alpha), (beta, made.beta)):
        rows = metrics_rows(run)
        best = read_json(run / "run.json")["best_epoch"]
        curves = [c for c in rows[0] if c.startswith(("train_", "val_"))]
        assert item["final"] == {c: float(rows[-1][c]) for c in curves}
        assert item["best"] == {c: float(rows[best - 1][c]) for c in curves}
    assert set(beta["final"]) >= {"train_loss", "val_loss", "val_accuracy", "val_f1"}
    assert alpha["evaluation"]["metrics"] == read_json(made.alpha / "evaluation.json")["metrics"]
    assert beta["evaluation"] is None
    assert failed["final"] == failed["best"] == {} and failed["status"] == "failed"

    labels, sections = R.compare_table(data)
    assert labels == [r.label for r in records]
    assert [title for title, _ in sections] == ["run", "at the final epoch", "at the best epoch", "evaluation"]
    final = dict(sections[1][1])
    assert final["val_f1"] == [None, beta["final"]["val_f1"], None]  # only beta has an f1 column
    evaluation = dict(sections[3][1])
    assert evaluation["data"] == ["test", None, None]
    assert evaluation["accuracy"] == [alpha["evaluation"]["metrics"]["accuracy"], None, None]


def test_compare_plot_has_a_panel_per_quantity(made, tmp_path):
    records = R.load_runs([made.alpha, made.beta])
    assert write_comparison(records, tmp_path / "out.png")
    image = Image.open(tmp_path / "out.png")
    # loss of bce (alpha) and of cce (beta) on panels of their own, accuracy (both runs) and f1 (beta): four
    # 400 x 300 px panels, three to a row
    assert (image.format, image.size) == ("PNG", (1200, 600))
    assert not write_comparison(R.load_runs([made.failed]), tmp_path / "none.png")  # no epoch, no curve
    assert not (tmp_path / "none.png").exists()


def test_compare_refuses_what_is_not_a_run(made, tmp_path):
    with pytest.raises(RunError, match="no such run directory"):
        R.load_runs([made.alpha, tmp_path / "missing"])
    with pytest.raises(RunError, match="not a dlcli run directory"):
        R.load_runs([made.root / "notes"])


def test_compare_takes_a_folder_of_runs_as_its_runs(made):
    # runs/alpha holds the good run, trained first, and the failed one; a run given twice is compared once
    assert [r.path for r in R.load_runs([made.root / "alpha"])] == [made.alpha, made.failed]
    assert [r.path for r in R.load_runs([made.root / "alpha", made.alpha])] == [made.alpha, made.failed]


# ----------------------------------------------------------------------------------------------
# The commands, as a user runs them


@pytest.fixture(scope="module")
def env(request, tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    env["NO_COLOR"] = "1"
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        # Without cached bytecode every process compiles scikit-learn and matplotlib again (seconds):
        # keep the cache under pytest's cache folder, as test_cli.py does.
        cache = getattr(request.config, "cache", None)
        folder = cache.mkdir("dlcli-pycache") if cache is not None else tmp_path_factory.mktemp("pycache")
        env["PYTHONPYCACHEPREFIX"] = str(folder)
    return env


def dlcli(env: dict, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*DLCLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_dlcli_runs_lists_without_importing_torch(made, env, tmp_path):
    # Through main(), as the dlcli script runs it, to see which modules the listing loaded.
    code = ("import sys; from dlcli.cli import main\n"
            f"sys.argv = ['dlcli', 'runs', {str(made.root)!r}, '--json']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('heavy:', sorted(m for m in ('torch', 'matplotlib') if m in sys.modules), file=sys.stderr)\n")
    listing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout) == R.runs_table(made.root)
    assert "heavy: []" in listing.stderr

    # The default DIR, runs, from the folder that holds it; a pipe is 80 columns wide.
    text = dlcli(env, "runs", cwd=made.root.parent)
    assert text.returncode == 0, text.stderr
    for run in (made.alpha, made.beta, made.deep, made.failed):
        assert str(run.relative_to(made.root.parent)) in text.stdout  # whole: what compare and evaluate take
    assert "4 runs under runs" in text.stdout and "(gamma)" in text.stdout  # gamma's folder is gamma-1
    assert text.stdout.count("completed") == 3 and text.stdout.count("failed") == 1

    missing = dlcli(env, "runs", "nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and "nowhere: no such folder" in missing.stderr
    assert "Traceback" not in missing.stderr
    (tmp_path / "runs").mkdir()
    none = dlcli(env, "runs", cwd=tmp_path)
    assert none.returncode == 0 and "no runs under runs" in none.stdout


def test_dlcli_compare_writes_the_plot_and_prints_both_runs(made, env, tmp_path):
    result = dlcli(env, "compare", made.alpha, made.beta, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert re.fullmatch(r"runs/compare-\d{8}-\d{6}\.png", data["plot"])  # the default: beside the runs
    assert data["runs"] == R.compare(R.load_runs([made.alpha, made.beta]))["runs"]
    assert Image.open(io.BytesIO((tmp_path / data["plot"]).read_bytes())).size == (1200, 600)  # loss (bce), loss (cce), accuracy, f1
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]  # nothing in the current folder

    text = dlcli(env, "compare", made.alpha, made.beta, "-o", "plots/both.png", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "learning curves: plots/both.png" in text.stdout and (tmp_path / "plots/both.png").is_file()
    for word in ("alpha", "beta", "at the final epoch", "at the best epoch", "evaluation", "val_loss"):
        assert word in text.stdout, word

    bad = dlcli(env, "compare", made.alpha, made.root / "notes", cwd=tmp_path)
    assert bad.returncode == 2 and "not a dlcli run directory" in bad.stderr and "Traceback" not in bad.stderr
    wrong = dlcli(env, "compare", made.alpha, "-o", "curves.jpg", cwd=tmp_path)
    assert wrong.returncode == 2 and ".png" in wrong.stderr
