"""Learning-rate schedules, by name: `schedule: {name: exponential, gamma: 0.95, warmup_epochs: 3}`.

Every schedule has an `interval`: `epoch` counts epochs from 0 and sets the lr of the epoch about to
run; `step` counts optimizer steps from 0 and sets the lr of the step about to run, as Keras'
schedules do (ExponentialDecay, InverseTimeDecay and PiecewiseConstantDecay count steps by default,
the PyTorch-named ones epochs). `lr0` is the optimizer's own lr (each param group's, when there are
several). Any schedule takes `warmup_epochs: W`: for the first W epochs the lr rises linearly,
lr_e = lr0 * (e + 1) / W (so epoch W - 1 runs at lr0), and the schedule itself then starts at its
step or epoch 0 at epoch W.

A builder takes the optimizer and the number of epochs or steps the schedule itself runs (after
warmup) and returns a rule (base_lr, t) -> lr, or a Plateau. Its `interval` parameter is read by
build_schedule, which counts t.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import AfterValidator, AliasChoices, Field, ValidationInfo
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..errors import SpecError
from ..messages import did_you_mean
from ..registry import Params, Registry

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Interval = Literal["epoch", "step"]  # what t counts: epochs, or optimizer steps (batches)


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

_MAXIMIZED = ("acc", "auc", "f1", "precision", "recall", "r2", "rejection", "efficiency", "ams")


def monitor_mode(monitor: str, mode: str = "auto") -> Literal["min", "max"]:
    """`mode`, with "auto" resolved: "max" for accuracy/auc/f1/precision/recall/r2-like names, else "min"."""
    if mode != "auto":
        return "max" if mode == "max" else "min"
    return "max" if any(hint in monitor.lower() for hint in _MAXIMIZED) else "min"


class Schedule:
    """A learning-rate schedule, per epoch or per optimizer step, with an optional linear warmup.

    Right after construction and after each step() the optimizer's param groups hold the lr of the
    epoch about to run; a per-step schedule also sets each step's after step_batch(). The state of a
    closed-form schedule is its epoch and step counters alone.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        rule: LrRule | Plateau,
        *,
        warmup_epochs: int = 0,
        name: str = "",
        per_step: bool = False,
    ):
        self.optimizer = optimizer
        self.name = name
        self.warmup_epochs = warmup_epochs
        self.per_step = per_step  # the rule counts optimizer steps: the loop calls step_batch()
        self.epoch = 0  # the epoch about to run
        self.steps = 0  # optimizer steps taken since warmup ended (a per-step rule's t)
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
                group["lr"] = self._rule(base, self.steps if self.per_step else e - warmup)
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

    def step_batch(self) -> None:
        """Call after each optimizer step of a per-step schedule: sets the next step's lr (not in warmup)."""
        if self.epoch < self.warmup_epochs:
            return
        self.steps += 1
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self._rule(base, self.steps)

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
            "steps": self.steps,
            "base_lrs": list(self.base_lrs),
            "lrs": [float(group["lr"]) for group in self.optimizer.param_groups],
            "plateau": self._plateau.scheduler.state_dict() if self._plateau else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state; works whether the optimizer's state is loaded before or after.

        A resume may have changed the schedule: the epoch counter, base lrs and a plateau's progress
        carry over, and the settings (factor, patience, the rule) are today's."""
        self.epoch = int(state["epoch"])
        self.steps = int(state.get("steps", 0))  # checkpoints from before per-step schedules have none
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


def build_schedule(spec: str | dict | None, optimizer: torch.optim.Optimizer, *, epochs: int,
                   steps_per_epoch: int = 1) -> Schedule:
    """The schedule of `spec` (None = constant) over `optimizer`, for a run of `epochs` epochs of
    `steps_per_epoch` optimizer steps.

    Build it right after the optimizer, before loading any saved state into either.
    """
    entry, validated, common = SCHEDULES.parse("constant" if spec is None else spec)
    warmup, per_step = common["warmup_epochs"], validated.pop("interval") == "step"
    length = max(epochs - warmup, 1) * (steps_per_epoch if per_step else 1)
    rule = entry.builder(optimizer, length, **validated)
    return Schedule(optimizer, rule, warmup_epochs=warmup, name=entry.name, per_step=per_step)


@SCHEDULES.register("constant", "none")
def constant(optimizer: torch.optim.Optimizer, length: int, *, interval: Interval = "epoch") -> LrRule:
    """lr0 throughout."""
    return lambda base, e: base


