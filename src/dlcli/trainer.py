"""The training loop, and the run directory it fills.

`train()` sets a run up (or reopens one to resume); `fit()` is the loop itself and reads top to
bottom: shuffle, then per batch forward, loss, backward, clip, step; then validate, log, schedule,
checkpoint, early-stop. Data that fits in memory is held as tensors (on the GPU when training there)
and batches are taken by index, never through per-sample Dataset calls.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import runs
from .build import Setup, prepare, stored_fit
from .config import Config, load_config
from .errors import RunError, TrainingFailed
from .metrics import Outputs, compute
from .optim import build_optimizer, build_schedule, monitor_mode
from .summary import summary_text


@dataclass
class Tensors:
    """One split as tensors on the training device, targets in the loss's format."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class State:
    """What a checkpoint holds besides model, optimizer and schedule: enough to resume exactly."""

    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the monitored value last improved
    stopped_early: bool = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from .errors import DlcliError

        raise DlcliError(f"device '{name}' was asked for but no CUDA GPU is available here; use device: cpu or auto")
    return torch.device(name)


def _data_device(device: torch.device, nbytes: int) -> torch.device:
    """Where the data lives: on the training device when it takes under half its free memory."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes < free // 2 else torch.device("cpu")


def to_tensors(x: np.ndarray, y: np.ndarray, task: str, device: torch.device) -> Tensors:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if task == "multiclass":
        yt = torch.from_numpy(y.astype(np.int64))
    elif task == "binary":
        yt = torch.from_numpy(y.astype(np.float32)).reshape(-1, 1)
    else:
        yt = torch.from_numpy(y.astype(np.float32)).reshape(len(y), -1)
    return Tensors(xt.to(device), yt.to(device))


# ----------------------------------------------------------------------------------------------
# Setting a run up


def train(config: str | Path | Config, overrides: list[str] | tuple[str, ...] = (), *,
          run_dir: str | Path | None = None, device: str | None = None, resume: str | Path | None = None,
          runs_root: str | Path = "runs", progress: bool | None = None) -> Path:
    """Train a config (a file or a loaded `Config`), or continue `resume`; returns the run directory."""
    if resume is not None:
        run = runs.open_run(resume)
        cfg = load_config(run / runs.CONFIG, overrides)
        info = runs.read_json(run / runs.RUN_INFO)
        scaler, labels = stored_fit(run)
        setup = prepare(cfg, scaler=scaler, classes=labels.get("classes"))
        checkpoint = run / runs.CHECKPOINTS / "last.pt"
        if not checkpoint.exists():
            raise RunError(f"{run}: has no checkpoint to resume from ({checkpoint} is missing)")
        if info.get("status") == "completed" and info.get("epochs_completed", 0) >= cfg.train.epochs:
            raise RunError(f"{run}: already completed {info['epochs_completed']} epochs; to train longer, "
                           f"pass train.epochs=N with N above {info['epochs_completed']}")
    else:
        cfg = config if isinstance(config, Config) else load_config(config, overrides)
        if overrides and isinstance(config, Config):
            raise ValueError("overrides go with a config file; apply them before building the Config")
        setup = prepare(cfg)
        info, checkpoint, run = {"name": cfg.name or (cfg.file.stem if cfg.file else "run")}, None, None
    dev = resolve_device(device or cfg.train.device)  # refuses a missing GPU before a run folder is made
    if run is None:
        run = _new_run(info["name"], run_dir, runs_root)
    runs.write_yaml(run / runs.CONFIG, cfg.resolved())
    _write_data_files(run, setup)
    name = info["name"]
    runs.write_atomic(run / runs.SUMMARY, summary_text(setup.model, name) + "\n")
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
    runs.write_json(run / runs.RUN_INFO, info)

    def finish(status: str, **extra) -> None:
        info.update(status=status, ended=runs.now(), **extra)
        runs.write_json(run / runs.RUN_INFO, info)

    def on_epoch(state: State) -> None:
        info["epochs_completed"] = state.epoch
        runs.write_json(run / runs.RUN_INFO, info)

    try:
        with _sigterm_as_interrupt():
            state = fit(setup, run, dev, checkpoint=checkpoint, progress=progress, on_epoch=on_epoch)
    except KeyboardInterrupt:
        finish("interrupted", message="stopped by the user; continue with dlcli train --resume " + str(run))
        raise
    except TrainingFailed as exc:
        finish("failed", message=str(exc))
        raise
    except BaseException as exc:
        finish("failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finish("completed", epochs_completed=state.epoch, best_epoch=state.best_epoch,
           best_value=state.best_value, monitor=_monitor(setup), stopped_early=state.stopped_early)
    return run


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


def _monitor(setup: Setup) -> str:
    """The value that picks the best checkpoint: the early-stopping monitor, else val_loss if any."""
    cfg = setup.config
    if cfg.train.early_stopping or "val" in setup.data.splits:
        return cfg.monitor
    return "train_loss"


# ----------------------------------------------------------------------------------------------
# The loop


def fit(setup: Setup, run: Path, device: torch.device, *, checkpoint: Path | None = None,
        progress: bool | None = None, on_epoch: Callable[[State], None] | None = None) -> State:
    cfg, model, loss_fn, task = setup.config, setup.model, setup.loss, setup.task
    tc = cfg.train
    holder = _data_device(device, sum(x.nbytes + y.nbytes for x, y in setup.data.splits.values()))
    splits = {name: to_tensors(x, y, task, holder) for name, (x, y) in setup.data.splits.items()}
    train_set, val_set = splits["train"], splits.get("val")
    model.to(device)
    loss_fn.to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    schedule = build_schedule(cfg.schedule, optimizer, epochs=tc.epochs)
    generator = torch.Generator(device=holder).manual_seed(cfg.seed)
    monitor = _monitor(setup)
    mode = monitor_mode(monitor, tc.early_stopping.mode if tc.early_stopping else "auto")
    ckpt_dir = run / runs.CHECKPOINTS
    state = State()

    if checkpoint is not None:
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = State(**saved["state"])
        _set_rng(saved["rng"], generator)
        runs.write_metrics(run / runs.METRICS, state.history)  # drop rows written after the checkpoint
    else:
        _save(ckpt_dir / "last.pt", model, optimizer, schedule, state, generator)

    n, bs = len(train_set), tc.batch_size
    bar = Progress(tc.epochs, -(-n // bs), enabled=progress)
    with bar:
        for epoch in range(state.epoch + 1, tc.epochs + 1):
            if state.stopped_early:
                break
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            model.train()
            order = (torch.randperm(n, device=holder, generator=generator) if tc.shuffle
                     else torch.arange(n, device=holder))
            total = torch.zeros((), device=device)
            bar.start_epoch(epoch)
            for b, start in enumerate(range(0, n, bs)):
                idx = order[start:start + bs]
                xb, yb = train_set.x[idx], train_set.y[idx]
                if holder != device:  # data too large for the GPU: copy batch by batch
                    xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                loss = loss_fn(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tc.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
                if tc.clip_grad_value:
                    torch.nn.utils.clip_grad_value_(model.parameters(), tc.clip_grad_value)
                optimizer.step()
                total += loss.detach() * len(idx)
                bar.batch(b, loss)
            train_loss = (total / n).item()  # the epoch's one host sync
            if not math.isfinite(train_loss):
                raise TrainingFailed(f"the training loss became {train_loss} at epoch {epoch}; lower optimizer.lr, "
                                     "set train.clip_grad_norm, or check the data's scale (data.scale: standard)")

            row = {"epoch": epoch, "lr": lr, "train_loss": train_loss}
            if val_set is not None:
                val_loss, outputs = evaluate_tensors(model, loss_fn, val_set, task, tc.eval_batch_size)
                row["val_loss"] = val_loss
                row.update({f"val_{k}": v for k, v in compute(cfg.metric_names, outputs).items()})
            row["epoch_seconds"] = time.perf_counter() - started
            state.history.append(row)
            state.epoch = epoch

            value = row[monitor]
            improved = state.best_value is None or _better(value, state.best_value, mode,
                                                           tc.early_stopping.min_delta if tc.early_stopping else 0.0)
            if improved:
                state.best_value, state.best_epoch, state.bad_epochs = value, epoch, 0
            else:
                state.bad_epochs += 1
            if tc.early_stopping and state.bad_epochs > tc.early_stopping.patience:
                state.stopped_early = True
            schedule.step(row)

            if improved:  # best first: a kill between the two never leaves best behind last's record
                _save(ckpt_dir / "best.pt", model, optimizer, schedule, state, generator)
            _save(ckpt_dir / "last.pt", model, optimizer, schedule, state, generator)
            runs.write_metrics(run / runs.METRICS, state.history)
            bar.end_epoch(row)
            if on_epoch:
                on_epoch(state)
    return state


def _better(value: float, best: float, mode: str, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    return value < best - min_delta if mode == "min" else value > best + min_delta


@torch.inference_mode()
def evaluate_tensors(model, loss_fn, data: Tensors, task: str, batch_size: int) -> tuple[float, Outputs]:
    """Loss and outputs over a whole split, in batches, without gradients."""
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), data.x.device)
    total = torch.zeros((), device=device)
    predictions = []
    for start in range(0, len(data), batch_size):
        xb = data.x[start:start + batch_size].to(device, non_blocking=True)
        yb = data.y[start:start + batch_size].to(device, non_blocking=True)
        raw = model(xb)
        total += loss_fn(raw, yb) * len(xb)
        predictions.append(model.head(raw))
    model.train(was_training)
    y_prob = torch.cat(predictions).float().cpu().numpy()
    y_true = data.y.cpu().numpy()
    if task == "binary":
        p = y_prob.reshape(-1)
        y_prob, y_true = np.stack([1 - p, p], axis=1), y_true.reshape(-1).astype(np.int64)
    return (total / len(data)).item(), Outputs(task, y_true, y_prob)


def _save(path: Path, model, optimizer, schedule, state: State, generator: torch.Generator) -> None:
    runs.save_torch(path, {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "state": vars(state),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "generator": generator.get_state(),
        },
    })


def _set_rng(rng: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    generator.set_state(rng["generator"].cpu())


# ----------------------------------------------------------------------------------------------
# Progress: a live bar on a terminal, one plain line per epoch otherwise


class Progress:
    def __init__(self, epochs: int, batches: int, enabled: bool | None = None):
        from rich.console import Console

        self.console = Console()
        self.epochs, self.batches = epochs, batches
        self.live = self.console.is_terminal if enabled is None else enabled
        self.bar = None
        self._last_update = 0.0

    def __enter__(self):
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                                    console=self.console, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.batches, loss="-")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        if self.bar is not None:
            self.bar.reset(self.task, total=self.batches, description=f"epoch {epoch}/{self.epochs}", loss="-")

    def batch(self, b: int, loss: torch.Tensor) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if now - self._last_update > 0.2 or b == self.batches - 1:  # reading the loss syncs: only 5x a second
            self._last_update = now
            self.bar.update(self.task, completed=b + 1, loss=f"{loss.item():.4f}")

    def end_epoch(self, row: dict) -> None:
        parts = [f"epoch {row['epoch']}/{self.epochs}"]
        parts += [f"{k} {_short(v)}" for k, v in row.items() if k not in ("epoch",)]
        line = "  ".join(parts)
        if self.bar is not None:
            self.console.print(line, highlight=False)
        else:
            print(line, flush=True)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if (abs(v) < 1e-3 and v != 0) else f"{v:.4f}"
    return str(v)
