"""Layers by name, with shape inference: `{type: conv2d, filters: 32, kernel_size: 3, activation: relu}`.

Each layer builder takes the input shape (channels first, without the batch axis) and its
parameters, and returns the module and the output shape, so every layer infers its input size from
the previous one and a misfit is reported as `model.layers[i]` before anything runs. `display` is
the layer's Keras class name, which the model summary shows.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch
from pydantic import AliasChoices, Field
from torch import nn

from ..errors import SpecError
from ..messages import did_you_mean, normalize
from ..registry import Problems, Registry, validate_params
from .activations import ACTIVATIONS


class LayerRegistry(Registry):
    """Layers are written `{type: dense, units: 8, activation: relu}`: `type` names the entry, and any layer
    takes an `activation:` spec; `{type: relu}` (an activation's name as the type) is an activation layer."""

    def check(self, spec: Any, where: tuple = ()) -> tuple[Any, Problems]:
        if not isinstance(spec, dict) or "type" not in spec:
            return spec, [(where, f"a layer must be a mapping with a type, e.g. {{type: dense, units: 64}}, "
                                  f"got {spec!r}")]
        params = dict(spec)
        kind = params.pop("type")
        problems: Problems = []
        if kind not in self and kind in ACTIVATIONS:
            # `{type: relu}` or `{type: LeakyReLU, negative_slope: 0.1}`: an activation layer.
            params = {"activation": {"name": kind, **params} if params else kind}
            kind = "activation"
        if normalize(str(kind)) in ("input", "inputlayer"):  # config/checks.py takes a first one, alone
            return spec, [((*where, "type"), "Keras' Input layer is model.input_shape here; give the shape once, as "
                                             "model.input_shape or as a first {type: Input, shape: [...]} layer")]
        if kind not in self:
            names = self.names() + ACTIVATIONS.names()
            return spec, [((*where, "type"), f"unknown layer type '{kind}'{did_you_mean(str(kind), names)} "
                                             f"(choose from {', '.join(self.names())})")]
        entry = self.get(kind)
        checked: dict[str, Any] = {"type": entry.name}
        if "activation" in params:
            act, errs = ACTIVATIONS.check(params.pop("activation"), (*where, "activation"))
            problems += errs
            checked["activation"] = act["name"] if isinstance(act, dict) and len(act) == 1 else act
        elif entry.name == "activation":
            problems.append(((*where, "activation"), "an activation layer needs activation: <name>"))
        validated, errs = validate_params(entry.params, params, where, "json")
        checked.update(validated)
        return checked, problems + errs


LAYERS = LayerRegistry("layer type", key="layer")

Positive = Annotated[int, Field(gt=0)]
Size = Positive | list[Positive]  # 3 or [3, 3]
Padding = Literal["valid", "same"] | Annotated[int, Field(ge=0)]
Shape = tuple[int, ...]


def _stride_field(default):
    return Field(default, validation_alias=AliasChoices("stride", "strides"))


# ----------------------------------------------------------------------------------------------
# Layers


@LAYERS.register("dense", "Dense", "linear_layer", "fully_connected", "fc", display="Dense")
def dense(in_shape: Shape, *, units: Positive, use_bias: bool = True):
    """A fully connected layer: y = x W^T + b."""
    features = _flat(in_shape, "dense")
    return nn.Linear(features, units, bias=use_bias), (units,)


@LAYERS.register("maxout", "Maxout", display="Maxout")
def maxout(in_shape: Shape, *, units: Positive, pieces: Annotated[int, Field(ge=2)] = 2):
    """max over k = pieces affine maps, per unit: max(w_1^T x + b_1, ..., w_k^T x + b_k)."""
    return Maxout(_flat(in_shape, "maxout"), units, pieces), (units,)


@LAYERS.register("conv1d", "Conv1D", "Convolution1D", display="Conv1D")
def conv1d(in_shape: Shape, *, filters: Positive, kernel_size: Size = 3,
           stride: Size = _stride_field(1), padding: Padding = "valid", use_bias: bool = True):
    """A 1-D convolution over inputs shaped [channels, length]."""
    return _conv(in_shape, 1, filters, kernel_size, stride, padding, use_bias)


@LAYERS.register("conv2d", "Conv2D", "Convolution2D", display="Conv2D")
def conv2d(in_shape: Shape, *, filters: Positive, kernel_size: Size = 3,
           stride: Size = _stride_field(1), padding: Padding = "valid", use_bias: bool = True):
    """A 2-D convolution over inputs shaped [channels, height, width]."""
    return _conv(in_shape, 2, filters, kernel_size, stride, padding, use_bias)


@LAYERS.register("maxpool1d", "MaxPooling1D", "MaxPool1D", "max_pooling1d", display="MaxPooling1D")
def maxpool1d(in_shape: Shape, *, pool_size: Size = 2, stride: Size | None = _stride_field(None),
              padding: Annotated[int, Field(ge=0)] = 0):
    """The maximum over each pool_size window of a [channels, length] input (stride: pool_size by default)."""
    return _pool(in_shape, 1, nn.MaxPool1d, pool_size, stride, padding)


@LAYERS.register("maxpool2d", "MaxPooling2D", "MaxPool2D", "max_pooling2d", display="MaxPooling2D")
def maxpool2d(in_shape: Shape, *, pool_size: Size = 2, stride: Size | None = _stride_field(None),
              padding: Annotated[int, Field(ge=0)] = 0):
    """The maximum over each pool_size window of a [channels, height, width] input (stride: pool_size by default)."""
    return _pool(in_shape, 2, nn.MaxPool2d, pool_size, stride, padding)


@LAYERS.register("avgpool1d", "AveragePooling1D", "AvgPool1D", "average_pooling1d", display="AveragePooling1D")
def avgpool1d(in_shape: Shape, *, pool_size: Size = 2, stride: Size | None = _stride_field(None),
              padding: Annotated[int, Field(ge=0)] = 0):
    """The mean over each pool_size window of a [channels, length] input (stride: pool_size by default)."""
    return _pool(in_shape, 1, nn.AvgPool1d, pool_size, stride, padding)


@LAYERS.register("avgpool2d", "AveragePooling2D", "AvgPool2D", "average_pooling2d", display="AveragePooling2D")
def avgpool2d(in_shape: Shape, *, pool_size: Size = 2, stride: Size | None = _stride_field(None),
              padding: Annotated[int, Field(ge=0)] = 0):
    """The mean over each pool_size window of a [channels, height, width] input (stride: pool_size by default)."""
    return _pool(in_shape, 2, nn.AvgPool2d, pool_size, stride, padding)


@LAYERS.register("flatten", "Flatten", display="Flatten")
def flatten(in_shape: Shape):
    """Each sample as one flat vector: [channels, height, width] -> [channels * height * width]."""
    return nn.Flatten(), (math.prod(in_shape),)


@LAYERS.register("reshape", "Reshape", display="Reshape")
def reshape(in_shape: Shape, *, shape: Annotated[list[int], Field(min_length=1)]):
    """Reshape each sample (not the batch axis); one entry may be -1."""
    total = math.prod(in_shape)
    known = math.prod(d for d in shape if d != -1)
    if shape.count(-1) > 1 or any(d == 0 or d < -1 for d in shape):
        raise SpecError(f"must be positive sizes with at most one -1, got {shape}", "shape")
    out = tuple(total // known if d == -1 else d for d in shape) if known else ()
    if math.prod(out) != total:
        raise SpecError(f"cannot reshape {list(in_shape)} ({total} values) into {shape}", "shape")
    return nn.Unflatten(1, out), out


@LAYERS.register("dropout", "Dropout", display="Dropout")
def dropout(in_shape: Shape, *, rate: Annotated[float, Field(ge=0, lt=1)] = 0.5):
    """Zeroes each value with probability `rate` during training (scaling the rest by 1/(1-rate))."""
    return nn.Dropout(rate), in_shape


@LAYERS.register("batchnorm", "BatchNormalization", "batch_norm", "BatchNorm", display="BatchNormalization")
def batchnorm(in_shape: Shape, *, momentum: Annotated[float, Field(gt=0, lt=1)] = 0.1,
              eps: Annotated[float, Field(gt=0)] = 1e-5):
    """Batch normalization over the channel axis (PyTorch's momentum convention: 0.1 = Keras' 0.9)."""
    kinds = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d}
    if len(in_shape) not in kinds:
        raise SpecError(f"batchnorm takes inputs of 1 to 3 axes, got {list(in_shape)}")
    return kinds[len(in_shape)](in_shape[0], eps=eps, momentum=momentum), in_shape


@LAYERS.register("activation", "Activation", display="Activation")
def activation(in_shape: Shape):
    """A layer that only applies its `activation:`."""
    return nn.Identity(), in_shape


class Maxout(nn.Module):
    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=-1)


