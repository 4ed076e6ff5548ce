"""The `Network` a config's `model:` section becomes: its layers in order, the output activation apart."""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn

from ..errors import ConfigError, Problem, SpecError
from ..messages import key_path
from ..registry import Params, validate_params
from .activations import build_activation
from .layers import LAYERS, Shape


class ModelSpec(Params):
    """A `model:` section given as a dict (the config's schema checks a file's)."""

    input_shape: list[Annotated[int, Field(gt=0)]] | None = None
    layers: Annotated[list[Any], Field(min_length=1)]


@dataclass
class LayerInfo:
    name: str  # Keras-style unique name: dense, dense_1, max_pooling2d, ...
    type: str  # Keras' class name: Dense, Conv2D, ...
    output_shape: Shape
    modules: list[nn.Module]  # what this config layer became (layer, then activation)


class Network(nn.Module):
    """The model a config describes.

    `forward(x)` returns the last layer's output *before* its activation (the logits of a
    sigmoid or softmax classifier), which losses fuse with their log; `predict(x)` applies it.
    """

    def __init__(self, input_shape: Shape, layers: list[LayerInfo], output_activation: str, head: nn.Module):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.layers_info = layers
        self.output_activation = output_activation
        body = [m for info in layers for m in info.modules]
        if body and body[-1] is head:
            body = body[:-1]
        self.body = nn.Sequential(*body)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.body:  # the body's layers themselves: one module call fewer per step than body(x)
            x = layer(x)
        return x

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The outputs with their activation (probabilities for a classifier), in eval mode (dropout off,
        batchnorm's running statistics) under `torch.inference_mode`; the mode the network was in is restored.
        The losses and the inference loop use `head(forward(x))` themselves."""
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return self.head(self(x))
        finally:
            self.train(was_training)

    @property
    def output_shape(self) -> Shape:
        return self.layers_info[-1].output_shape


def build_model(model: Any, input_shape: Shape | list[int] | None = None, device: str | None = None) -> Network:
    """Build the network of a `Config`, its `model:` section, or a plain dict of that section.

    A dict is checked here as a config's `model:` section would be (ConfigError listing every problem at
    its `model.` key path); a config's was checked when it was loaded. A layer that does not fit the
    one before raises SpecError at `layers[i]`. On `device="meta"` the parameters have shapes but no
    memory: what `footprint` measures before the real build allocates anything.
    """
    with torch.device(device) if device else contextlib.nullcontext():
        return _build(model, input_shape)


def _build(model: Any, input_shape: Shape | list[int] | None) -> Network:
    model = getattr(model, "model", model)  # a Config: its model section
    if isinstance(model, dict):
        layers, declared = check_model(model), model.get("input_shape")
    else:
        layers, declared = model.layers, model.input_shape
    shape = tuple(input_shape or declared or ())
    if not shape:
        raise SpecError("the input shape is unknown: set model.input_shape, or give data: so it can be read off",
                        "input_shape")
    infos: list[LayerInfo] = []
    counts: dict[str, int] = {}
    head: nn.Module = nn.Identity()
    output_activation = "linear"
    for i, spec in enumerate(layers):
        params = {k: v for k, v in spec.items() if k not in ("type", "activation")}
        entry = LAYERS.get(spec["type"])
        try:
            module, out_shape = entry.builder(shape, **params)
        except SpecError as exc:
            raise SpecError(str(exc), f"layers[{i}]" + (f".{exc.key}" if exc.key else "")) from None
        except (RuntimeError, TypeError, ValueError, OverflowError) as exc:  # sizes torch cannot take (10**12)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise SpecError(f"cannot be built on an input shaped {list(shape)} ({first}); use smaller sizes here "
                            "or in the layers before", f"layers[{i}]") from exc
        modules = [module]
        output_activation = "linear"
        head = nn.Identity()
        if spec.get("activation") is not None:
            output_activation, head = build_activation(spec["activation"])
            modules.append(head)
        name = keras_name(entry.display or entry.name)
        n = counts.get(name, 0)
        counts[name] = n + 1
        infos.append(LayerInfo(name if n == 0 else f"{name}_{n}", entry.display or entry.name, out_shape, modules))
        shape = out_shape
    return Network(tuple(input_shape or declared), infos, output_activation, head)


# What one training step holds, in float32 (4 bytes) values:
PARAMETER_COPIES = 4  # weights, their gradients, and Adam's two moment estimates (the default optimizer;
#                       SGD with momentum keeps 3): the most a built-in optimizer keeps per weight
ACTIVATION_COPIES = 2  # each module's output, kept for the backward pass, and its gradient there
FLOAT_BYTES = 4


def footprint(model: Network, batch: int) -> tuple[int, list[int]]:
    """Bytes one training step of `batch` samples needs (the batch itself, and PARAMETER_COPIES of the weights
    and ACTIVATION_COPIES of every module's output), and each config layer's share of them.

    Read off the shapes only, so it works on a model built on the meta device. Temporary buffers of
    torch's kernels and the data set itself are not in it: a floor, not a bound.
    """
    per_layer = []
    for info in model.layers_info:
        weights = sum(p.numel() for m in info.modules for p in m.parameters())
        buffers = sum(b.numel() for m in info.modules for b in m.buffers())  # batchnorm's running statistics
        outputs = len(info.modules) * math.prod(info.output_shape)  # a layer's output, then its activation's
        per_layer.append(FLOAT_BYTES * (PARAMETER_COPIES * weights + buffers + ACTIVATION_COPIES * batch * outputs))
    return FLOAT_BYTES * batch * math.prod(model.input_shape) + sum(per_layer), per_layer


def check_model(model: dict) -> list[dict]:
    """A `model:` dict's layers, checked and normalized; ConfigError with every problem found."""
    _, problems = validate_params(ModelSpec, model, ("model",), "python")
    layers = model.get("layers")
    checked = []
    for i, spec in enumerate(layers if isinstance(layers, list) else []):
        layer, errs = LAYERS.check(spec, ("model", "layers", i))
        problems += errs
        checked.append(layer)
    if problems:
        raise ConfigError([Problem(key_path(path), message) for path, message in problems])
    return checked


def keras_name(class_name: str) -> str:
    """A layer's name as Keras derives it from its class: MaxPooling2D -> max_pooling2d, Conv2D -> conv2d."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
