"""What is being trained, and how far it has got: the objects the loop and its callbacks share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .setup import Setup


@dataclass
class State:
    """What a checkpoint holds besides model, optimizer and schedule: enough to resume exactly."""

    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the monitored value last improved
    stopped_early: bool = False

    def track(self, epoch: int, value: float, mode: str, min_delta: float) -> bool:
        """Record an epoch's monitored value; whether it beat the best so far by more than min_delta."""
        improved = self.best_value is None or _better(value, self.best_value, mode, min_delta)
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved


def _better(value: float, best: float, mode: str, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclass
class RunningLoss:
    """The epoch's train loss so far: a sum kept on the device and the rows it covers. `mean()` makes the
    host wait for the device, so the loop reads it once per epoch and the progress bar a few times a second."""

    total: torch.Tensor
    rows: int = 0
    weight: torch.Tensor | None = None  # with event weights: their sum so far (the mean's denominator)

    def add(self, loss: torch.Tensor, rows: int, weight: torch.Tensor | None = None,
            denominator: torch.Tensor | None = None) -> None:
        """A batch's mean loss over `rows` rows; with event weights, its weighted mean and the weights' sum (and
        the divisor the loss used in place of that sum, under data-parallel training)."""
        if weight is None:
            self.total.add_(loss.detach(), alpha=rows)
        else:
            self.total.add_(loss.detach() * (weight if denominator is None else denominator))
            self.weight = weight.detach().clone() if self.weight is None else self.weight + weight.detach()
        self.rows += rows

    @property
    def denominator(self):
        return self.weight if self.weight is not None else max(self.rows, 1)

    def mean(self) -> float:
        return (self.total / self.denominator).item()


@dataclass
class Training:
    """One run's training: its setup, the optimizer and schedule built for it, and its state."""

    setup: Setup
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object  # nn.schedules.Schedule
    grad_scaler: torch.amp.GradScaler
    generator: torch.Generator  # the train split's batch order
    batches_per_epoch: int
    monitor: str  # the value that picks the best checkpoint
    mode: str  # min | max
    state: State = field(default_factory=State)
    resumed: bool = False
    improved: bool = False  # whether the epoch just ended improved the monitored value
    running: RunningLoss | None = None  # the epoch under way's train loss