def _flat(in_shape: Shape, kind: str) -> int:
    if len(in_shape) != 1:
        raise SpecError(f"{kind} needs a flat input, got shape {list(in_shape)}; add {{type: flatten}} before it")
    return in_shape[0]


def _per_axis(value, n: int, key: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    if len(value) != n:
        raise SpecError(f"must be one integer or a list of {n}, got {value}", key)
    return tuple(value)


def _spatial(in_shape: Shape, n: int, kind: str) -> tuple[int, Shape]:
    if len(in_shape) != n + 1:
        axes = "[channels, length]" if n == 1 else "[channels, height, width]"
        raise SpecError(f"{kind} needs inputs shaped {axes}, got {list(in_shape)}"
                        + ("; set model.input_shape or add a reshape layer" if len(in_shape) == 1 else ""))
    return in_shape[0], tuple(in_shape[1:])


def _conv(in_shape, n, filters, kernel_size, stride, padding, use_bias):
    channels, size = _spatial(in_shape, n, f"conv{n}d")
    k, s = _per_axis(kernel_size, n, "kernel_size"), _per_axis(stride, n, "stride")
    conv_cls = nn.Conv1d if n == 1 else nn.Conv2d
    if padding == "same":
        out = tuple(math.ceil(length / st) for length, st in zip(size, s))
        if all(st == 1 for st in s):
            module: nn.Module = conv_cls(channels, filters, k, 1, padding="same", bias=use_bias)
        else:  # PyTorch's "same" needs stride 1; pad as Keras/TensorFlow do (extra on the right)
            pads: list[int] = []
            for length, kk, st, o in reversed(list(zip(size, k, s, out))):
                total = max((o - 1) * st + kk - length, 0)
                pads += [total // 2, total - total // 2]
            pad = nn.ConstantPad1d(tuple(pads), 0.0) if n == 1 else nn.ZeroPad2d(tuple(pads))
            module = nn.Sequential(pad, conv_cls(channels, filters, k, s, bias=use_bias))
        return module, (filters, *out)
    p = 0 if padding == "valid" else padding
    out = tuple((length + 2 * p - kk) // st + 1 for length, kk, st in zip(size, k, s))
    if any(o <= 0 for o in out):
        raise SpecError(f"kernel {list(k)} does not fit the input {list(in_shape)} (output would be {list(out)}); "
                        "use a smaller kernel_size, padding: same, or fewer pooling layers before it", "kernel_size")
    return conv_cls(channels, filters, k, s, p, bias=use_bias), (filters, *out)


def _pool(in_shape, n, pool_cls, pool_size, stride, padding):
    kind = pool_cls.__name__.lower()
    channels, size = _spatial(in_shape, n, kind)
    k = _per_axis(pool_size, n, "pool_size")
    s = k if stride is None else _per_axis(stride, n, "stride")
    if any(padding > kk // 2 for kk in k):
        raise SpecError(f"padding must be at most half the pool_size {list(k)}, got {padding}", "padding")
    out = tuple((length + 2 * padding - kk) // st + 1 for length, kk, st in zip(size, k, s))
    if any(o <= 0 for o in out):
        raise SpecError(f"pool_size {list(k)} does not fit the input {list(in_shape)}", "pool_size")
    return pool_cls(k, s, padding), (channels, *out)
