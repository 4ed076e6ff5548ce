"""One trial of a study: its parameters, a training in `trials/<NNNN>/`, its report to Optuna every epoch.

`run_trial` is where a trial starts and ends (a tracker, such as MLflow's, hooks in there). A trial is an
ordinary `train` run: the `Report` callback gives Optuna the objective after every epoch and stops the
run when the pruner says so (through early stopping's flag, so the run ends cleanly, checkpoint kept).
A trial that continues a killed one resumes its run from `last.pt`, and first replays the epochs that
run already did to Optuna, so the pruner sees the trial's whole history.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from pathlib import Path

import optuna

from .. import runs
from ..config.space import ParamSpec, decode, encode, overrides_of
from ..engine.callbacks import Callback
from ..errors import DlcliError, RunError, Stopped, TrainingFailed
from ..runs.layout import CHECKPOINTS
from .tune_checks import Outcome, Plan
from .tune_tracking import child_of

TRIALS = "trials"


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """The trial's value for every key of the space (a killed trial's again, when it was enqueued)."""
    values = {}
    for key, raw in space.items():
        spec = ParamSpec.model_validate(raw)
        if spec.type == "categorical":
            values[key] = decode(spec, trial.suggest_categorical(key, [encode(c) for c in spec.choices]))
        elif spec.type == "int":
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
        else:
            values[key] = trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)
    return values


class Report(Callback):
    """The objective to Optuna after every epoch; prunes by ending the run as early stopping does."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned = False
        self.values: dict[int, float] = {}

    def report(self, row: dict) -> None:
        value = row.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and row["epoch"] not in self.values:
            self.values[row["epoch"]] = float(value)
            self.trial.report(float(value), row["epoch"])

    def on_fit_start(self, training):
        for row in training.state.history:  # a resumed trial: the epochs its killed run did
            self.report(row)

    def on_epoch_end(self, training, row):
        self.report(row)
        if training.state.epoch < training.setup.config.train.epochs and self.trial.should_prune():
            self.pruned = True
            training.state.stopped_early = True


def trial_dir(study_dir: Path, number: int) -> Path:
    return Path(study_dir) / TRIALS / f"{number:04d}"


def run_trial(study: optuna.Study, trial: optuna.Trial, plan: Plan, started) -> Outcome:
    """Train one trial and tell Optuna how it ended; `started(number, params, resumed_from)` announces it."""
    from .train import train

    t0 = time.perf_counter()
    params = suggest(trial, plan.space)
    resume_from = trial.user_attrs.get("resume_from")
    resumed = trial.user_attrs.get("resumes")
    folder = Path(resume_from) if resume_from and (Path(resume_from) / CHECKPOINTS / "last.pt").exists() \
        else trial_dir(plan.study_dir, trial.number)
    resuming = folder != trial_dir(plan.study_dir, trial.number)
    trial.set_user_attr("run_dir", str(folder))
    started(trial.number, params, resumed if resuming else None)
    threads = [f"train.threads={plan.threads}"] if plan.threads else []
    report = Report(trial, plan.metric)
    state, message, result, t_train = "complete", "", None, 0.0
    with child_of(plan.parent_run, trial.number, params) as tag_state:
        try:
            with _quiet():
                t1 = time.perf_counter()
                if resuming:
                    result = train(None, threads, resume=folder, callbacks=[report], progress=False)
                else:
                    from ..config import load_config

                    cfg = load_config(plan.base, [*overrides_of(params), *threads])
                    result = train(cfg, run_dir=folder, callbacks=[report], progress=False)
                t_train = time.perf_counter() - t1
        except Stopped:
            raise  # left running in the study: the next `dlcli tune` resumes it
        except (DlcliError, TrainingFailed) as exc:
            state, message = "failed", str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - out of memory, a bug in a custom loss: this trial fails, the study goes on
            state, message = "failed", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if state == "complete" and report.pruned:
            state = "pruned"
        values = report.values
        best = (max if plan.mode == "max" else min)(values.values()) if values else None
        if state == "complete" and best is None:
            state, message = "failed", f"the run logged no finite {plan.metric}"
        tag_state(state)
    trial.set_user_attr("epochs", result.epochs if result else len(values))
    if message:
        trial.set_user_attr("message", message)
    trial.set_user_attr("train_seconds", round(t_train, 3))
    trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
    if state == "complete":
        study.tell(trial, best)
    elif state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    seconds = time.perf_counter() - t0
    outcome = Outcome(trial.number, state, params, best, result.epochs if result else len(values), seconds,
                      str(folder), message, resumed if resuming else None, t_train)
    mark_run(folder, plan, outcome)
    return outcome


def mark_run(folder: Path, plan: Plan, outcome: Outcome) -> None:
    """The trial in its run.json: study, number, parameters, state and value; a pruned run's status `pruned`."""
    path = Path(folder) / runs.RUN_INFO
    if not path.is_file():
        return  # failed before its run directory was made (a config the sampled values break)
    try:
        info = runs.read_json(path)
        info["tune"] = {"study": plan.study_name, "study_dir": str(plan.study_dir), "trial": outcome.number,
                        "params": outcome.params, "state": outcome.state, "value": outcome.value,
                        "objective": plan.metric, **({"resumes": outcome.resumed_from}
                                                     if outcome.resumed_from is not None else {})}
        if outcome.state == "pruned":
            info["status"] = "pruned"
        runs.write_json(path, info)
    except RunError:
        pass  # the trial's record in the study is what counts


class _Muted:
    """sys.stdout while a trial trains: what the training thread prints (its per-epoch lines) is dropped; other
    threads print as before, such as the one that shows the other workers' progress in the study's process."""

    def __init__(self, real, thread: threading.Thread):
        self.real, self.thread = real, thread

    def write(self, text: str) -> int:
        return len(text) if threading.current_thread() is self.thread else self.real.write(text)

    def __getattr__(self, name):
        return getattr(self.real, name)


@contextlib.contextmanager
def _quiet():
    """A trial's per-epoch lines would interleave with other workers': the study prints its own progress."""
    real = sys.stdout
    sys.stdout = _Muted(real, threading.current_thread())
    try:
        yield
    finally:
        sys.stdout = real
