"""The training loop. `fit` reads top to bottom: per batch forward, loss, backward, clip, step; then the
epoch's row (train loss and metrics, validation), the schedule, and the per-epoch callbacks. A per-step
schedule (`interval: step`) also sets the lr after each optimizer step; metrics.csv's lr is the epoch's first.

Data that fits in memory is held as tensors (on the GPU when training there) and batches are taken
by index, never through per-sample Dataset calls; the loss is summed on the device and read once
per epoch (and by a live progress bar a few times a second), so the host never waits for the GPU at
every step.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..errors import TrainingFailed
from ..nn.metrics import compute
from ..nn.optimizers import build_optimizer
from ..nn.schedules import build_schedule, monitor_mode
from . import distributed
from .batches import Batches
from .callbacks import Callback
from .device import autocast
from .inference import Gathered, convolutional, evaluate_batches, inference_batch_size
from .resume import Changes, restore
from .setup import Setup
from .state import RunningLoss, State, Training


def fit(setup: Setup, device: torch.device, callbacks: list[Callback] = (), *,
        resume_from: Path | None = None, changes: Changes | None = None) -> State:
    """Train `setup.model` for the config's epochs (from a checkpoint's state, with `resume_from`, under
    the config changes a resume asked for)."""
    cfg, model, loss_fn, task = setup.config, setup.model, setup.loss, setup.task
    tc = cfg.train
    fmt = memory_format(tc.channels_last, model)
    model = distributed.sync_batchnorm(model, cfg.distributed.sync_batchnorm)
    model.to(device, memory_format=fmt)
    loss_fn.to(device)
    splits = setup.data.splits
    train_batches = Batches(splits["train"], task, device, tc.batch_size, shuffle=tc.shuffle, seed=cfg.seed,
                            workers=cfg.data.workers, memory_format=fmt, weights=setup.data.weight("train"),
                            shard=distributed.shard())
    val_batches = (Batches(distributed.part(splits["val"]), task, device,  # data-parallel: this rank's rows
                           inference_batch_size(model, device, tc.eval_batch_size), workers=cfg.data.workers,
                           memory_format=fmt, weights=distributed.part_weights(setup.data.weight("val")))
                   if "val" in splits else None)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    monitor = monitored(setup)
    schedule = build_schedule(cfg.schedule, optimizer, epochs=tc.epochs, steps_per_epoch=len(train_batches))
    training = Training(setup, model, optimizer, schedule,
                        torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16"),
                        train_batches.generator, len(train_batches), monitor,
                        monitor_mode(monitor, tc.early_stopping.mode if tc.early_stopping else "auto"))
    if resume_from is not None:
        for note in restore(training, resume_from, device, changes):
            tell(callbacks, note)
    callbacks = _with_threads(setup, callbacks)
    wrapped = distributed.wrap(model, device)  # DistributedDataParallel under torchrun or srun
    forward = _Compiled(wrapped, callbacks) if tc.compile else wrapped
    shared = train_batches.shard is not None
    grad_scaler, state = training.grad_scaler, training.state
    per_batch = [cb for cb in callbacks if cb.per_batch]
    per_step = schedule.per_step  # an `interval: step` schedule sets the lr of every step
    min_delta = tc.early_stopping.min_delta if tc.early_stopping else 0.0

    try:
        for cb in callbacks:
            cb.on_fit_start(training)
        for epoch in range(state.epoch + 1, tc.epochs + 1):
            if state.stopped_early:
                break
            for cb in callbacks:
                cb.on_epoch_start(training, epoch)
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            model.train()
            running = training.running = RunningLoss(torch.zeros((), device=device))
            gathered = Gathered()  # this epoch's predictions, for train_<metric>: read once, at the end
            for b, (xb, yb, wb) in enumerate(train_batches.weighted_epoch(epoch)):
                with autocast(device, tc.precision):
                    out = forward(xb)
                    # sum(w l) / sum(w); data-parallel: over the global batch (Batches.denominator)
                    denominator = train_batches.denominator(wb)
                    loss = loss_fn(out, yb) if wb is None else loss_fn(out, yb, wb, denominator=denominator)
                optimizer.zero_grad(set_to_none=True)
                scaled = loss * train_batches.share(b, len(xb)) if shared and wb is None else loss  # Batches.share
                grad_scaler.scale(scaled).backward()  # fp16 scales the loss; otherwise these calls pass through
                if tc.clip_grad_norm or tc.clip_grad_value:
                    grad_scaler.unscale_(optimizer)
                    _clip(model, tc.clip_grad_norm, tc.clip_grad_value)
                grad_scaler.step(optimizer)  # fp16: skips steps whose gradients overflowed
                grad_scaler.update()
                if per_step:
                    schedule.step_batch()
                running.add(loss, len(xb), None if wb is None else wb.sum(), denominator)
                if tc.train_metrics:
                    gathered.add(out.detach(), yb, wb)
                for cb in per_batch:
                    cb.on_train_batch_end(training, b)

            total, rows = distributed.sum_loss(running.total, running.denominator)
            row = {"epoch": epoch, "lr": lr, "train_loss": _train_loss(total, rows, epoch)}
            if tc.train_metrics:
                train_out = distributed.gather(gathered.outputs(task, model.head))
                train_out.weight = setup.data.without_class_factors(train_out.weight, train_out.y_true)
                row.update({f"train_{k}": v for k, v in compute(cfg.metric_names, train_out).items()})
                del gathered, train_out  # free the epoch's outputs before validation
            if val_batches is not None:
                val_loss, val_out = distributed.evaluate(evaluate_batches, model, loss_fn, val_batches,
                                                         precision=tc.precision)
                row["val_loss"] = val_loss
                row.update({f"val_{k}": v for k, v in compute(cfg.metric_names, val_out).items()})
            row["epoch_seconds"] = time.perf_counter() - started

            state.history.append(row)
            state.epoch = epoch
            training.improved = state.track(epoch, row[monitor], training.mode, min_delta)
            training.schedule.step(row)
            for cb in callbacks:
                cb.on_epoch_end(training, row)
            state.stopped_early = distributed.decided_on_rank_zero(state.stopped_early)
    finally:
        for cb in callbacks:
            cb.on_fit_end(training)
    return state


def _with_threads(setup: Setup, callbacks: list[Callback]) -> list[Callback]:
    """The callbacks, led by `auto` threads' tuner when it has a choice to make; the thread count said first
    (the tuner says its own once it has timed the steps)."""
    threads = setup.threads
    if threads is None:
        return list(callbacks)
    if threads.tuner is None:
        tell(callbacks, threads.line())
        return list(callbacks)
    threads.tuner.notify = lambda text: tell(callbacks, text)
    return [threads.tuner, *callbacks]


def tell(callbacks: list[Callback], text: str) -> None:
    """A line for the user (what a resume changed, a warning), to every callback's on_note."""
    for cb in callbacks:
        cb.on_note(text)


