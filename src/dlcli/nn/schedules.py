"""Per-epoch learning-rate schedules, by name: `schedule: {name: exponential, gamma: 0.95, warmup_epochs: 3}`.

Every schedule counts epochs from 0 and sets the learning rate of the epoch about to run; `lr0` is
the optimizer's own lr (each param group's, when there are several). Any schedule takes
`warmup_epochs: W`: for the first W epochs the lr rises linearly, lr_e = lr0 * (e + 1) / W (so
epoch W - 1 runs at lr0), and the schedule itself then starts at its epoch 0 at epoch W.

A builder takes the optimizer and the number of epochs the schedule itself runs (after warmup) and
returns a rule (base_lr, epoch) -> lr, or a Plateau.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import AfterValidator, AliasChoices, Field
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..errors import SpecError
from ..messages import did_you_mean
from ..registry import Params, Registry

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]


class ScheduleCommon(Params):
    """Keys every schedule accepts, handled by build_schedule rather than by each schedule."""

    warmup_epochs: NonNegInt = 0


SCHEDULES = Registry("schedule", common=ScheduleCommon)
SCHEDULE_COMMON_KEYS = SCHEDULES.common_keys

LrRule = Callable[[float, int], float]


@dataclass
class Plateau:
    """What reduce_on_plateau builds: a stateful torch scheduler fed with metrics[monitor]."""

    monitor: str
    scheduler: ReduceLROnPlateau


_PLATEAU_PROGRESS = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch", "_last_lr")

_MAXIMIZED = ("acc", "auc", "f1", "precision", "recall", "r2")


def monitor_mode(monitor: str, mode: str = "auto") -> Literal["min", "max"]:
    """`mode`, with "auto" resolved: "max" for accuracy/auc/f1/precision/recall/r2-like names, else "min"."""
    if mode != "auto":
        return "max" if mode == "max" else "min"
    return "max" if any(hint in monitor.lower() for hint in _MAXIMIZED) else "min"


class Schedule:
    """Per-epoch learning-rate schedule with an optional linear warmup.

    Right after construction and after each step() the optimizer's param groups hold the lr of the
    epoch about to run. The state of a closed-form schedule is its epoch counter alone.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        rule: LrRule | Plateau,
        *,
        warmup_epochs: int = 0,
        name: str = "",
    ):
        self.optimizer = optimizer
        self.name = name
        self.warmup_epochs = warmup_epochs
        self.epoch = 0  # the epoch about to run
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self._plateau = rule if isinstance(rule, Plateau) else None
        self._rule = None if isinstance(rule, Plateau) else rule
        self.monitor: str | None = self._plateau.monitor if self._plateau else None
        self._apply()

    def _apply(self) -> None:
        """Set each param group's lr for self.epoch (a plateau schedule past warmup keeps its own lr)."""
        e, warmup = self.epoch, self.warmup_epochs
        if self._plateau is not None and e > warmup:
            return
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            if e < warmup:
                group["lr"] = base * (e + 1) / warmup
            elif self._rule is not None:
                group["lr"] = self._rule(base, e - warmup)
            else:
                group["lr"] = base  # plateau, first epoch after warmup

    def step(self, metrics: dict[str, float] | None = None) -> None:
        """Call once after each epoch; reduce_on_plateau reads metrics[self.monitor]."""
        finished = self.epoch
        if self._plateau is not None:
            value = self._monitored(metrics)
            if finished >= self.warmup_epochs:  # warmup epochs are not fed to the plateau
                self._plateau.scheduler.step(value)
        self.epoch += 1
        self._apply()

    def _monitored(self, metrics: dict[str, float] | None) -> float:
        assert self.monitor is not None
        available = sorted(metrics or {})
        if self.monitor not in available:
            raise SpecError(
                f"reduce_on_plateau monitors '{self.monitor}', which is not among this epoch's metrics "
                f"({', '.join(available) or 'none'}){did_you_mean(self.monitor, available)}",
                key="monitor",
            )
        return float(metrics[self.monitor])  # type: ignore[index]

    @property
    def lr(self) -> float:
        """The lr of the next epoch (of the first param group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {
            "name": self.name,
            "epoch": self.epoch,
            "base_lrs": list(self.base_lrs),
            "lrs": [float(group["lr"]) for group in self.optimizer.param_groups],
            "plateau": self._plateau.scheduler.state_dict() if self._plateau else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state; works whether the optimizer's state is loaded before or after.

        A resume may have changed the schedule: the epoch counter, base lrs and a plateau's progress
        carry over, and the settings (factor, patience, the rule) are today's."""
        self.epoch = int(state["epoch"])
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        if self._plateau is not None and state.get("plateau") is not None:  # its progress, under today's settings
            plateau = self._plateau.scheduler.state_dict()
            plateau.update({k: state["plateau"][k] for k in _PLATEAU_PROGRESS if k in state["plateau"]})
            self._plateau.scheduler.load_state_dict(plateau)
        for group, lr in zip(self.optimizer.param_groups, state["lrs"], strict=True):
            group["lr"] = float(lr)
        self._apply()

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, epoch={self.epoch}, lr={self.lr:.4g})"


