"""Checking a raw config: the schema, then every named thing in it against its registry.

Layers, activations, the loss, optimizer, schedule, metrics and augmentations are looked up by kind
(`registry.lookup`), so the config never imports a component. Each comes back normalized (its
canonical name, defaults filled in), and every problem of the whole config is reported at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ..messages import did_you_mean, model_at, normalize, spellings, translate
from ..registry import Problems, lookup
from .lines import locate
from .schema import Config


def check(raw: dict, lines: dict | None = None, from_cli: dict | None = None, label: str | None = None) -> Config:
    """The checked Config of a raw mapping; ConfigError listing every problem, each at its key path and line."""
    lines, from_cli = lines or {}, from_cli or {}
    one_spelling(raw, from_cli)
    problems: Problems = []
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        problems += translate(exc, raw, Config)
        cfg = None
        problems += _check_raw_specs(raw)  # report the layers' and loss's problems too, in one go
    if cfg is not None:
        problems += _check_specs(cfg)
    if problems:
        raise ConfigError([locate(p, m, lines, from_cli) for p, m in problems], label)
    return cfg


INPUT_LAYERS = ("input", "inputlayer")  # Keras' Input(shape=...) and InputLayer, normalized (messages.normalize)


def keras_model(raw: dict, lines: dict) -> tuple[dict, dict]:
    """A `model:` written as Keras writes a Sequential, in dlcli's form (raw and the lines of its keys).

    `model: [<layers>]` is `model: {layers: [...]}`; a first `{type: Input, shape: [...]}` layer, or
    `input_shape:` (or Dense's `input_dim:`) on the first layer, is `model.input_shape`. Done before
    the overrides, so `model.layers[0].units=8` names the first layer that computes something, as
    Keras' `model.layers[0]` does.
    """
    model = raw.get("model")
    if isinstance(model, list):
        model = {"layers": model}
        lines = _moved(lines, ("model",), ("model", "layers"), keep=True)
    layers = model.get("layers") if isinstance(model, dict) else None
    if not (isinstance(layers, list) and layers and isinstance(layers[0], dict)) or "input_shape" in model:
        return raw if model is raw.get("model") else {**raw, "model": model}, lines
    model, layers, first = dict(model), list(layers), dict(layers[0])
    if normalize(first.get("type", "")) in INPUT_LAYERS and set(first) <= {"type", "shape", "name"}:
        model["input_shape"] = first.get("shape")
        lines = {**lines, ("model", "input_shape"): lines.get(("model", "layers", 0, "shape"))}
        layers = layers[1:]
        lines = _shifted(lines, ("model", "layers"))
    elif "input_shape" in first or "input_dim" in first:
        key = "input_shape" if "input_shape" in first else "input_dim"
        shape = first.pop(key)
        model["input_shape"] = [shape] if key == "input_dim" else shape
        lines = {**lines, ("model", "input_shape"): lines.get(("model", "layers", 0, key))}
        layers[0] = first
    model["layers"] = layers
    return {**raw, "model": model}, {k: v for k, v in lines.items() if v is not None}


def _moved(lines: dict, old: tuple, new: tuple, keep: bool = False) -> dict:
    """The lines of the keys under `old` also (or only) under `new`."""
    n = len(old)
    moved = {new + k[n:]: v for k, v in lines.items() if k[:n] == old}
    return {**({k: v for k, v in lines.items() if k[:n] != old} if not keep else lines), **moved}


def _shifted(lines: dict, prefix: tuple) -> dict:
    """The lines of list items under `prefix` one index down: item 1 is item 0 once the first is gone."""
    n = len(prefix)
    out = {k: v for k, v in lines.items() if not (k[:n] == prefix and len(k) > n and isinstance(k[n], int))}
    for k, v in lines.items():
        if k[:n] == prefix and len(k) > n and isinstance(k[n], int) and k[n] > 0:
            out[(*prefix, k[n] - 1, *k[n + 1:])] = v
    return out


def one_spelling(raw: dict, from_cli: dict) -> None:
    """An override replaces its key however the file spells it: `learning_rate: 0.001` in the file and
    `optimizer.lr=0.01` on the command line are one key, set to 0.01 (the file's spelling is dropped)."""
    for path in from_cli:
        parent = _node(raw, path[:-1])
        model = _model_of(raw, path[:-1])
        if not isinstance(parent, dict) or model is None or not isinstance(path[-1], str):
            continue
        for other in spellings(model, path[-1]):
            if other != path[-1] and other in parent and (*path[:-1], other) not in from_cli:
                del parent[other]


def _node(raw: Any, path: tuple) -> Any:
    for part in path:
        if isinstance(raw, dict) and part in raw or isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        else:
            return None
    return raw


_DEFAULT_NAMES = {"optimizer": "adam", "schedule": "constant"}


def _model_of(raw: dict, path: tuple):
    """The pydantic model of the mapping at a key path: a spec's entry (loss, optimizer, schedule, a layer)
    or a schema section."""
    node = _node(raw, path)
    if path and path[0] in ("loss", "optimizer", "schedule") and len(path) == 1 and isinstance(node, dict):
        registry, name = lookup(path[0]), node.get("name", _DEFAULT_NAMES.get(path[0]))
        return registry.get(name).params if name in registry else None
    if path[:2] == ("model", "layers") and len(path) == 3 and isinstance(node, dict):
        layers = lookup("layer")
        return layers.get(node.get("type")).params if node.get("type") in layers else None
    return model_at(Config, path)


def _check_specs(cfg: Config) -> Problems:
    """Layers, activations, loss, optimizer, schedule and metrics: named things with parameters."""
    layers, named, problems = _check_named_things(cfg.model.layers, cfg.loss, cfg.optimizer, cfg.schedule)
    cfg.model.layers = layers
    cfg.loss, cfg.optimizer, cfg.schedule = named["loss"], named["optimizer"], named["schedule"]
    if cfg.data is not None and cfg.data.augment is not None:
        cfg.data.augment, errs = _check_augment(cfg.data.augment)
        problems += errs

    if cfg.metrics is not None:
        names = []
        for i, name in enumerate(cfg.metrics):
            checked, errs = lookup("metric").check(name, ("metrics", i))
            problems += errs
            names.append(checked["name"] if checked else name)
        cfg.metrics = names
    if not problems:
        problems += _check_task(cfg) + _channels_first(cfg)
    return problems


IMAGE_LAYERS = ("conv2d", "maxpool2d", "avgpool2d")
CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA


def channels_last(shape: list[int] | tuple[int, ...]) -> list[int] | None:
    """[28, 28, 1] (Keras' [height, width, channels]) as dlcli's [1, 28, 28]; None for a shape that is not
    plainly channels-last."""
    if len(shape) == 3 and shape[-1] in CHANNELS and shape[0] not in CHANNELS and min(shape[:2]) > max(CHANNELS):
        return [shape[-1], *shape[:2]]
    return None


def _channels_first(cfg: Config) -> Problems:
    """A Keras image shape before convolutions is explained, not converted: the data is channels-first too,
    and a silent transpose would hide which axis is which."""
    shape = cfg.model.input_shape
    first = channels_last(shape) if shape else None
    if first is None or not any(layer.get("type") in IMAGE_LAYERS for layer in cfg.model.layers):
        return []
    return [(("model", "input_shape"), f"dlcli is channels-first ([channels, height, width], as PyTorch): use "
                                       f"{first}, not Keras' {list(shape)}")]


def _check_raw_specs(raw: dict) -> Problems:
    """The same checks on a config whose top level did not validate, so one run reports everything."""
    model = raw.get("model")
    layers = model.get("layers") if isinstance(model, dict) else None
    problems = _check_named_things(layers, raw.get("loss"), raw.get("optimizer"), raw.get("schedule"))[2]
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("augment"), list):
        problems += _check_augment(data["augment"])[1]
    return problems


def _check_augment(specs: list) -> tuple[list, Problems]:
    """`data.augment` entries against the augmentation registry (sizes are checked when images load)."""
    augments = lookup("augmentation")
    checked, problems = [], []
    for i, spec in enumerate(specs):
        entry, errs = augments.check(spec, ("data", "augment", i))
        checked.append(entry if entry is not None else spec)
        problems += errs
    return checked, problems


def _check_named_things(layers: Any, loss: Any, optimizer: Any, schedule: Any) -> tuple[Any, dict, Problems]:
    """Layers and the loss, optimizer and schedule specs against their registries.

    Returns the layers and specs normalized (canonical names, defaults filled in) and the problems.
    A spec that is None (absent) is left for the schema to report.
    """
    problems: Problems = []
    if isinstance(layers, list):
        checked_layers = []
        for i, spec in enumerate(layers):
            checked, errs = lookup("layer").check(spec, ("model", "layers", i))
            problems += errs
            checked_layers.append(checked)
        layers = checked_layers

    if schedule is None:
        schedule = "constant"
    # `optimizer.lr=0.1` on a config that names no optimizer or schedule: keep the default's name.
    if isinstance(optimizer, dict) and "name" not in optimizer:
        optimizer = {"name": "adam", **optimizer}
    if isinstance(schedule, dict) and "name" not in schedule:
        schedule = {"name": "constant", **schedule}

    named: dict[str, Any] = {"loss": loss, "optimizer": optimizer, "schedule": schedule}
    for key in named:
        if named[key] is not None:
            named[key], errs = lookup(key).check(named[key], (key,))
            problems += errs
    return layers, named, problems


def _check_task(cfg: Config) -> Problems:
    """Metrics that serve the task, and an early-stopping monitor that training will log."""
    problems = []
    task = cfg.task_kind
    metrics = lookup("metric")
    for i, name in enumerate(cfg.metric_names):
        if task not in metrics.get(name).tasks:
            kind = "classification" if task == "regression" else "regression"
            problems.append((("metrics", i), f"'{name}' is a {kind} metric and this is a {task} task"))
    monitor, names = cfg.monitor, cfg.metric_names
    train = [f"train_{m}" for m in names] if cfg.train.train_metrics else []
    allowed = ["train_loss", "val_loss", *train, *(f"val_{m}" for m in names)]
    if cfg.train.early_stopping and monitor not in allowed and metrics.column(monitor) in allowed:
        monitor = cfg.train.early_stopping.monitor = metrics.column(monitor)  # val_ams: val_ams@b_reg=10
    if cfg.train.early_stopping and monitor not in allowed:
        where = ("train", "early_stopping", "monitor")
        if monitor in (f"train_{m}" for m in names):
            problems.append((where, f"'{monitor}' is logged with train.train_metrics: true; set that, or monitor "
                                    f"one of {', '.join(allowed)}"))
        else:
            problems.append((where, f"unknown monitor '{monitor}'{did_you_mean(monitor, allowed)}; choose from "
                                    f"{', '.join(allowed)} (train_<metric> and val_<metric> need the metric in "
                                    "metrics:)"))
    return problems