def monitored(setup: Setup) -> str:
    """The value that picks the best checkpoint: the early-stopping monitor, else val_loss if any."""
    cfg = setup.config
    if cfg.train.early_stopping or "val" in setup.data.splits:
        return cfg.monitor
    return "train_loss"


def memory_format(option, model) -> torch.memory_format:
    """channels_last for convolutional models, by default on every device: oneDNN's and cuDNN's convolutions
    and torch's CPU max-pool are faster on NHWC (benchmarks/RESULTS.md)."""
    use = option is True or option == "auto"
    return torch.channels_last if use and convolutional(model) else torch.contiguous_format


def _train_loss(total: torch.Tensor, rows, epoch: int) -> float:
    train_loss = (total / rows).item()  # the epoch's one host sync
    if not math.isfinite(train_loss):
        raise TrainingFailed(f"the training loss became {train_loss} at epoch {epoch}; lower optimizer.lr, "
                             "set train.clip_grad_norm, or check the data's scale (data.scale: standard)")
    return train_loss


def _clip(model: torch.nn.Module, norm: float | None, value: float | None) -> None:
    if norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), norm)
    if value:
        torch.nn.utils.clip_grad_value_(model.parameters(), value)


class _Compiled:
    """torch.compile(model), falling back to the model itself, with a warning, where compiling fails.

    Compiling happens at the first call, so that is where a missing compiler or an unsupported
    platform shows up; later recompiles (the last, smaller batch) fall back per graph by themselves.
    """

    def __init__(self, model, callbacks: list[Callback]):
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        self.model, self.callbacks, self.works = model, callbacks, None
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
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            tell(self.callbacks, f"warning: train.compile: torch.compile failed here ({type(exc).__name__}: "
                                 f"{first}); training without it")
            return self.model(x)
        self.works = True
        return out