@SCHEDULES.register("step", "StepLR")
def step_lr(
    optimizer: torch.optim.Optimizer, length: int, *, step_size: PosInt, gamma: PosFloat = 0.1,
    interval: Interval = "epoch",
) -> LrRule:
    """lr0 * gamma^(t // step_size)."""
    return lambda base, e: base * gamma ** (e // step_size)


def _increasing(milestones: list[int]) -> list[int]:
    if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
        raise ValueError(f"must be strictly increasing, got {milestones}")
    return milestones


@SCHEDULES.register("multistep", "MultiStepLR")
def multistep(
    optimizer: torch.optim.Optimizer,
    length: int,
    *,
    milestones: Annotated[list[PosInt], Field(min_length=1), AfterValidator(_increasing)],
    gamma: PosFloat = 0.1,
    interval: Interval = "epoch",
) -> LrRule:
    """lr0 * gamma^(number of milestones <= t)."""
    return lambda base, e: base * gamma ** sum(m <= e for m in milestones)


@SCHEDULES.register("exponential", "ExponentialLR",
                    hints={"decay_rate": "that is exponential_decay (Keras' ExponentialDecay); exponential takes gamma, "
                                         "lr0 * gamma^t",
                           "decay_steps": "that is exponential_decay (Keras' ExponentialDecay); exponential takes "
                                          "gamma, lr0 * gamma^t"})
def exponential(
    optimizer: torch.optim.Optimizer, length: int, *, gamma: Annotated[float, Field(gt=0, le=1)] = 0.95,
    interval: Interval = "epoch",
) -> LrRule:
    """lr0 * gamma^t."""
    return lambda base, e: base * gamma**e


InitialLr = PosFloat | None  # Keras' initial_learning_rate; None: the optimizer's lr


@SCHEDULES.register("exponential_decay", "ExponentialDecay")
def exponential_decay(
    optimizer: torch.optim.Optimizer,
    length: int,
    *,
    decay_steps: PosInt,
    decay_rate: PosFloat,
    staircase: bool = False,
    initial_learning_rate: InitialLr = None,
    interval: Interval = "step",
) -> LrRule:
    """lr0 * decay_rate^(t / decay_steps), t in optimizer steps: Keras' ExponentialDecay.

    staircase floors t / decay_steps; initial_learning_rate (Keras') replaces the optimizer's lr as lr0.
    """

    def rule(base: float, t: int) -> float:
        return (initial_learning_rate or base) * decay_rate ** (t // decay_steps if staircase else t / decay_steps)

    return rule


@SCHEDULES.register("inverse_time", "InverseTimeDecay", "inverse_time_decay")
def inverse_time(
    optimizer: torch.optim.Optimizer,
    length: int,
    *,
    decay_rate: NonNegFloat = 0.5,
    decay_steps: PosInt = 1,
    staircase: bool = False,
    initial_learning_rate: InitialLr = None,
    interval: Interval = "step",
) -> LrRule:
    """lr0 / (1 + decay_rate * t / decay_steps), t in optimizer steps: Keras' InverseTimeDecay.

    staircase floors t / decay_steps; with decay_steps 1 this is Keras' old `decay` argument.
    """

    def rule(base: float, t: int) -> float:
        return (initial_learning_rate or base) / (1 + decay_rate * (t // decay_steps if staircase else t / decay_steps))

    return rule


def _one_more_value(values: list[float], info: ValidationInfo) -> list[float]:
    boundaries = info.data.get("boundaries")
    if boundaries is not None and len(values) != len(boundaries) + 1:
        raise ValueError(f"must have one more entry than boundaries ({len(boundaries) + 1}), got {len(values)}")
    return values


@SCHEDULES.register("piecewise_constant", "PiecewiseConstantDecay", "piecewise_constant_decay")
def piecewise_constant(
    optimizer: torch.optim.Optimizer,
    length: int,
    *,
    boundaries: Annotated[list[NonNegInt], Field(min_length=1), AfterValidator(_increasing)],
    values: Annotated[list[PosFloat], AfterValidator(_one_more_value)],
    interval: Interval = "step",
) -> LrRule:
    """values[0] while t <= boundaries[0], values[i] while t <= boundaries[i], then values[-1]: Keras'
    PiecewiseConstantDecay, t in optimizer steps. The values are the lrs themselves (lr0 is unused)."""
    return lambda base, t: values[bisect.bisect_left(boundaries, t)]


COSINE_PERIOD = "cosine's period is t_max, in epochs or, with interval: step, in optimizer steps"


@SCHEDULES.register("cosine", "CosineAnnealingLR", "cosine_annealing", "cosine_decay",
                    hints={"decay_steps": COSINE_PERIOD, "alpha": "cosine's floor is eta_min, an lr (Keras' alpha "
                                                                  "times lr0)"})
def cosine(
    optimizer: torch.optim.Optimizer,
    length: int,
    *,
    t_max: Annotated[PosInt | None, Field(validation_alias=AliasChoices("t_max", "T_max"))] = None,
    eta_min: NonNegFloat = 0.0,
    interval: Interval = "epoch",
) -> LrRule:
    """eta_min + (lr0 - eta_min) * (1 + cos(pi * min(t, t_max) / t_max)) / 2.

    t_max defaults to the run's length after warmup (epochs, or steps); the lr stays at eta_min past t_max.
    """
    period = t_max or length

    def rule(base: float, e: int) -> float:
        return eta_min + (base - eta_min) * (1 + math.cos(math.pi * min(e, period) / period)) / 2

    return rule


def _per_epoch(interval: str) -> str:
    if interval != "epoch":
        raise ValueError(f"must be epoch: reduce_on_plateau reads a metric once per epoch, got '{interval}'")
    return interval


@SCHEDULES.register("reduce_on_plateau", "ReduceLROnPlateau", "plateau")
def reduce_on_plateau(
    optimizer: torch.optim.Optimizer,
    length: int,
    *,
    monitor: str = "val_loss",
    mode: Literal["auto", "min", "max"] = "auto",
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1,
    patience: NonNegInt = 10,
    threshold: NonNegFloat = 1e-4,
    threshold_mode: Literal["rel", "abs"] = "rel",
    cooldown: NonNegInt = 0,
    min_lr: NonNegFloat = 0.0,
    interval: Annotated[Interval, AfterValidator(_per_epoch)] = "epoch",
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
