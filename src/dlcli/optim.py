"""Optimizers and per-epoch learning-rate schedules, by name.

    optimizer: adam                                   # or {name: adam, lr: 0.001, weight_decay: 0.0}
    schedule: {name: exponential, gamma: 0.95, warmup_epochs: 3}

Keras spellings are accepted where they differ from PyTorch's: `learning_rate` for `lr`, `epsilon`
for `eps`, `rho` for RMSprop's `alpha`, `beta_1`/`beta_2` for Adam's `betas`.

Every schedule counts epochs from 0 and sets the learning rate of the epoch about to run; `lr0` is
the optimizer's own lr (each param group's, when there are several). Any schedule takes
`warmup_epochs: W`: for the first W epochs the lr rises linearly, lr_e = lr0 * (e + 1) / W (so
epoch W - 1 runs at lr0), and the schedule itself then starts at its epoch 0 at epoch W.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, AliasChoices, Field
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .activations import split_spec
from .errors import SpecError
from .registry import Entry, Params, Registry, did_you_mean

OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]  # a decay rate in [0, 1): momentum, betas, alpha
LearningRate = Annotated[float, Field(gt=0, validation_alias=AliasChoices("lr", "learning_rate"))]
Epsilon = Annotated[float, Field(gt=0, validation_alias=AliasChoices("eps", "epsilon"))]


def _entry(registry: Registry, name: str) -> Entry:
    try:
        return registry.get(name)
    except KeyError as exc:
        raise SpecError(exc.args[0], key="name") from None


# --------------------------------------------------------------------------------------------------
# Optimizers: builder(params, **validated) -> torch.optim.Optimizer
# --------------------------------------------------------------------------------------------------


def build_optimizer(spec: str | dict, params: Any) -> torch.optim.Optimizer:
    """The optimizer of `spec` ("adam" or {name: adam, lr: ...}) over `params` (tensors or param groups)."""
    name, rest = split_spec(spec)
    entry = _entry(OPTIMIZERS, name)
    validated = entry.params(**rest)
    return entry.builder(params, **validated.model_dump())


@OPTIMIZERS.register("sgd", "SGD")
def sgd(
    params: Any,
    *,
    lr: LearningRate = 0.01,
    momentum: Fraction = 0.0,
    nesterov: bool = False,
    weight_decay: NonNegFloat = 0.0,
) -> torch.optim.Optimizer:
    """Stochastic gradient descent: v = momentum * v + g; w -= lr * v.

    With nesterov: w -= lr * (g + momentum * v). weight_decay adds weight_decay * w to g.
    """
    if nesterov and momentum <= 0:
        raise SpecError("nesterov: true needs momentum > 0 (e.g. momentum: 0.9)", key="nesterov")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def _betas(
    betas: tuple[float, float] | None, beta_1: float | None, beta_2: float | None
) -> tuple[float, float]:
    if betas is not None and (beta_1 is not None or beta_2 is not None):
        raise SpecError("give either betas: [b1, b2] or Keras' beta_1/beta_2, not both", key="betas")
    b1, b2 = betas if betas is not None else (0.9, 0.999)
    return (b1 if beta_1 is None else beta_1, b2 if beta_2 is None else beta_2)


@OPTIMIZERS.register("adam", "Adam")
def adam(
    params: Any,
    *,
    lr: LearningRate = 0.001,
    betas: tuple[Fraction, Fraction] | None = None,
    beta_1: Fraction | None = None,
    beta_2: Fraction | None = None,
    eps: Epsilon = 1e-8,
    amsgrad: bool = False,
    weight_decay: NonNegFloat = 0.0,
) -> torch.optim.Optimizer:
    """Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w -= lr * m_hat / (sqrt(v_hat) + eps).

    betas defaults to [0.9, 0.999]; weight_decay adds weight_decay * w to g (L2; see adamw).
    """
    return torch.optim.Adam(
        params,
        lr=lr,
        betas=_betas(betas, beta_1, beta_2),
        eps=eps,
        amsgrad=amsgrad,
        weight_decay=weight_decay,
    )


@OPTIMIZERS.register("adamw", "AdamW")
def adamw(
    params: Any,
    *,
    lr: LearningRate = 0.001,
    betas: tuple[Fraction, Fraction] | None = None,
    beta_1: Fraction | None = None,
    beta_2: Fraction | None = None,
    eps: Epsilon = 1e-8,
    amsgrad: bool = False,
    weight_decay: NonNegFloat = 0.01,
) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay: w -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * w)."""
    return torch.optim.AdamW(
        params,
        lr=lr,
        betas=_betas(betas, beta_1, beta_2),
        eps=eps,
        amsgrad=amsgrad,
        weight_decay=weight_decay,
    )


