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
from .batches import (
    Batches,
    Gathered,
    autocast,
    convolutional,
    evaluate_batches,
    inference_batch_size,
    resolve_device,
)
from .build import Setup, prepare, stored_fit
from .config import Config, load_config
from .errors import RunError, TrainingFailed
from .metrics import compute
from .optim import build_optimizer, build_schedule, monitor_mode
from .progress import Progress
from .summary import summary_text


@dataclass
class State:
    """What a checkpoint holds besides model, optimizer and schedule: enough to resume exactly."""

    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the monitored value last improved
    stopped_early: bool = False


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
        setup = prepare(cfg, scaler=scaler, classes=labels.get("classes"), fill=labels.get("fill"))
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
    bar = Progress(tc.epochs, 0, enabled=progress)
    fmt = _memory_format(tc.channels_last, model)
    model.to(device, memory_format=fmt)
    loss_fn.to(device)
    splits = setup.data.splits
    train_batches = Batches(splits["train"], task, device, tc.batch_size, shuffle=tc.shuffle, seed=cfg.seed,
                            workers=cfg.data.workers, memory_format=fmt)
    val_batches = (Batches(splits["val"], task, device, inference_batch_size(model, device, tc.eval_batch_size),
                           workers=cfg.data.workers,
                           memory_format=fmt) if "val" in splits else None)
    bar.batches = len(train_batches)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    schedule = build_schedule(cfg.schedule, optimizer, epochs=tc.epochs)
    scaler = torch.amp.GradScaler(device.type) if tc.precision == "fp16" else None
    # model.body gives the logits, as model(x) does, with one module call less per step.
    forward = _Compiled(model.body, bar) if tc.compile else model.body
    monitor = _monitor(setup)
    mode = monitor_mode(monitor, tc.early_stopping.mode if tc.early_stopping else "auto")
    ckpt_dir = run / runs.CHECKPOINTS
    board = _tensorboard(run) if tc.tensorboard else None
    state = State()
    saving = (model, optimizer, schedule, scaler, train_batches.generator)

    if checkpoint is not None:
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        if scaler and saved.get("grad_scaler"):
            scaler.load_state_dict(saved["grad_scaler"])
        state = State(**saved["state"])
        _set_rng(saved["rng"], train_batches.generator)
        runs.write_metrics(run / runs.METRICS, state.history)  # drop rows written after the checkpoint
    else:
        _save(ckpt_dir / "last.pt", state, *saving)
    for note in setup.data.notes:
        bar.note(note)

    with bar:
        for epoch in range(state.epoch + 1, tc.epochs + 1):
            if state.stopped_early:
                break
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            model.train()
            total = torch.zeros((), device=device)
            gathered = Gathered()  # this epoch's predictions, for train_<metric>: read once, at the end
            bar.start_epoch(epoch)
            for b, (xb, yb) in enumerate(train_batches.epoch(epoch)):
                with autocast(device, tc.precision):
                    out = forward(xb)
                    loss = loss_fn(out, yb)
                optimizer.zero_grad(set_to_none=True)
                (scaler.scale(loss) if scaler else loss).backward()
                if tc.clip_grad_norm or tc.clip_grad_value:
                    if scaler:
                        scaler.unscale_(optimizer)
                    if tc.clip_grad_norm:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
                    if tc.clip_grad_value:
                        torch.nn.utils.clip_grad_value_(model.parameters(), tc.clip_grad_value)
                if scaler:  # fp16: skips steps whose gradients overflowed, and adapts the scale
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                total.add_(loss.detach(), alpha=len(xb))
                if tc.train_metrics:
                    gathered.add(out.detach(), yb)
                if bar.live:
                    bar.batch(b)
            train_loss = (total / train_batches.n).item()  # the epoch's one host sync
            if not math.isfinite(train_loss):
                raise TrainingFailed(f"the training loss became {train_loss} at epoch {epoch}; lower optimizer.lr, "
                                     "set train.clip_grad_norm, or check the data's scale (data.scale: standard)")

            row = {"epoch": epoch, "lr": lr, "train_loss": train_loss}
            if tc.train_metrics:
                train_out = gathered.outputs(task, model.head)
                row.update({f"train_{k}": v for k, v in compute(cfg.metric_names, train_out).items()})
                del gathered, train_out  # free the epoch's outputs before validation
            if val_batches is not None:
                val_loss, val_out = evaluate_batches(model, loss_fn, val_batches, precision=tc.precision)
                row["val_loss"] = val_loss
                row.update({f"val_{k}": v for k, v in compute(cfg.metric_names, val_out).items()})
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
                _save(ckpt_dir / "best.pt", state, *saving)
            _save(ckpt_dir / "last.pt", state, *saving)
            runs.write_metrics(run / runs.METRICS, state.history)
            if board is not None:
                for key, v in row.items():
                    if key not in ("epoch", "epoch_seconds"):
                        board.add_scalar(key, v, epoch)
                board.flush()
            bar.end_epoch(row)
            if on_epoch:
                on_epoch(state)
    if board is not None:
        board.close()
    return state


def _memory_format(option, model):
    """channels_last for convolutional models, by default on every device.

    cuDNN and oneDNN both run convolutions faster on NHWC; on a CPU torch's NCHW max-pool kernel is
    also ~10x slower than its NHWC one (measured here: 13 ms against 1.3 ms for 128 x 32 x 26 x 26),
    so the lecture's CNN trained 1.6-1.9x faster channels-last on this 2-core machine. On an H100
    it trained level with the NCHW hand loop (bound there by launching kernels, not by convolutions).
    """
    use = option is True or option == "auto"
    return torch.channels_last if use and convolutional(model) else torch.contiguous_format


class _Compiled:
    """torch.compile(model), falling back to the model itself, with a warning, where compiling fails.

    Compiling happens at the first call, so that is where a missing compiler or an unsupported
    platform shows up; later recompiles (the last, smaller batch) fall back per graph by themselves.
    """

    def __init__(self, model, bar: Progress):
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        self.model, self.bar, self.works = model, bar, None
        self.compiled = torch.compile(model)

    def __call__(self, x):
        if self.works is False:
            return self.model(x)
        try:
            out = self.compiled(x)
        except Exception as exc:  # noqa: BLE001 - any failure to compile means: train without compiling
            if self.works:
                raise
            self.works = False
            self.bar.note(f"warning: train.compile: torch.compile failed here ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); training without it")
            return self.model(x)
        self.works = True
        return out


def _tensorboard(run: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RunError("train.tensorboard needs the tensorboard package: pip install 'dlcli[tensorboard]' "
                       "(or uv sync --extra tensorboard)") from None
    return SummaryWriter(log_dir=str(run / "tb"))


def _better(value: float, best: float, mode: str, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _save(path: Path, state: State, model, optimizer, schedule, scaler, generator: torch.Generator) -> None:
    runs.save_torch(path, {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "grad_scaler": scaler.state_dict() if scaler else None,
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
