"""`train`: a config becomes a run directory and a trained network; `--resume` continues a run.

This sets the run up (its folder, config.yaml, labels.json, scaler.json, summary.txt, run.json
and its status) and hands the loop (`engine.loop.fit`) its callbacks: the standard ones, and one
that keeps run.json's epoch count current.
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import runs
from ..config import Config, load_config
from ..engine.callbacks import Callback, OnEpochEnd, standard_callbacks
from ..engine.device import config_device
from ..engine.loop import fit, monitored
from ..engine.setup import Setup, prepare
from ..errors import RunError, TrainingFailed
from ..runs.checkpoint import load_checkpoint
from ..runs.run import Run
from .summarize import summary_text


@dataclass
class TrainResult:
    """What `train` returns: the run directory (as os.fspath) and how training ended."""

    run_dir: Path
    status: str  # completed (a failed or interrupted run raises instead)
    epochs: int  # epochs completed
    best_epoch: int | None
    best_value: float | None
    monitor: str
    stopped_early: bool
    metrics: dict = field(default_factory=dict)  # the last epoch's row of metrics.csv

    def __fspath__(self) -> str:
        return str(self.run_dir)


def train(config: str | Path | Config | None, overrides: list[str] | tuple[str, ...] = (), *,
          run_dir: str | Path | None = None, device: str | None = None, resume: str | Path | None = None,
          runs_root: str | Path = "runs", progress: bool | None = None,
          callbacks: list[Callback] = ()) -> TrainResult:
    """Train a config (a file or a loaded `Config`), or continue the run `resume` with `overrides`.

    `callbacks` run after the standard ones (engine/callbacks.py): a tuning trial's report, for one.
    """
    if resume is not None:
        run = Run.open(resume, overrides)
        cfg, info = run.config, run.info
        dev = config_device(cfg, device)  # refuses a missing GPU before anything is loaded or written
        setup = prepare(cfg, fitted=run.fitted, device=dev)
        checkpoint = run.path / runs.CHECKPOINTS / "last.pt"
        if not checkpoint.exists():
            raise RunError(f"{run.path}: has no checkpoint to resume from ({checkpoint} is missing)")
        if info.get("status") == "completed" and info.get("epochs_completed", 0) >= cfg.train.epochs:
            raise RunError(f"{run.path}: already completed {info['epochs_completed']} epochs; to train longer, "
                           f"pass train.epochs=N with N above {info['epochs_completed']}")
        run.load_weights(setup.model, "last", torch.device("cpu"))  # it fits, before anything is rewritten
        if (run.path / runs.CHECKPOINTS / "best.pt").exists():  # and the best so far, which training replaces
            load_checkpoint(run.path / runs.CHECKPOINTS / "best.pt", torch.device("cpu"))
        folder = run.path
    else:
        cfg = config if isinstance(config, Config) else load_config(config, overrides)
        if overrides and isinstance(config, Config):
            raise ValueError("overrides go with a config file; apply them before building the Config")
        dev = config_device(cfg, device)
        setup = prepare(cfg, device=dev)
        info, checkpoint, folder = {"name": cfg.name or (cfg.file.stem if cfg.file else "run")}, None, None
    if folder is None:
        folder = _new_run(info["name"], run_dir, runs_root)
    runs.write_yaml(folder / runs.CONFIG, cfg.resolved())
    _write_data_files(folder, setup)
    name = info["name"]
    runs.write_atomic(folder / runs.SUMMARY, summary_text(setup.model, name) + "\n")
    info = {
        "name": name,
        "status": "running",
        "started": info.get("started", runs.now()),
        "resumed": [*info.get("resumed", []), runs.now()] if resume is not None else [],
        "ended": None,
        "epochs_completed": info.get("epochs_completed", 0),
        "command": " ".join(sys.argv),
        **runs.environment(str(dev)),
    }
    runs.write_json(folder / runs.RUN_INFO, info)

    def finish(status: str, **extra) -> None:
        info.update(status=status, ended=runs.now(), **extra)
        runs.write_json(folder / runs.RUN_INFO, info)

    def count_epoch(training, row) -> None:
        info["epochs_completed"] = training.state.epoch
        runs.write_json(folder / runs.RUN_INFO, info)

    try:
        with _sigterm_as_interrupt():
            every = [*standard_callbacks(cfg, folder, progress=progress), OnEpochEnd(count_epoch), *callbacks]
            state = fit(setup, dev, every, resume_from=checkpoint)
    except KeyboardInterrupt:
        finish("interrupted", message="stopped by the user; continue with dlcli train --resume " + str(folder))
        raise
    except TrainingFailed as exc:
        finish("failed", message=str(exc))
        raise
    except BaseException as exc:
        finish("failed", message=f"{type(exc).__name__}: {exc}")
        raise
    monitor = monitored(setup)
    finish("completed", epochs_completed=state.epoch, best_epoch=state.best_epoch,
           best_value=state.best_value, monitor=monitor, stopped_early=state.stopped_early)
    return TrainResult(folder, "completed", state.epoch, state.best_epoch, state.best_value, monitor,
                       state.stopped_early, dict(state.history[-1]) if state.history else {})


def _new_run(name: str, run_dir: str | Path | None, runs_root: str | Path) -> Path:
    if run_dir is None:
        return runs.new_run_dir(name, Path(runs_root))
    run = Path(run_dir)
    if run.exists() and any(run.iterdir()):
        raise RunError(f"{run}: the run directory exists and is not empty; choose another or use --resume")
    run.mkdir(parents=True, exist_ok=True)
    return run


def _write_data_files(run: Path, setup: Setup) -> None:
    data = setup.data
    if data.scaler is not None:
        runs.write_json(run / runs.SCALER, data.scaler.to_dict())
    runs.write_json(run / runs.LABELS, {
        "task": setup.task,
        "classes": data.classes,
        "feature_names": data.feature_names,
        "input_shape": list(data.input_shape),
        "source": data.source,
        "rows": data.rows(),
        "fill": data.fill,  # missing: mean: the train-split means, reused by evaluate --data and predict
    })


@contextmanager
def _sigterm_as_interrupt():
    """`kill` (SIGTERM) stops a run the way Ctrl-C does: marked interrupted, resumable."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a notebook's worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