@OPTIMIZERS.register("rmsprop", "RMSprop")
def rmsprop(
    params: Any,
    *,
    lr: LearningRate = 0.001,
    alpha: Annotated[Fraction, Field(validation_alias=AliasChoices("alpha", "rho"))] = 0.99,
    eps: Epsilon = 1e-8,
    momentum: Fraction = 0.0,
    centered: bool = False,
    weight_decay: NonNegFloat = 0.0,
) -> torch.optim.Optimizer:
    """RMSprop: v = alpha v + (1-alpha) g^2; w -= lr * g / (sqrt(v) + eps). Keras calls alpha `rho`."""
    return torch.optim.RMSprop(
        params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered, weight_decay=weight_decay
    )


@OPTIMIZERS.register("adagrad", "Adagrad")
def adagrad(
    params: Any,
    *,
    lr: LearningRate = 0.01,
    lr_decay: NonNegFloat = 0.0,
    eps: Epsilon = 1e-10,
    initial_accumulator_value: NonNegFloat = 0.0,
    weight_decay: NonNegFloat = 0.0,
) -> torch.optim.Optimizer:
    """Adagrad: s += g^2; w -= lr / (1 + (t-1) lr_decay) * g / (sqrt(s) + eps)."""
    return torch.optim.Adagrad(
        params,
        lr=lr,
        lr_decay=lr_decay,
        eps=eps,
        initial_accumulator_value=initial_accumulator_value,
        weight_decay=weight_decay,
    )


# --------------------------------------------------------------------------------------------------
# Schedules: builder(optimizer, epochs, **validated) -> a rule (base_lr, epoch) -> lr, or a Plateau.
# `epochs` is the number of epochs the schedule itself runs (after warmup).
# --------------------------------------------------------------------------------------------------

LrRule = Callable[[float, int], float]


@dataclass
class Plateau:
    """What reduce_on_plateau builds: a stateful torch scheduler fed with metrics[monitor]."""

    monitor: str
    scheduler: ReduceLROnPlateau


class ScheduleCommon(Params):
    """Keys every schedule accepts, handled by build_schedule rather than by each schedule."""

    warmup_epochs: NonNegInt = 0


SCHEDULE_COMMON_KEYS = frozenset(ScheduleCommon.model_fields)

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
        """Restore a saved state; works whether the optimizer's state is loaded before or after."""
        self.epoch = int(state["epoch"])
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        if self._plateau is not None and state.get("plateau") is not None:
            self._plateau.scheduler.load_state_dict(state["plateau"])
        for group, lr in zip(self.optimizer.param_groups, state["lrs"], strict=True):
            group["lr"] = float(lr)
        self._apply()

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, epoch={self.epoch}, lr={self.lr:.4g})"


def build_schedule(spec: str | dict | None, optimizer: torch.optim.Optimizer, *, epochs: int) -> Schedule:
    """The schedule of `spec` (None = constant) over `optimizer`, for a run of `epochs` epochs.

    Build it right after the optimizer, before loading any saved state into either.
    """
    name, rest = split_spec("constant" if spec is None else spec)
    entry = _entry(SCHEDULES, name)
    common = ScheduleCommon(**{key: rest.pop(key) for key in SCHEDULE_COMMON_KEYS if key in rest})
    validated = entry.params(**rest)
    main_epochs = max(epochs - common.warmup_epochs, 1)
    rule = entry.builder(optimizer, main_epochs, **validated.model_dump())
    return Schedule(optimizer, rule, warmup_epochs=common.warmup_epochs, name=entry.name)


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
