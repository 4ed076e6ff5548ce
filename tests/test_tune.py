"""`dlcli tune`: the space and its aliases, a 2-worker study, pruning, SIGKILL and rerun, best.yaml, refusals."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dlcli.config import load_config
from dlcli.config.space import ParamSpec
from dlcli.errors import ConfigError

_SCRIPT = Path(sys.executable).with_name("dlcli")
DLCLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "dlcli.cli"]
ENV = {**{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")},
       "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}

BASE = {
    "name": "t",
    "seed": 1,
    "data": {"dataset": "breast_cancer", "split": {"val": 0.2, "test": 0.2}, "scale": "standard"},
    "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dropout", "rate": 0.1},
                         {"type": "dense", "units": 1, "activation": "sigmoid"}]},
    "loss": "bce",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 2, "batch_size": 32, "device": "cpu"},
}


def config(tmp: Path, tune: dict, name="t.yaml", **changes) -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump({**BASE, **changes, "tune": tune}, sort_keys=False))
    return path


def problems(source, overrides=()):
    with pytest.raises(ConfigError) as exc:
        from dlcli.commands.tune import check_objective, check_space, tune_config

        cfg = tune_config(source, overrides)
        check_objective(cfg)
        check_space(cfg)
    return str(exc.value)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Ran:
    def __init__(self, code, stdout, stderr):
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


def run(*args, cwd: Path) -> Ran:
    """`dlcli ARGS` in this process (torch is imported once for all of them), from `cwd`."""
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(here)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


# ---- the space: aliases and errors (no training) --------------------------------------------------------

@pytest.mark.timeout(30)
def test_space_aliases_and_errors(tmp_path):
    dlcli_form = {"type": "float", "low": 1e-4, "high": 0.1, "log": True}
    keras = {"type": "Float", "min_value": 1e-4, "max_value": 0.1, "sampling": "log"}
    ludwig = {"space": "loguniform", "lower": 1e-4, "upper": 0.1}
    assert ParamSpec.model_validate(keras) == ParamSpec.model_validate(ludwig) == ParamSpec.model_validate(dlcli_form)
    assert ParamSpec.model_validate({"type": "Int", "min_value": 16, "max_value": 256, "step": 16}) == \
        ParamSpec(type="int", low=16, high=256, step=16)
    # Ray Tune's randint (Ludwig's) leaves out `upper`; qrandint keeps it
    assert ParamSpec.model_validate({"space": "randint", "lower": 2, "upper": 10}).high == 9
    assert ParamSpec.model_validate({"space": "qrandint", "lower": 2, "upper": 10, "q": 2}).step == 2
    assert ParamSpec.model_validate({"type": "Choice", "values": [32, 64]}).choices == [32, 64]
    assert ParamSpec.model_validate({"space": "choice", "categories": ["adam", "sgd"]}).choices == ["adam", "sgd"]
    assert ParamSpec.model_validate({"type": "Boolean"}).choices == [False, True]

    space = {"optimizer.lr": keras, "train.batch_size": {"type": "Choice", "values": [16, 32]},
             "model.layers[0].units": {"space": "randint", "lower": 4, "upper": 17},
             "model.layers[1].rate": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1}}
    cfg = load_config(config(tmp_path, {"objective": "val_accuracy", "max_trials": 5, "space": space}))
    assert cfg.tune.n_trials == 5 and cfg.tune.objective.metric == "val_accuracy"
    assert cfg.tune.space["optimizer.lr"].log and cfg.tune.space["model.layers[0].units"].high == 16

    lr = "tune.space.optimizer.lr"
    bad = [  # (tune section, what the one-line error must say)
        ({"space": {"optimizer.lr": {"type": "float", "low": 0.1, "high": 0.01}}},
         [f"line LINE: {lr}: low (0.1) is above high (0.01)"]),
        ({"space": {"optimizer.lr": {"type": "Float", "min_value": 0, "max_value": 1, "sampling": "log"}}},
         [f"{lr}: log: true needs a positive range, got low 0"]),
        ({"sampler": {"name": "bayes"}, "space": {"optimizer.lr": dlcli_form}},
         ["tune.sampler.name: unknown sampler 'bayes'", "random, tpe, grid, cmaes"]),
        ({"sampler": "grid", "space": {"optimizer.lr": dlcli_form}}, ["sampler grid needs a finite grid"]),
        ({"objective": {"metric": "val_acuracy"}, "space": {"optimizer.lr": dlcli_form}},
         ["tune.objective.metric: 'val_acuracy' is not a column this config logs; did you mean 'val_accuracy'?"]),
        ({"space": {"model.layers[5].units": {"type": "int", "low": 2, "high": 8}}},
         ["tune.space.model.layers[5].units: the sampled value 2 makes an invalid config", "no item 5 here"]),
        ({"space": {"train.batchsize": {"type": "int", "low": 2, "high": 8}}},
         ["tune.space.train.batchsize:", "unknown key 'batchsize'; did you mean 'batch_size'?"]),
        ({"space": {"model.layers[1].rate": {"type": "float", "low": 0.5, "high": 1.5}}},
         ["tune.space.model.layers[1].rate: the sampled value 1.0 makes an invalid config: must be below 1"]),
        ({"space": {"optimizer.lr": {"type": "normal", "low": 1, "high": 2}}}, [f"{lr}.type: must be float, int or"]),
    ]
    for tune, expected in bad:
        path = config(tmp_path, {"objective": "val_accuracy", **tune})
        message = problems(path)
        line = next((i for i, text in enumerate(path.read_text().splitlines(), 1) if "optimizer.lr:" in text), None)
        for text in expected:
            text = text.replace("LINE", str(line))
            assert text in message, (tune, message)
        assert "\n" not in message and "Traceback" not in message
    # no validation split: val_accuracy is never logged
    message = problems(config(tmp_path, {"objective": "val_accuracy", "space": {"optimizer.lr": dlcli_form}}),
                       ["data.split.val=0"])
    assert "there is no validation data" in message
    # dlcli validate checks the space too, exit 2 with the key path
    bad_path = config(tmp_path, {"space": {"model.layers[9].units": {"type": "int", "low": 2, "high": 8}}}, "v.yaml")
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    result = CliRunner().invoke(app, ["validate", str(bad_path)])
    assert result.exit_code == 2 and "tune.space.model.layers[9].units" in result.output, result.output


def test_overrides_reach_into_the_space_by_its_keys(tmp_path):
    """A space's keys are key paths themselves: `tune.space.optimizer.lr.high=...` is that key's high, as the
    error messages spell it; a key the space lacks takes a whole range."""
    from dlcli.commands.tune import tune_config

    space = {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
             "model.layers[0].units": {"type": "int", "low": 4, "high": 16}}
    path = config(tmp_path, {"objective": "val_accuracy", "space": space})
    cfg = tune_config(path, ["tune.space.optimizer.lr.high=0.01", "tune.space.model.layers[0].units.low=8",
                             "tune.space.train.batch_size={type: categorical, choices: [16, 64]}", "tune.n_trials=3"])
    got = cfg.tune.space
    assert got["optimizer.lr"].high == 0.01 and got["optimizer.lr"].low == 1e-4 and got["optimizer.lr"].log
    assert got["model.layers[0].units"].low == 8 and got["train.batch_size"].choices == [16, 64]
    assert list(got) == ["optimizer.lr", "model.layers[0].units", "train.batch_size"] and cfg.tune.n_trials == 3
    assert "low (0.5) is above high (0.1)" in problems(path, ["tune.space.optimizer.lr.low=0.5"])
    message = problems(path, ["tune.space.optimizer.lrr.low=1"])
    assert "the space has no key optimizer.lrr.low (it has: optimizer.lr, model.layers[0].units)" in message
    assert "\n" not in message


# ---- a study with two workers, best.yaml, status, a changed space ---------------------------------------

TWO_WORKERS = {"objective": {"metric": "val_accuracy", "mode": "max"}, "n_trials": 4, "workers": 2,
               "sampler": {"name": "random", "seed": 3}, "pruner": "none",
               "space": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
                         "model.layers[0].units": {"type": "Int", "min_value": 4, "max_value": 16},
                         "train.batch_size": {"type": "categorical", "choices": [16, 64]}}}


@pytest.fixture(scope="module")
def two_worker_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune2")
    cfg = config(tmp, TWO_WORKERS)
    proc = run("tune", cfg, cwd=tmp)
    return tmp, cfg, proc


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_workers_best_and_refusals(two_worker_study):
    tmp, cfg, proc = two_worker_study
    assert proc.returncode == 0, proc.stdout + proc.stderr
    study = tmp / "runs" / "tune" / "t"
    trials = rows(study / "trials.csv")
    assert [r["state"] for r in trials] == ["complete"] * 4
    assert proc.stdout.count(" started: ") == 4 and proc.stdout.count(" complete ") == 4
    assert "best " in proc.stdout and "dlcli train runs/tune/t/best.yaml" in proc.stdout
    assert proc.stdout.count(" complete  val_accuracy ") == 4 and "best: trial " in proc.stdout
    assert re.search(r"best: trial \d, val_accuracy 0\.\d+: optimizer\.lr=", proc.stdout), proc.stdout
    # both workers took part (the spawned one may find every trial taken by this process, which has torch
    # imported already), each trial with cores // 2 threads
    infos = [json.loads((study / r["run_dir"] / "run.json").read_text()) for r in trials]
    assert len(list((study / "workers").iterdir())) == 2 and len({i["pid"] for i in infos}) in (1, 2)
    assert all(i["threads"]["count"] == max(1, len(os.sched_getaffinity(0)) // 2) for i in infos), infos[0]["threads"]
    for r, info in zip(trials, infos):
        assert info["tune"]["trial"] == int(r["number"]) and info["tune"]["state"] == "complete"
        assert info["tune"]["params"]["train.batch_size"] in (16, 64)
        metrics = rows(study / r["run_dir"] / "metrics.csv")
        assert abs(max(float(m["val_accuracy"]) for m in metrics) - float(r["value"])) < 1e-6
        trained = yaml.safe_load((study / r["run_dir"] / "config.yaml").read_text())
        assert trained["model"]["layers"][0]["units"] == int(r["model.layers[0].units"]) and "tune" not in trained
    best = max(trials, key=lambda r: float(r["value"]))
    assert sorted(p.name for p in (study / "plots").iterdir()) == ["history.png", "importance.png", "slice.png"]

    # best.yaml: the winner's values, no tune:, trains as it is
    written = yaml.safe_load((study / "best.yaml").read_text())
    assert "tune" not in written and written["train"]["batch_size"] == int(best["train.batch_size"])
    assert written["optimizer"]["lr"] == float(best["optimizer.lr"])
    out = run("tune", "best", study, "-o", tmp / "b.yaml", cwd=tmp)
    assert out.returncode == 0 and yaml.safe_load((tmp / "b.yaml").read_text()) == written, out.stderr
    trained = run("train", tmp / "b.yaml", "--run-dir", tmp / "best-run", cwd=tmp)
    assert trained.returncode == 0, trained.stderr
    again = rows(tmp / "best-run" / "metrics.csv")  # the same config and seed: the same numbers on a CPU
    assert [m["val_accuracy"] for m in again] == [m["val_accuracy"] for m in rows(study / best["run_dir"] / "metrics.csv")]

    status = run("tune", "status", study, "--json", cwd=tmp)
    found = json.loads(status.stdout)
    assert [t["state"] for t in found["trials"]] == ["complete"] * 4 and found["best"]["number"] == int(best["number"])
    # a trial is an ordinary run: dlcli evaluate works on it
    ev = run("evaluate", study / trials[0]["run_dir"], "--json", "--no-plots", cwd=tmp)
    assert ev.returncode == 0 and json.loads(ev.stdout)["metrics"]["accuracy"] > 0.5, ev.stderr

    # a changed space or base config is refused, saying what changed; n_trials may grow
    from dlcli.commands.tune import tune

    changed = {**TWO_WORKERS, "space": {**TWO_WORKERS["space"],
                                        "optimizer.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}}}
    with pytest.raises(ConfigError) as exc:
        tune(config(tmp, changed), runs_root=tmp / "runs")
    assert "tune.space" in str(exc.value) and "optimizer.lr.high: 0.03 -> 0.1" in str(exc.value)
    assert "--new" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        tune(config(tmp, TWO_WORKERS, optimizer={"name": "sgd", "lr": 0.01}), runs_root=tmp / "runs")
    assert "another base config" in str(exc.value) and 'optimizer.name: "adam" -> "sgd"' in str(exc.value)
    done = tune(config(tmp, TWO_WORKERS), runs_root=tmp / "runs", workers=1)  # 4 of 4 already: nothing to run
    assert done.counts == {"complete": 4} and done.best["number"] == int(best["number"])


@pytest.mark.timeout(60)
def test_workers_start_before_the_checks_and_end_when_they_refuse(tmp_path, monkeypatch):
    """The file's tune.workers is read before the config is checked (the checks import torch), so the workers'
    imports overlap them; a config the checks refuse ends those workers at once, before they have a plan."""
    import multiprocessing

    from dlcli.commands import tune as study

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    two = {"objective": "val_accuracy", "workers": 2, "space": {"optimizer.lr": {"type": "float", "low": 1e-3,
                                                                                "high": 1e-2}}}
    path = config(tmp_path, two)
    assert study.early_workers(path) == 2 and study.early_workers(path, ["tune.workers=3"]) == 3
    assert study.early_workers(path, ["tune.workers=64"]) == 4  # the cores; the rest spawned once checked
    assert study.early_workers(path, ["tune.workers=two"]) == 1 and study.early_workers(tmp_path / "no.yaml") == 1
    bad = config(tmp_path, two, name="bad.yaml", optimizer={"name": "adam", "lr": -1.0})
    spawned = []
    real = study.Spawned

    class Recorded(real):
        def __init__(self, n):
            super().__init__(n)
            spawned.append([p.is_alive() for p in self.procs])  # started before the config was checked

    monkeypatch.setattr(study, "Spawned", Recorded)
    with pytest.raises(ConfigError) as exc:
        study.tune(bad, runs_root=tmp_path / "runs")
    assert "optimizer.lr" in str(exc.value) and spawned == [[True]]
    assert multiprocessing.active_children() == []  # the spawned worker was stopped and reaped
    assert not (tmp_path / "runs").exists()
    # the command line too: it leaves the checks to tune() (checking first had put the spawn 2 s later)
    ran = run("tune", bad, cwd=tmp_path)
    assert ran.returncode == 2 and "optimizer.lr" in ran.stderr and spawned == [[True], [True]]
    assert multiprocessing.active_children() == [] and not (tmp_path / "runs").exists()
    # --workers above the cores starts no more than they take before the checks (the rest once they pass)
    ran = run("tune", bad, "--workers", "12", cwd=tmp_path)
    assert ran.returncode == 2 and spawned[-1] == [True] * 3 and multiprocessing.active_children() == []


# ---- pruning a bad learning rate, in process ------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(120)
def test_prunes_a_bad_learning_rate(tmp_path):
    from dlcli.commands.tune import tune

    # grid order with seed 1: lr 0.01 first (it completes), then 30.0, worse than it after the warm-up epoch
    tune_section = {"objective": "val_loss", "n_trials": 2, "sampler": {"name": "grid", "seed": 1},
                    "pruner": {"name": "median", "warmup_epochs": 1, "startup_trials": 1},
                    "space": {"optimizer.lr": {"type": "categorical", "choices": [0.01, 30.0]}}}
    events = []
    result = tune(config(tmp_path, tune_section, train={"epochs": 4, "batch_size": 32}), runs_root=tmp_path / "runs",
                  progress=events.append)
    ended = [e for e in events if e["event"] == "end"]
    assert [e["params"]["optimizer.lr"] for e in ended] == [0.01, 30.0], ended
    assert [e["state"] for e in ended] == ["complete", "pruned"]
    pruned = ended[1]
    assert pruned["epochs"] == 2  # the warm-up epoch, then the first epoch it may be pruned at
    run_dir = Path(pruned["run_dir"])
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "pruned" and info["tune"]["state"] == "pruned" and info["epochs_completed"] == 2
    assert (run_dir / "checkpoints" / "last.pt").exists() and len(rows(run_dir / "metrics.csv")) == 2
    good = rows(Path(ended[0]["run_dir"]) / "metrics.csv")
    bad = rows(run_dir / "metrics.csv")
    assert float(bad[1]["val_loss"]) > float(good[1]["val_loss"])  # why it was pruned: worse at epoch 2
    assert result.counts == {"complete": 1, "pruned": 1}


# ---- SIGKILL while a trial runs, then the same command again --------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")
def test_sigkill_then_rerun_resumes_the_trial(tmp_path):
    section = {"objective": "val_accuracy", "n_trials": 3, "sampler": {"name": "random", "seed": 5}, "pruner": "none",
               "space": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}}
    cfg = config(tmp_path, section, data={"dataset": "digits", "split": {"val": 0.2}, "scale": "minmax"},
                 model={"layers": [{"type": "flatten"}, {"type": "dense", "units": 32, "activation": "relu"},
                                   {"type": "dense", "units": 10, "activation": "softmax"}]},
                 loss="cce", train={"epochs": 12, "batch_size": 8, "device": "cpu"})
    study = tmp_path / "runs" / "tune" / "t"
    metrics = study / "trials" / "0001" / "metrics.csv"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([*DLCLI, "tune", str(cfg)], cwd=tmp_path, env=ENV, stdout=log, stderr=log,
                                start_new_session=True)
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(rows(metrics)) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole study, mid-trial
    proc.wait(timeout=10)
    killed_at = len(rows(metrics))
    assert json.loads((study / "trials" / "0001" / "run.json").read_text())["status"] == "running"

    again = run("tune", cfg, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "trial 1 was killed" in again.stdout and "(trial 1 again, resuming its run)" in again.stdout
    trials = rows(study / "trials.csv")
    states = [r["state"] for r in trials]
    assert states.count("complete") == 3 and states.count("failed") == 1 and len(trials) == 4, trials
    killed = trials[1]
    assert killed["state"] == "failed" and "killed" in killed["message"]
    resumed = next(r for r in trials if r["resumes"] == "1")
    assert resumed["optimizer.lr"] == killed["optimizer.lr"] and resumed["run_dir"] == "trials/0001"
    info = json.loads((study / "trials" / "0001" / "run.json").read_text())
    assert info["status"] == "completed" and len(info["resumed"]) == 1 and info["tune"]["resumes"] == 1
    assert info["tune"]["trial"] == int(resumed["number"])
    epochs = rows(metrics)
    assert [int(r["epoch"]) for r in epochs] == list(range(1, 13)) and killed_at >= 2
    # Optuna saw the whole history of the resumed trial: the killed run's epochs replayed, then the rest
    import optuna

    from dlcli.commands.tune_report import open_study

    s, _ = open_study(study)
    t = s.trials[int(resumed["number"])]
    assert t.state == optuna.trial.TrialState.COMPLETE and sorted(t.intermediate_values) == list(range(1, 13))
    assert all(abs(t.intermediate_values[int(r["epoch"])] - float(r["val_accuracy"])) < 1e-9 for r in epochs)
    assert abs(t.value - max(float(r["val_accuracy"]) for r in epochs)) < 1e-9


# ---- MLflow: the study a parent run, a child run per trial; a rerun adds to the same parent ----------------

@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_tracked_study_is_a_parent_run_with_a_child_per_trial(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    import pickle

    from dlcli.commands.tune import tune
    from dlcli.commands.tune_checks import Plan

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    section = {"objective": "val_accuracy", "n_trials": 2, "sampler": {"name": "random", "seed": 2}, "pruner": "none",
               "space": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                         "model.layers[0].units": {"type": "int", "low": 4, "high": 8}}}
    cfg = config(tmp_path, section, train={"epochs": 1, "batch_size": 64, "device": "cpu"},
                 tracking=[{"type": "mlflow", "uri": uri, "experiment": "search"}])
    plans = []
    import dlcli.commands.tune as tune_module

    real = tune_module.run_workers
    tune_module.run_workers = lambda plan, *args: (plans.append(plan), real(plan, *args))[1]
    try:
        events = []
        first = tune(cfg, runs_root=tmp_path / "runs", progress=events.append)
        again = tune(cfg, runs_root=tmp_path / "runs", n_trials=3)  # raising n_trials: the same parent run
    finally:
        tune_module.run_workers = real
    assert not [e for e in events if e["event"] == "warning"], events
    assert first.counts == {"complete": 2} and again.counts == {"complete": 3}
    # what a spawned worker gets: the parent run's id, in a picklable plan
    assert plans[0].parent_run == plans[1].parent_run and pickle.loads(pickle.dumps(plans[0])).parent_run["run_id"]
    assert isinstance(pickle.loads(pickle.dumps(plans[0])), Plan)

    mlflow.set_tracking_uri(uri)
    study = mlflow.search_runs(experiment_names=["search"], filter_string="tags.`dlcli.kind` = 'study'")
    assert len(study) == 1 and study["status"][0] == "FINISHED"
    parent_id = study["run_id"][0]
    assert parent_id == plans[0].parent_run["run_id"]
    assert study["tags.sampler"][0] == "random" and study["tags.best_trial"][0] == str(again.best["number"])
    assert study["metrics.best_value"][0] == pytest.approx(again.best["value"])
    children = mlflow.search_runs(experiment_names=["search"], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    rows = sorted(zip(children["tags.trial"], children["tags.state"], children["tags.param.optimizer.lr"],
                      children["params.optimizer.lr"], children["metrics.val_accuracy"]))
    trials = {int(r["number"]): r for r in again.trials}
    assert [r[:2] for r in rows] == [("0", "complete"), ("1", "complete"), ("2", "complete")]
    units = dict(zip(children["tags.trial"], children["tags.param.model.layers.0.units"]))
    for number, _, tagged, param, value in rows:
        lr = trials[int(number)]["params"]["optimizer.lr"]
        assert float(tagged) == pytest.approx(lr) and float(param) == pytest.approx(lr)
        assert int(units[number]) == trials[int(number)]["params"]["model.layers[0].units"]
        assert value == pytest.approx(trials[int(number)]["value"])  # one epoch: its val_accuracy is the value

    # a store that fails: one warning, and the study goes on
    broken = tmp_path / "not-a-db"
    broken.write_bytes(b"not a database" * 100)
    events = []
    bad = config(tmp_path, {**section, "study": "b"}, name="b.yaml", train={"epochs": 1, "batch_size": 64},
                 tracking=[{"type": "mlflow", "uri": f"sqlite:///{broken}"}])
    result = tune(bad, runs_root=tmp_path / "runs", progress=events.append)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert result.counts == {"complete": 2} and len(warnings) == 1 and "the trials go on" in warnings[0], warnings


# ---- timeout: a budget of the study, summed over its commands ----------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(120)
def test_timeout_is_the_study_budget_across_commands(tmp_path):
    from dlcli.commands.tune import tune
    from dlcli.commands.tune_checks import spent_seconds
    from dlcli.commands.tune_report import open_study

    section = {"objective": "val_loss", "n_trials": 400, "timeout": 1.0, "sampler": {"name": "random", "seed": 4},
               "pruner": "none", "space": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}}
    cfg = config(tmp_path, section, train={"epochs": 1, "batch_size": 64, "device": "cpu"})
    t0 = time.time()
    first = tune(cfg, runs_root=tmp_path / "runs")
    wall = time.time() - t0
    done = first.counts.get("complete", 0)
    assert 1 <= done < 400 and first.timed_out
    assert 1.0 <= first.spent <= wall  # the command's span: at least the budget (the last trial ends after it)
    # the same command again: the budget is spent, no trial starts, and it says so
    again = run("tune", cfg, cwd=tmp_path)
    assert again.returncode == 0 and "its timeout is spent" in again.stdout and " started: " not in again.stdout
    study, _ = open_study(tmp_path / "runs" / "tune" / "t")
    assert len(study.trials) == done
    # raising the timeout is allowed: the study goes on for the difference
    spent = spent_seconds(study)
    more = tune(config(tmp_path, {**section, "timeout": spent + 0.5}, train={"epochs": 1, "batch_size": 64,
                                                                         "device": "cpu"}), runs_root=tmp_path / "runs")
    assert more.counts["complete"] > done and more.spent >= spent + 0.5
    # overlapping spans (commands at once, on a cluster) count once
    spans = type("S", (), {"user_attrs": {"ran:a": [0.0, 10.0], "ran:b": [5.0, 12.0], "ran:c": [20.0, 21.0],
                                          "other": 3}})()
    assert spent_seconds(spans) == 13.0


# ---- the cmaes sampler and the hyperband pruner, in process -------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cmaes_samples_and_hyperband_prunes(tmp_path):
    from dlcli.commands.tune import tune
    from dlcli.commands.tune_report import open_study

    space = {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
             "model.layers[1].rate": {"type": "float", "low": 0.0, "high": 0.4}}
    result = tune(config(tmp_path, {"study": "cma", "objective": "val_loss", "n_trials": 3, "sampler": "cmaes",
                                    "pruner": "none", "space": space}, train={"epochs": 1, "batch_size": 64}),
                  runs_root=tmp_path / "runs")
    assert result.counts == {"complete": 3}
    study, _ = open_study(result.study_dir)
    # the first trial is drawn independently (no search space known yet); then CMA-ES draws, generation by generation
    sampled_by_cma = [any(k.startswith("cma:") for k in t.system_attrs) for t in study.trials]
    assert sampled_by_cma == [False, True, True], [t.system_attrs for t in study.trials]
    for t in study.trials:
        assert 1e-3 <= t.params["optimizer.lr"] <= 3e-2 and 0.0 <= t.params["model.layers[1].rate"] <= 0.4

    # hyperband (min_resource 1, max 4 epochs, reduction 3): a learning rate of 30 is pruned at a rung
    # (Optuna puts a trial in a bracket by a hash of the study's name and its number: "band" has both in bracket 0)
    section = {"study": "band", "objective": "val_loss", "n_trials": 2, "sampler": {"name": "grid", "seed": 1},
               "pruner": {"name": "hyperband", "warmup_epochs": 1},
               "space": {"optimizer.lr": {"type": "categorical", "choices": [0.01, 30.0]}}}
    events = []
    hb = tune(config(tmp_path, section, train={"epochs": 4, "batch_size": 32}), runs_root=tmp_path / "runs",
              progress=events.append)
    ended = [e for e in events if e["event"] == "end"]
    assert [(e["params"]["optimizer.lr"], e["state"]) for e in ended] == [(0.01, "complete"), (30.0, "pruned")], ended
    pruned = ended[1]
    assert pruned["epochs"] in (1, 3)  # Hyperband's rungs here: 1 * 3**k epochs
    good = rows(Path(ended[0]["run_dir"]) / "metrics.csv")
    bad = rows(Path(pruned["run_dir"]) / "metrics.csv")
    at = pruned["epochs"] - 1
    assert len(bad) == pruned["epochs"] and float(bad[at]["val_loss"]) > float(good[at]["val_loss"])
    assert hb.counts == {"complete": 1, "pruned": 1}
