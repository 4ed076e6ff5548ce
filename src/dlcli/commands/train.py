"""`train`: a config becomes a run directory and a trained network; `--resume` continues a run.

This sets the run up (its folder, config.yaml, labels.json, scaler.json, summary.txt, run.json
and its status) and hands the loop (`engine.loop.fit`) its callbacks: the standard ones, and one
that keeps run.json's epoch count current.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import runs
from ..config import Config, load_config
from ..config.schema import TrackerConfig
from ..engine import distributed
from ..engine.callbacks import (
    Callback,
    EarlyStopping,
    OnEpochEnd,
    ProgressBar,
    on_rank,
    standard_callbacks,
    summary_writer,
    wants_tensorboard,
)
from ..engine.device import config_device
from ..engine.loop import fit, monitored
from ..engine.resume import Changes, changes
from ..engine.setup import Setup, prepare
from ..engine.tracking import tracking_callbacks
from ..errors import RunError, Stopped, TrainingFailed
from ..runs.checkpoint import load_checkpoint
from ..runs.lock import LOCK, RunLock
from ..runs.run import Run
from .summarize import summary_text


@dataclass
class TrainResult:
    """What `train` returns: the run directory (as os.fspath), how training ended and its history.

    `history` has a row per epoch, as metrics.csv: epoch, lr, train_loss, train_<metric>, val_loss,
    val_<metric>, epoch_seconds (Keras' `History.history`, by row). `metrics` is its last row.
    """

    run_dir: Path
    status: str  # completed (a failed or interrupted run raises instead)
    epochs: int  # epochs completed
    best_epoch: int | None
    best_value: float | None
    monitor: str
    stopped_early: bool
    metrics: dict = field(default_factory=dict)  # the last epoch's row of metrics.csv
    history: list[dict] = field(default_factory=list)  # every epoch's row, the first epoch first

    def __fspath__(self) -> str:
        return str(self.run_dir)


def train(config: str | Path | Config | None, overrides: list[str] | tuple[str, ...] = (), *,
          run_dir: str | Path | None = None, device: str | None = None, resume: str | Path | None = None,
          runs_root: str | Path = "runs", progress: bool | None = None,
          callbacks: list[Callback] = (), track: list[str] | tuple[str, ...] = ()) -> TrainResult:
    """Train a config (a file or a loaded `Config`), or continue the run `resume` with `overrides`.

        result = train("configs/quickstart.yaml", ["train.epochs=5", "optimizer.lr=0.01"])
        result.run_dir, result.best_value, result.history[-1]["val_loss"]

    overrides: `key.path=value` strings, as on the command line (with a config file, or with resume).
    run_dir: the run's folder (default: a new one under `runs_root`, named after the config).
    device: auto, cpu, cuda, cuda:N or mps, in place of train.device.
    resume: a run directory to continue from its last checkpoint (config=None).
    progress: the progress bar (default: on a terminal only).
    callbacks: run after the standard ones (engine/callbacks.py): a tuning trial's report, for one.
    track: trackers to add to the config's `tracking:` (mlflow, tensorboard), as `--track` does.

    Returns a TrainResult (run_dir, status, epochs, best_epoch, best_value, monitor, stopped_early,
    metrics: the last epoch's row, history: every epoch's row). Bad input raises a DlcliError
    (ConfigError, DataError, RunError); Ctrl-C or SIGTERM raise `Stopped` once the run is marked
    interrupted.
    """
    with _stop_signals() as stopped:
        if resume is not None:
            folder = Path(resume)
            if folder.is_dir() and not any(folder.iterdir()):
                raise RunError(f"{folder}: is empty, so there is nothing to resume (a training killed as it started "
                               "leaves its folder so); start again")
            if not _started(folder):
                runs.check_run_dir(folder)  # not a run directory: says why
            if distributed.from_env() is not None:  # torchrun or srun: join the other ranks first
                joined = Run.open(folder, overrides).config
                distributed.join(joined, config_device(joined, device))
            if distributed.rank():  # rank 0 checks and locks the run; the others follow it
                distributed.announce(None, what="the resume's checks")
                cfg, info, setup, changed, dev = _prepare_resume(folder, overrides, device)
                return _follow(folder, cfg, setup, dev, changed, stopped, callbacks)
            with RunLock(folder):  # before anything is read for writing: one process per run
                def checked():  # the followers hear of a failure here (a missing tracker package too)
                    cfg, info, setup, changed, dev = _prepare_resume(folder, overrides, device)
                    return with_tracking(cfg, track), info, setup, changed, dev

                cfg, info, setup, changed, dev = distributed.announce(checked, send=False)
                return _train(folder, cfg, setup, dev, info, changed, stopped, progress, callbacks)
        cfg = with_tracking(config if isinstance(config, Config) else load_config(config, overrides), track)
        if overrides and isinstance(config, Config):
            raise ValueError("overrides go with a config file; apply them before building the Config")
        dev = config_device(cfg, device)  # refuses a missing GPU before anything is loaded or written
        dev = distributed.join(cfg, dev)  # under torchrun or srun: the other ranks (cuda:LOCAL_RANK)
        setup = prepare(cfg, device=dev)
        name = cfg.name or (cfg.file.stem if cfg.file else "run")
        folder = Path(distributed.announce(lambda: str(_new_run(name, run_dir, runs_root)), what="creating the run"))
        if distributed.rank():  # rank 0 writes the run; the others train alongside it
            return _follow(folder, cfg, setup, dev, None, stopped, callbacks)
        with RunLock(folder):
            info = {"name": name, "started": runs.now(), "command": " ".join(sys.argv)}
            return _train(folder, cfg, setup, dev, info, None, stopped, progress, callbacks)


def _prepare_resume(folder: Path, overrides, device: str | None) -> tuple[Config, dict, Setup, Changes, torch.device]:
    """Everything a resume checks before it writes a byte: the checkpoint, the config and its changes, the
    device, the data and the network. (config, run.json, setup, the changes asked for, the device)."""
    last = folder / runs.CHECKPOINTS / "last.pt"
    if not last.exists():
        raise RunError(f"{folder}: was stopped before its first checkpoint ({last} does not exist), so there is "
                       f"nothing to resume; start again{_original_command(folder)}")
    run = Run.open(folder, overrides)
    cfg, info = run.config, run.info
    changed = changes(load_config(folder / runs.CONFIG), cfg, overrides, where=str(folder))  # as it was trained
    done = info.get("epochs_completed", 0)
    if done > cfg.train.epochs or (info.get("status") == "completed" and done == cfg.train.epochs):
        raise RunError(f"{folder}: already completed {done} epochs; to train longer, pass train.epochs=N with N "
                       f"above {done}")  # killed after its last checkpoint, it goes on to be marked completed
    if info.get("stopped_early") and not (changed.touches("train.early_stopping") or changed.touches("train.epochs")):
        raise RunError(f"{folder}: stopped early at epoch {done}; to train on, pass a larger "
                       "train.early_stopping.patience=N or train.epochs=N")
    dev = distributed.join(cfg, config_device(cfg, device))
    setup = prepare(cfg, fitted=run.fitted, device=dev)
    run.load_weights(setup.model, "last", torch.device("cpu"))  # it fits, before anything is rewritten
    if (folder / runs.CHECKPOINTS / "best.pt").exists():  # and the best so far, which training replaces
        load_checkpoint(folder / runs.CHECKPOINTS / "best.pt", torch.device("cpu"))
    resumed = {"at": runs.now(), "overrides": list(overrides), "command": " ".join(sys.argv)}
    return cfg, {**info, "resumed": [*info.get("resumed", []), resumed]}, setup, changed, dev


def _train(folder: Path, cfg: Config, setup: Setup, dev, info: dict, changed: Changes | None,
           stopped: list[int], progress: bool | None, callbacks: list[Callback]) -> TrainResult:
    """Train in `folder`, which this process has locked: run.json first (so a run killed from here on is
    known as one), then the config, data files and summary, then the loop."""
    info = {
        "name": info["name"],
        "status": "running",
        "started": info["started"],
        "resumed": info.get("resumed", []),
        "ended": None,
        "epochs_completed": info.get("epochs_completed", 0),
        "command": info["command"],
        "pid": os.getpid(),
        **runs.environment(str(dev)),
        "threads": setup.threads.summary(),
        **distributed.info(),  # world_size, backend
    }

    def finish(status: str, **extra) -> None:
        info.update(status=status, ended=runs.now(), threads=setup.threads.summary(), **extra)
        runs.write_json(folder / runs.RUN_INFO, info)

    def count_epoch(training, row) -> None:
        info.update(epochs_completed=training.state.epoch, threads=setup.threads.summary())
        runs.write_json(folder / runs.RUN_INFO, info)

    checkpoint = folder / runs.CHECKPOINTS / "last.pt" if changed is not None else None
    def start() -> None:
        distributed.clear_notes(folder)
        runs.write_json(folder / runs.RUN_INFO, info)
        runs.write_yaml(folder / runs.CONFIG, cfg.resolved())
        _write_data_files(folder, setup)
        runs.write_atomic(folder / runs.SUMMARY, summary_text(setup.model, info["name"]) + "\n")

    try:
        distributed.announce(start, send=False, what="writing the run's files")  # the other ranks wait for it
        standard = standard_callbacks(cfg, folder, progress=progress)
        bar = next((cb for cb in standard if isinstance(cb, ProgressBar)), None)
        warn = (lambda text: bar.on_note(f"warning: {text}")) if bar is not None else None
        every = [*standard, OnEpochEnd(count_epoch), *tracking_callbacks(cfg, folder, warn), *callbacks]
        state = fit(setup, dev, every, resume_from=checkpoint, changes=changed)
    except BaseException as exc:
        _hold_signals()  # a launcher that stops the ranks must not cut this, or run.json's writing, short
        lost = distributed.failure(exc)  # another rank died or stopped answering: the run failed
        if lost and (signum := distributed.stopped_peers(folder)) is not None:
            lost = None  # the launcher's SIGTERM reached a rank that left before this one saw it: stopped, not failed
            stopped[:] = stopped or [signum]
        if stopped and lost is None:  # Ctrl-C or SIGTERM, or what they broke on their way (a data worker killed with us)
            finish("interrupted", message=f"stopped by {signal.Signals(stopped[0]).name}; continue with dlcli "
                                          f"train --resume {folder}")
            raise Stopped(stopped[0], folder) from None
        message = lost or (str(exc) if isinstance(exc, (TrainingFailed, RunError)) else f"{type(exc).__name__}: {exc}")
        try:
            finish("failed", message=message)
        except RunError:  # the disk that failed the run fails run.json too: the checkpoints are intact
            pass
        if lost:
            raise TrainingFailed(f"{lost}; continue with dlcli train --resume {folder}") from None
        if isinstance(exc, RunError):
            raise RunError(f"{exc}; the run stopped after epoch {info['epochs_completed']}: continue it with "
                           f"dlcli train --resume {folder} once that is fixed") from None
        raise
    distributed.leave()
    monitor = monitored(setup)
    finish("completed", epochs_completed=state.epoch, best_epoch=state.best_epoch,
           best_value=state.best_value, monitor=monitor, stopped_early=state.stopped_early)
    return TrainResult(folder, "completed", state.epoch, state.best_epoch, state.best_value, monitor,
                       state.stopped_early, dict(state.history[-1]) if state.history else {},
                       [dict(row) for row in state.history])


def _follow(folder: Path, cfg: Config, setup: Setup, dev, changed: Changes | None, stopped: list[int],
            callbacks: list[Callback]) -> TrainResult:
    """A rank other than 0 trains alongside rank 0 and writes nothing of the run but logs/rank<r>.log (its
    output and a line per epoch); rank 0's run.json says how the run ended."""
    distributed.announce(None, what="writing the run's files")
    distributed.log_to(folder)
    tc = cfg.train
    every = [EarlyStopping(tc.early_stopping.patience)] if tc.early_stopping else []
    every += [distributed.RankLog(), *on_rank(list(callbacks), distributed.rank())]
    try:
        state = fit(setup, dev, every, resume_from=folder / runs.CHECKPOINTS / "last.pt" if changed is not None else None,
                    changes=changed)
    except BaseException as exc:
        _hold_signals()  # the launcher stops every rank once one has died: let run.json be written
        lost = distributed.failure(exc)
        if stopped:
            distributed.note_stopped(folder, stopped[0])  # for rank 0, whose next collective fails without us
        if stopped and lost is None:
            raise Stopped(stopped[0], folder) from None
        if lost:
            _fail_for_rank_zero(folder, lost)
            raise TrainingFailed(lost) from None
        raise
    distributed.leave()
    return TrainResult(folder, "completed", state.epoch, state.best_epoch, state.best_value, monitored(setup),
                       state.stopped_early, dict(state.history[-1]) if state.history else {},
                       [dict(row) for row in state.history])


def _hold_signals() -> None:
    """A rank on its way out ignores stop signals from here on. The first one may come while this is being
    set up: its handler has recorded it (the `stopped` list), and its Stopped must not cut the rank's
    report short."""
    try:
        distributed.hold_signals()
    except Stopped:
        distributed.hold_signals()


def _fail_for_rank_zero(folder: Path, message: str) -> None:
    """A rank that stopped because another died marks the run failed where rank 0 no longer can: rank 0's
    run lock is free (it died, or it is done and has written run.json) and run.json still says running.
    While rank 0 lives it holds the lock and writes run.json itself; of several survivors, the first wins."""
    try:
        with RunLock(folder):
            info = runs.read_json(folder / runs.RUN_INFO)
            if info.get("status") != "running":
                return
            info.update(status="failed", ended=runs.now(), message=message, marked_by=f"rank {distributed.rank()}")
            runs.write_json(folder / runs.RUN_INFO, info)
    except RunError:  # rank 0 is alive (it holds the lock), or run.json was never written: nothing to mark
        pass


def with_tracking(cfg: Config, track: list[str] | tuple[str, ...]) -> Config:
    """The config with the trackers `--track` names added to its `tracking:` (those it lacks)."""
    have = {entry.type for entry in cfg.tracking or []}
    wanted = []
    for name in track:
        if name not in ("mlflow", "tensorboard"):
            raise RunError(f"--track takes mlflow or tensorboard, got '{name}'")
        if name not in have:
            have.add(name)
            wanted.append(TrackerConfig(type=name))
    if wanted:
        cfg = cfg.model_copy(update={"tracking": [*(cfg.tracking or []), *wanted]})
    _check_trackers(cfg)
    return cfg


def _check_trackers(cfg: Config) -> None:
    """A tracker whose package is missing is a RunError here, before a run folder is made (or resumed)."""
    if any(entry.type == "mlflow" for entry in cfg.tracking or []):
        from ..engine.tracking import import_mlflow

        import_mlflow()
    if wants_tensorboard(cfg):
        summary_writer()


def _started(folder: Path) -> bool:
    """A folder a training got as far as creating and locking, or writing run.json into, before it was killed."""
    return folder.is_dir() and ((folder / LOCK).exists() or (folder / runs.RUN_INFO).exists())


def _original_command(folder: Path) -> str:
    try:
        command = runs.read_json(folder / runs.RUN_INFO).get("command")
    except RunError:
        return ""
    return f": {command}" if isinstance(command, str) and command else ""


def _new_run(name: str, run_dir: str | Path | None, runs_root: str | Path) -> Path:
    if run_dir is None:
        return runs.new_run_dir(name, Path(runs_root))
    run = Path(run_dir)
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise RunError(f"{run}: the run directory exists and is not empty; choose another or use --resume")
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{run}: cannot be created ({runs.os_reason(exc)})") from None
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


# SIGUSR1: what SLURM sends before a job's time limit (sbatch --signal=USR1@300)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


@contextmanager
def _stop_signals():
    """Ctrl-C (SIGINT), `kill` (SIGTERM) and SLURM's warning (SIGUSR1) stop training the same way: marked
    interrupted, resumable.

    Only the first signal acts. A batch system signals the whole process group, and `uv run` passes the
    signal on as well, so a second one comes while the first is being handled: it must not cut short
    the writing of run.json. Yields the signals received (the first one only)."""
    received: list[int] = []

    def handler(signum, frame):
        if not received:
            received.append(signum)
            raise Stopped(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread (a notebook's worker): leave signals alone
        yield received
        return
    try:
        yield received
    finally:
        if not distributed.signals_held():  # a rank on its way out after a failure keeps ignoring them
            for s, old in previous.items():
                signal.signal(s, old)