def build_schedule(spec: str | dict | None, optimizer: torch.optim.Optimizer, *, epochs: int) -> Schedule:
    """The schedule of `spec` (None = constant) over `optimizer`, for a run of `epochs` epochs.

    Build it right after the optimizer, before loading any saved state into either.
    """
    entry, validated, common = SCHEDULES.parse("constant" if spec is None else spec)
    warmup = common["warmup_epochs"]
    rule = entry.builder(optimizer, max(epochs - warmup, 1), **validated)
    return Schedule(optimizer, rule, warmup_epochs=warmup, name=entry.name)


@SCHEDULES.register("constant", "none")
def constant(optimizer: torch.optim.Optimizer, epochs: int) -> LrRule:
    """lr0 throughout."""
    return lambda base, e: base


@SCHEDULES.register("step", "StepLR")
def step_lr(
    optimizer: torch.optim.Optimizer, epochs: int, *, step_size: PosInt, gamma: PosFloat = 0.1
) -> LrRule:
    """lr0 * gamma^(e // step_size)."""
    return lambda base, e: base * gamma ** (e // step_size)


def _increasing(milestones: list[int]) -> list[int]:
    if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
        raise ValueError("milestones must be strictly increasing")
    return milestones


@SCHEDULES.register("multistep", "MultiStepLR")
def multistep(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    milestones: Annotated[list[PosInt], Field(min_length=1), AfterValidator(_increasing)],
    gamma: PosFloat = 0.1,
) -> LrRule:
    """lr0 * gamma^(number of milestones <= e)."""
    return lambda base, e: base * gamma ** sum(m <= e for m in milestones)


@SCHEDULES.register("exponential", "ExponentialLR", "exponential_decay")
def exponential(
    optimizer: torch.optim.Optimizer, epochs: int, *, gamma: Annotated[float, Field(gt=0, le=1)] = 0.95
) -> LrRule:
    """lr0 * gamma^e."""
    return lambda base, e: base * gamma**e


@SCHEDULES.register("inverse_time", "InverseTimeDecay", "inverse_time_decay")
def inverse_time(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    decay_rate: NonNegFloat = 0.5,
    decay_steps: PosInt = 1,
    staircase: bool = False,
) -> LrRule:
    """lr0 / (1 + decay_rate * e / decay_steps), Keras' InverseTimeDecay counted in epochs.

    With staircase, e / decay_steps is floored.
    """

    def rule(base: float, e: int) -> float:
        t = e // decay_steps if staircase else e / decay_steps
        return base / (1 + decay_rate * t)

    return rule


@SCHEDULES.register("cosine", "CosineAnnealingLR", "cosine_annealing", "cosine_decay")
def cosine(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    t_max: Annotated[PosInt | None, Field(validation_alias=AliasChoices("t_max", "T_max"))] = None,
    eta_min: NonNegFloat = 0.0,
) -> LrRule:
    """eta_min + (lr0 - eta_min) * (1 + cos(pi * min(e, t_max) / t_max)) / 2.

    t_max defaults to the number of epochs after warmup; the lr stays at eta_min past t_max.
    """
    period = t_max or epochs

    def rule(base: float, e: int) -> float:
        return eta_min + (base - eta_min) * (1 + math.cos(math.pi * min(e, period) / period)) / 2

    return rule


@SCHEDULES.register("reduce_on_plateau", "ReduceLROnPlateau", "plateau")
def reduce_on_plateau(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    monitor: str = "val_loss",
    mode: Literal["auto", "min", "max"] = "auto",
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1,
    patience: NonNegInt = 10,
    threshold: NonNegFloat = 1e-4,
    threshold_mode: Literal["rel", "abs"] = "rel",
    cooldown: NonNegInt = 0,
    min_lr: NonNegFloat = 0.0,
) -> Plateau:
    """lr *= factor (not below min_lr) once metrics[monitor] has not improved for more than `patience` epochs.

    Improving means beating the best value by `threshold` (relative, or absolute with
    threshold_mode: abs); mode auto maximizes accuracy/auc/f1/precision/recall/r2 and minimizes the
    rest. After a reduction, `cooldown` epochs pass before bad epochs are counted again (PyTorch's
    ReduceLROnPlateau: patience 0 reduces on the first epoch without improvement).
    """
    scheduler = ReduceLROnPlateau(
        optimizer,
        mode=monitor_mode(monitor, mode),
        factor=factor,
        patience=patience,
        threshold=threshold,
        threshold_mode=threshold_mode,
        cooldown=cooldown,
        min_lr=min_lr,
    )
    return Plateau(monitor, scheduler)
