"""Optimizers, by name: `optimizer: adam` or `{name: adam, lr: 0.001, weight_decay: 0.0}`.

Keras spellings are accepted where they differ from PyTorch's: `learning_rate` for `lr`, `epsilon`
for `eps`, `rho` for RMSprop's `alpha`, `beta_1`/`beta_2` for Adam's `betas`.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import AliasChoices, Field

from ..errors import SpecError
from ..registry import Registry

# Keras' `decay` was a learning-rate decay, not weight decay: the way to say it here.
DECAY_HINT = ("Keras' decay is a learning-rate decay, lr0 / (1 + decay * step); here it is a schedule: "
              "schedule: {name: inverse_time, decay_rate: 0.01, decay_steps: 1, interval: step} "
              "(weight_decay is something else: a penalty on the weights)")
OPTIMIZERS = Registry("optimizer", hints={"decay": DECAY_HINT})

NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]  # a decay rate in [0, 1): momentum, betas, alpha
LearningRate = Annotated[float, Field(gt=0, validation_alias=AliasChoices("lr", "learning_rate"))]
Epsilon = Annotated[float, Field(gt=0, validation_alias=AliasChoices("eps", "epsilon"))]


def build_optimizer(spec: str | dict, params: Any) -> torch.optim.Optimizer:
    """The optimizer of `spec` ("adam" or {name: adam, lr: ...}) over `params` (tensors or param groups)."""
    entry, validated, _ = OPTIMIZERS.parse(spec)
    return entry.builder(params, **validated)


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
