"""Activation functions, by name: `activation: relu` or `activation: {name: leaky_relu, negative_slope: 0.1}`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, Field
from torch import nn

from ..registry import Registry

ACTIVATIONS = Registry("activation")


@ACTIVATIONS.register("linear", "identity", "none")
def linear() -> nn.Module:
    """f(x) = x (no activation)."""
    return nn.Identity()


@ACTIVATIONS.register("sigmoid", "logistic")
def sigmoid() -> nn.Module:
    """1 / (1 + e^-x); the output of a binary classifier."""
    return nn.Sigmoid()


@ACTIVATIONS.register("tanh")
def tanh() -> nn.Module:
    """(e^x - e^-x) / (e^x + e^-x)."""
    return nn.Tanh()


@ACTIVATIONS.register("relu", "ReLU")
def relu() -> nn.Module:
    """max(0, x)."""
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu", "LeakyReLU", "lrelu")
def leaky_relu(*, negative_slope: Annotated[float, Field(ge=0, validation_alias=AliasChoices("negative_slope", "alpha"))]
               = 0.01) -> nn.Module:
    """max(negative_slope * x, x), PyTorch's default 0.01 (Keras' LeakyReLU layer: 0.3); the lecture's max(0.1x, x) is
    {name: leaky_relu, negative_slope: 0.1}."""
    return nn.LeakyReLU(negative_slope)


@ACTIVATIONS.register("elu", "ELU")
def elu(*, alpha: Annotated[float, Field(gt=0)] = 1.0) -> nn.Module:
    """x for x >= 0, alpha (e^x - 1) below."""
    return nn.ELU(alpha)


@ACTIVATIONS.register("softmax", "Softmax")
def softmax() -> nn.Module:
    """e^x_i / sum_j e^x_j over the last axis; the output of a multi-class classifier."""
    return nn.Softmax(dim=-1)


@ACTIVATIONS.register("gelu", "GELU")
def gelu() -> nn.Module:
    """x * Φ(x), Φ the standard normal's distribution function."""
    return nn.GELU()


@ACTIVATIONS.register("silu", "swish", "SiLU")
def silu() -> nn.Module:
    """x * sigmoid(x)."""
    return nn.SiLU()


def build_activation(spec: Any) -> tuple[str, nn.Module]:
    """The canonical name and the module of an activation spec."""
    entry, params, _ = ACTIVATIONS.parse(spec)
    return entry.name, entry.builder(**params)
