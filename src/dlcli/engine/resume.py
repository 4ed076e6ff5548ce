"""Resuming a run: which config changes a resume takes, and a checkpoint's state restored under them.

A resume may change how training goes on: the optimizer, the schedule, the epochs, early stopping's
patience, clipping, the device and evaluation batch size. It may not change what is trained (the
model, the data, the task, the loss, the seed, the batch order): the checkpoint would no longer
describe the run. `changes(old, new)` sorts the differences; `restore` loads a checkpoint and then
applies the allowed ones, so `optimizer.lr=1e-4` on resume trains at 1e-4 (metrics.csv's `lr` shows it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import Config
from ..errors import ConfigError, Problem
from ..messages import key_path
from ..nn.optimizers import build_optimizer
from ..runs.checkpoint import load_checkpoint, restore_rng
from .state import State, Training

# What a resume may change (key paths, by prefix); everything else is refused.
RESUMABLE = ("optimizer", "schedule", "train.epochs", "train.early_stopping.patience",
             "train.early_stopping.min_delta", "train.clip_grad_norm", "train.clip_grad_value", "train.device",
             "train.eval_batch_size", "train.threads", "train.compile", "train.tensorboard", "train.train_metrics", "data.workers",
             "distributed")
_WHAT = {"model": "the network the checkpoint holds", "data": "the data the run was trained on",
         "task": "the task", "loss": "the loss being minimised", "seed": "the run's random streams",
         "metrics": "the columns of metrics.csv", "name": "the run's name",
         "train.early_stopping": "which value picks best.pt", "train": "the batches the checkpoint's epochs were trained on"}


@dataclass
class Changes:
    """The keys a resume changes, as dotted key paths, and what follows from them."""

    keys: list[str] = field(default_factory=list)
    old: Config | None = None

    def touches(self, prefix: str) -> bool:
        return any(k == prefix or k.startswith((prefix + ".", prefix + "[")) for k in self.keys)


def changes(old: Config, new: Config, overrides: list[str] | tuple[str, ...] = (), where: str = "--resume") -> Changes:
    """The differences between a run's config and the one a resume asks for; ConfigError (exit 2) for each
    key a resume may not change, naming the override and what to do instead."""
    keys = _diff(old.resolved(), new.resolved(), ())
    given = {o.partition("=")[0].strip(): o for o in overrides}
    problems = []
    for key in keys:
        if key.startswith(RESUMABLE) and _allowed_switch(key, old, new):
            continue
        what = next(v for k, v in _WHAT.items() if key == k or key.startswith((k + ".", k + "[")))
        item = next((o for k, o in given.items() if key.startswith(k) or k.startswith(key)), None)
        problems.append(Problem(key, f"a resume cannot change {what}; start a new run instead: "
                                     f"dlcli train CONFIG {item or key + '=...'}"))
    if problems:
        raise ConfigError(problems, where)
    return Changes(keys, old)


def _allowed_switch(key: str, old: Config, new: Config) -> bool:
    """Turning early stopping on or off is allowed when best.pt's monitored value stays the same."""
    if key != "train.early_stopping":
        return True
    return old.monitor == new.monitor


def _diff(old, new, path: tuple) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in [*old, *(k for k in new if k not in old)]:
            out += _diff(old.get(k), new.get(k), (*path, k))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [k for i, (a, b) in enumerate(zip(old, new)) for k in _diff(a, b, (*path, i))]
    return [] if old == new else [key_path(path)]


def restore(training: Training, checkpoint: Path, device: torch.device, changed: Changes | None = None) -> list[str]:
    """A checkpoint's model, optimizer, schedule, gradient scaler, state and RNG states into `training`,
    then the changes a resume asked for; returns a line per change for the user."""
    changed = changed or Changes()
    saved = load_checkpoint(checkpoint, device)
    training.model.load_state_dict(saved["model"])
    notes, schedule = [], dict(saved["schedule"])
    if changed.touches("optimizer"):
        was = build_optimizer(changed.old.optimizer, [torch.zeros(1, requires_grad=True)])
        new = [_hyper(g) for g in training.optimizer.param_groups]  # as the resume's config builds them
        old = [_hyper(g) for g in was.param_groups] * len(new)
        if type(training.optimizer) is not type(was):
            notes.append("resume: a new optimizer starts afresh (the old one's moment estimates do not carry over)")
        else:
            training.optimizer.load_state_dict(saved["optimizer"])
            for group, n, o in zip(training.optimizer.param_groups, new, old):
                group.update({k: v for k, v in n.items() if o.get(k) != v})  # what the resume changed
        if notes or any(n["lr"] != o["lr"] for n, o in zip(new, old)):  # the schedule goes on from the new lr
            schedule["base_lrs"] = schedule["lrs"] = [g["lr"] for g in new]
    else:
        training.optimizer.load_state_dict(saved["optimizer"])
    training.schedule.load_state_dict(schedule)
    if training.grad_scaler.is_enabled() and saved.get("grad_scaler"):
        training.grad_scaler.load_state_dict(saved["grad_scaler"])
    training.state = State(**saved["state"])
    if training.state.stopped_early and (changed.touches("train.early_stopping") or changed.touches("train.epochs")):
        training.state.stopped_early = False  # told to go on: early stopping judges again, with its new patience
    restore_rng(saved["rng"], training.generator)
    training.resumed = True
    return notes


def _hyper(group: dict) -> dict:
    return {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
