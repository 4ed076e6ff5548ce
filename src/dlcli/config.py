"""The config schema: YAML file + `key=value` overrides -> one checked `Config`.

Every key, default and error message lives here or, for the parameters of a layer, activation,
loss, optimizer or schedule, in the signature of its registered builder. `dlcli validate` and
`dlcli train` share `load_config`, and the run directory stores `config.resolved()` exactly as used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .errors import ConfigError, Problem
from .registry import Registry, did_you_mean

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]

BUILTIN_DATASETS = ("breast_cancer", "digits", "iris", "wine", "diabetes")
Task = Literal["auto", "binary", "multiclass", "regression"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SplitConfig(Section):
    val: Fraction = 0.0
    test: Fraction = 0.0

    @model_validator(mode="after")
    def _leaves_training_rows(self):
        if self.val + self.test >= 1:
            raise ValueError(f"val + test must be below 1 to leave training rows, got {self.val + self.test:g}")
        return self


SOURCES = ("path", "train", "dataset", "openml", "torchvision", "images")  # exactly one per config


class DataConfig(Section):
    # Where the rows come from: exactly one of these (val/test files go with train).
    path: str | None = None  # one table file: csv, tsv, parquet, npy, npz, HDF5 (.h5/.hdf5), ROOT
    train: str | None = None
    val: str | None = None
    test: str | None = None
    dataset: Literal[BUILTIN_DATASETS] | None = None  # type: ignore[valid-type]
    openml: int | str | None = None  # an OpenML data id (the lecture's HIGGS is 23512), cached under root
    torchvision: str | None = None  # a torchvision data set class: FashionMNIST, MNIST, CIFAR10, ...
    images: str | None = None  # a folder with one subfolder of images per class (torchvision ImageFolder)

    # Tables
    target: str | None = None
    features: list[str] | None = None
    drop: list[str] | None = None
    key: str | None = None  # HDF5: the group or data set holding the table
    tree: str | None = None  # ROOT: the TTree to read
    branches: list[str] | None = None  # ROOT: the branches to use as features (like features)
    missing: Literal["error", "drop", "mean"] = "error"  # NaN in features: refuse, drop the rows, or fill

    # Images
    root: str = "data"  # where torchvision and OpenML files are kept (relative to the config's folder)
    download: bool = False  # let torchvision / OpenML fetch missing files
    image_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None  # [H, W]
    color: Literal["grayscale", "rgb"] | None = None
    augment: list[Any] | None = None  # transforms for the train split only: [{name: random_crop, ...}]

    # Every source
    split: SplitConfig = SplitConfig()
    scale: Literal["none", "standard", "minmax"] = "none"
    positive: list[str | int | float] | None = None  # these labels -> class 1, the rest -> class 0
    stream: Literal["auto"] | bool = "auto"  # read batches through DataLoader workers instead of all at once
    workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"  # DataLoader worker processes

    @model_validator(mode="after")
    def _one_source(self):
        sources = [k for k in SOURCES if getattr(self, k) is not None]
        if len(sources) != 1:
            got = f"got {' and '.join(sources)}" if sources else "got none"
            raise ValueError("give exactly one of path, train (with optional val, test files), dataset, openml, "
                             f"torchvision or images; {got}")
        if (self.val or self.test) and not self.train:
            raise ValueError("val and test files go with a train file: set data.train")
        if self.path or self.train:
            if not self.target:
                raise ValueError("data.target is required with a data file: the column (csv) or key (npz) to predict")
        if self.features is not None and self.drop is not None:
            raise ValueError("give features or drop, not both")
        if self.branches is not None and (self.features is not None or self.drop is not None):
            raise ValueError("branches are a ROOT file's features: give branches, features or drop, not two of them")
        format_keys = [k for k in ("key", "tree", "branches") if getattr(self, k) is not None]
        if format_keys and not (self.path or self.train):
            raise ValueError(f"{format_keys[0]} describes what to read from a data file; it needs data.path or "
                             "data.train")
        return self


class ModelConfig(Section):
    input_shape: list[PositiveInt] | None = None
    layers: Annotated[list[Any], Field(min_length=1)]


class EarlyStopping(Section):
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: Annotated[int, Field(ge=0)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class TrainConfig(Section):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    device: str = "auto"
    shuffle: bool = True
    early_stopping: EarlyStopping | None = None
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = Field(None, alias="clipnorm")
    clip_grad_value: Annotated[float, Field(gt=0)] | None = Field(None, alias="clipvalue")
    eval_batch_size: PositiveInt | Literal["auto"] = "auto"  # auto: 4096; 128 for convolutional nets on a CPU
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16/fp16: autocast; fp16 adds a gradient scaler
    compile: bool = False  # torch.compile the model (falls back to eager with a warning where it cannot)
    channels_last: Literal["auto"] | bool = "auto"  # auto: on for convolutional models
    tensorboard: bool = False  # also write scalars to RUN_DIR/tb (needs the tensorboard package)
    train_metrics: bool = True  # log train_<metric> per epoch, from the predictions made while training

    @model_validator(mode="before")
    @classmethod
    def _early_stopping_true(cls, values):
        # `early_stopping: true` means the defaults; `false` means off.
        if isinstance(values, dict) and isinstance(values.get("early_stopping"), bool):
            values = {**values, "early_stopping": {} if values["early_stopping"] else None}
        return values

    @model_validator(mode="after")
    def _known_device(self):
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ValueError(f"train.device must be auto, cpu, cuda, cuda:N or mps, got '{self.device}'")
        return self


class Config(Section):
    name: str | None = None
    seed: int = 42
    task: Task = "auto"
    data: DataConfig | None = None
    model: ModelConfig
    loss: Any
    optimizer: Any = {"name": "adam", "lr": 0.001}
    schedule: Any = None
    train: TrainConfig = TrainConfig()
    metrics: list[str] | None = None

    _file: Path | None = PrivateAttr(None)
    _lines: dict = PrivateAttr(default_factory=dict)

    @property
    def file(self) -> Path | None:
        """The YAML file this config came from (None when built from a dict)."""
        return self._file

    @property
    def base_dir(self) -> Path:
        """Relative data and custom-loss paths are relative to the config file's folder."""
        return self._file.parent if self._file else Path.cwd()

    def resolved(self) -> dict:
        """The config as used, defaults filled in, paths absolute: what a run directory stores."""
        return self.model_dump(mode="json", by_alias=False)

    def error(self, path: str, message: str) -> ConfigError:
        """A ConfigError at a key path (`model.layers[2].units`), with its line in the file."""
        problem = _locate(tuple(parse_key_path(path)), message, self._lines, {})
        problem.path = path
        return ConfigError([problem], str(self._file) if self._file else None)

    # Derived facts the builders need, computed from the checked config.
    @property
    def output_activation(self) -> str:
        last = self.model.layers[-1]
        return last.get("activation") or "linear"

    @property
    def task_kind(self) -> str:
        """binary | multiclass | regression, from `task:`, else the loss, else the output activation."""
        if self.task != "auto":
            return self.task
        from .losses import loss_task

        implied = loss_task(self.loss)
        if implied in ("binary", "multiclass", "regression"):
            return implied
        act = _activation_name(self.output_activation)
        if act == "sigmoid":
            return "binary"
        if act == "softmax":
            return "multiclass"
        return "binary" if implied == "classification" else "regression"

    @property
    def metric_names(self) -> list[str]:
        if self.metrics is not None:
            return self.metrics
        return ["mae", "r2"] if self.task_kind == "regression" else ["accuracy"]

    @property
    def monitor(self) -> str:
        return self.train.early_stopping.monitor if self.train.early_stopping else "val_loss"


# ----------------------------------------------------------------------------------------------
# Loading


def load_config(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and check a config; raise ConfigError listing every problem found."""
    if isinstance(source, dict):
        raw, lines, file = source, {}, None
    else:
        file = Path(source)
        raw, lines = _read_yaml(file)
    label = str(file) if file else None
    raw, from_cli = apply_overrides(raw, overrides, label)
    cfg = check(raw, lines, from_cli, label)
    if file is not None:
        cfg._file = file.resolve()
        cfg._lines = lines
    _absolutize_paths(cfg)
    return cfg


def _read_yaml(file: Path) -> tuple[dict, dict]:
    if not file.exists():
        raise ConfigError([Problem("", "file not found")], str(file))
    if file.is_dir():
        raise ConfigError([Problem("", "is a folder; give a YAML config file")], str(file))
    text = file.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem("", f"malformed YAML: {what}", line)], str(file)) from None
    if raw is None:
        raise ConfigError([Problem("", "the file is empty; see configs/quickstart.yaml for an example")], str(file))
    if not isinstance(raw, dict):
        raise ConfigError([Problem("", f"must be a mapping of keys (name:, model:, ...), got {type(raw).__name__}")], str(file))
    lines: dict[tuple, int] = {}
    _record_lines(node, (), lines)
    return raw, lines


def _record_lines(node, path: tuple, lines: dict) -> None:
    """Map each key path to the 1-based line it starts on, for error messages."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[path + (key.value,)] = key.start_mark.line + 1
            _record_lines(value, path + (key.value,), lines)
            lines[path + (key.value,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, path + (i,), lines)


_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key_path(key: str) -> list[str | int]:
    """`model.layers[2].units` -> ["model", "layers", 2, "units"]."""
    parts: list[str | int] = []
    for name, index in _PATH_TOKEN.findall(key):
        parts.append(int(index) if index else name)
    return parts


def apply_overrides(raw: dict, overrides, label: str | None) -> tuple[dict, dict[tuple, str]]:
    """Set `a.b[1].c=value` pairs (values parsed as YAML) on a copy of the raw config."""
    import copy

    raw = copy.deepcopy(raw)
    from_cli: dict[tuple, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        path = parse_key_path(key.strip())
        if not sep or not path:
            raise ConfigError([Problem("", f"override '{item}' must look like key.path=value, e.g. optimizer.lr=0.01")], label)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node: Any = raw
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise ConfigError([Problem(_fmt(path[: i + 1]), f"override '{item}': no item {part} here")], label)
            else:
                if not isinstance(node, dict):
                    raise ConfigError([Problem(_fmt(path[:i]), f"override '{item}': not a mapping")], label)
                if isinstance(node.get(part), str) and not isinstance(nxt, int):
                    node[part] = {"name": node[part]}  # `optimizer: adam` + `optimizer.lr=0.1`
                node.setdefault(part, [] if isinstance(nxt, int) else {})
            node = node[part]
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ConfigError([Problem(_fmt(path), f"override '{item}': no item {last} here")], label)
        elif not isinstance(node, dict):
            raise ConfigError([Problem(_fmt(path[:-1]), f"override '{item}': not a mapping")], label)
        node[last] = value
        from_cli[tuple(path)] = item
    return raw, from_cli


def _fmt(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ----------------------------------------------------------------------------------------------
# Checking


def check(raw: dict, lines: dict | None = None, from_cli: dict | None = None, label: str | None = None) -> Config:
    lines, from_cli = lines or {}, from_cli or {}
    problems: list[tuple[tuple, str]] = []
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        problems += _translate(exc, raw, Config)
        cfg = None
        problems += _check_raw_specs(raw)  # report the layers' and loss's problems too, in one go
    if cfg is not None:
        problems += _check_specs(cfg)
    if problems:
        raise ConfigError([_locate(p, m, lines, from_cli) for p, m in problems], label)
    return cfg


def _locate(path: tuple, message: str, lines: dict, from_cli: dict) -> Problem:
    for n in range(len(path), 0, -1):
        if path[:n] in from_cli:
            return Problem(_fmt(path), f"{message} (from the command-line override '{from_cli[path[:n]]}')")
    line = None
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            line = lines[path[:n]]
            break
    return Problem(_fmt(path), message, line)


def _check_specs(cfg: Config) -> list[tuple[tuple, str]]:
    """Layers, activations, loss, optimizer, schedule and metrics: named things with parameters."""
    from .metrics import METRICS

    layers, named, problems = _check_named_things(cfg.model.layers, cfg.loss, cfg.optimizer, cfg.schedule)
    cfg.model.layers = layers
    cfg.loss, cfg.optimizer, cfg.schedule = named["loss"], named["optimizer"], named["schedule"]
    if cfg.data is not None and cfg.data.augment is not None:
        cfg.data.augment, errs = _check_augment(cfg.data.augment)
        problems += errs

    if cfg.metrics is not None:
        metrics = []
        for i, name in enumerate(cfg.metrics):
            canon = METRICS.canonical(name)
            if canon is None:
                problems.append((("metrics", i), METRICS.unknown_message(name)))
            metrics.append(canon or name)
        cfg.metrics = metrics
    if not problems:
        problems += _check_task(cfg, METRICS)
    return problems


def _check_raw_specs(raw: dict) -> list[tuple[tuple, str]]:
    """The same checks on a config whose top level did not validate, so one run reports everything."""
    model = raw.get("model")
    layers = model.get("layers") if isinstance(model, dict) else None
    problems = _check_named_things(layers, raw.get("loss"), raw.get("optimizer"), raw.get("schedule"))[2]
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("augment"), list):
        problems += _check_augment(data["augment"])[1]
    return problems


def _check_augment(specs: list) -> tuple[list, list]:
    """`data.augment` entries against the augmentation registry (sizes are checked when images load)."""
    from .augment import AUGMENTS

    checked, problems = [], []
    for i, spec in enumerate(specs):
        entry, errs = _check_named(spec, ("data", "augment", i), AUGMENTS)
        checked.append(entry if entry is not None else spec)
        problems += errs
    return checked, problems


def _check_named_things(layers: Any, loss: Any, optimizer: Any, schedule: Any) -> tuple[Any, dict, list]:
    """Layers and the loss, optimizer and schedule specs against their registries.

    Returns the layers and specs normalized (canonical names, defaults filled in) and the problems.
    A spec that is None (absent) is left for the schema to report.
    """
    from .losses import LOSSES
    from .models import LAYERS
    from .optim import OPTIMIZERS, SCHEDULE_COMMON_KEYS, SCHEDULES

    problems: list[tuple[tuple, str]] = []
    if isinstance(layers, list):
        checked_layers = []
        for i, spec in enumerate(layers):
            checked, errs = _check_layer(spec, ("model", "layers", i), LAYERS)
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
    for key, registry, common in (("loss", LOSSES, frozenset()), ("optimizer", OPTIMIZERS, frozenset()),
                                  ("schedule", SCHEDULES, SCHEDULE_COMMON_KEYS)):
        if named[key] is not None:
            named[key], errs = _check_named(named[key], (key,), registry, common)
            problems += errs
    return layers, named, problems


def _check_task(cfg: Config, metrics: Registry) -> list[tuple[tuple, str]]:
    problems = []
    task = cfg.task_kind
    for i, name in enumerate(cfg.metric_names):
        if task not in metrics.get(name).builder.tasks:
            kind = "classification" if task == "regression" else "regression"
            problems.append((("metrics", i), f"'{name}' is a {kind} metric and this is a {task} task"))
    monitor = cfg.monitor
    allowed = ["train_loss", "val_loss"] + [f"val_{m}" for m in cfg.metric_names]
    if cfg.train.early_stopping and monitor not in allowed:
        problems.append(
            (("train", "early_stopping", "monitor"), f"unknown monitor '{monitor}'{did_you_mean(monitor, allowed)}; "
             f"choose from {', '.join(allowed)} (val_<metric> needs the metric in metrics:)")
        )
    return problems


def _check_layer(spec: Any, where: tuple, layers: Registry) -> tuple[dict, list]:
    from .activations import ACTIVATIONS

    if not isinstance(spec, dict) or "type" not in spec:
        return spec, [(where, f"a layer must be a mapping with a type, e.g. {{type: dense, units: 64}}, got {spec!r}")]
    params = dict(spec)
    kind = params.pop("type")
    problems: list = []
    if kind not in layers and kind in ACTIVATIONS:
        # `{type: relu}` or `{type: LeakyReLU, negative_slope: 0.1}`: an activation layer.
        params = {"activation": {"name": kind, **params} if params else kind}
        kind = "activation"
    if kind not in layers:
        names = layers.names() + ACTIVATIONS.names()
        msg = f"unknown layer type '{kind}'{did_you_mean(str(kind), names)} (choose from {', '.join(layers.names())})"
        return spec, [((*where, "type"), msg)]
    entry = layers.get(kind)
    checked: dict[str, Any] = {"type": entry.name}
    if "activation" in params:
        act, errs = _check_named(params.pop("activation"), (*where, "activation"), ACTIVATIONS)
        problems += errs
        checked["activation"] = _compact(act)
    elif entry.name == "activation":
        problems.append(((*where, "activation"), "an activation layer needs activation: <name>"))
    validated, errs = _validate_params(entry, params, where)
    checked.update(validated)
    return checked, problems + errs


def _compact(spec: dict | None):
    """`{name: relu}` -> `relu`, for a readable resolved config."""
    if isinstance(spec, dict) and len(spec) == 1:
        return spec["name"]
    return spec


def _check_named(spec: Any, where: tuple, registry: Registry, common: set[str] = frozenset()) -> tuple[dict | None, list]:
    """A `name` or `{name: ..., <params>}` spec against its registry; returns it normalized."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        return None, [(where, f"must be {_a(registry.kind)} name or {{name: ..., <params>}}, got {spec!r}")]
    params = dict(spec)
    name = params.pop("name")
    if name not in registry:
        return None, [((*where, "name") if len(spec) > 1 else where, registry.unknown_message(name))]
    entry = registry.get(name)
    kept = {k: params.pop(k) for k in list(params) if k in common}
    validated, errs = _validate_params(entry, params, where)
    return {"name": entry.name, **kept, **validated}, errs


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _validate_params(entry, params: dict, where: tuple) -> tuple[dict, list]:
    try:
        return entry.params(**params).model_dump(mode="json"), []
    except ValidationError as exc:
        return params, [((*where, *path), msg) for path, msg in _translate(exc, params, entry.params)]


def _translate(exc: ValidationError, raw: Any, model: type[BaseModel]) -> list[tuple[tuple, str]]:
    """Pydantic's errors -> (key path, message for people); one message per path."""
    by_path: dict[tuple, list[str]] = {}
    for err in exc.errors(include_url=False):
        path = _real_path(err["loc"], raw)
        if err["type"] == "extra_forbidden":
            key = path[-1]
            fields = _fields_at(model, path[:-1])
            msg = f"unknown key '{key}'{did_you_mean(str(key), fields)}"
            if fields:
                msg += f" (allowed keys: {', '.join(fields)})"
        else:
            msg = _message(err)
        by_path.setdefault(path, [])
        if msg not in by_path[path]:
            by_path[path].append(msg)
    out = []
    for path, msgs in by_path.items():
        if len(msgs) > 1 and all(m.startswith("must be ") for m in msgs):
            got = msgs[0].rsplit(", got ", 1)[-1] if ", got " in msgs[0] else None
            parts = [m[len("must be ") :].rsplit(", got ", 1)[0] for m in msgs]
            msg = "must be " + " or ".join(parts) + (f", got {got}" if got else "")
        else:
            msg = "; ".join(msgs)
        out.append((path, msg))
    return out


def _real_path(loc: tuple, raw: Any) -> tuple:
    """Drop pydantic's union-member tags from a location, keeping keys that exist in the input."""
    path: list = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not _looks_like_tag(part):
            path.append(part)  # a missing key, or an alias
            node = None
    return tuple(path)


def _looks_like_tag(part: str) -> bool:
    return any(ch in part for ch in "[]()-") or part in ("str", "int", "float", "bool", "list", "dict", "none")


def _fields_at(model: type[BaseModel], path: tuple) -> list[str]:
    """The keys the schema allows at a path, for "did you mean" and "allowed keys"."""
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        sub = _model_in(field.annotation)
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def _model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _message(err: dict) -> str:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    got = f", got {value!r}" if not isinstance(value, dict) else ""
    if kind == "missing":
        return "required key is missing"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer{got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"must be a number{got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false{got}"
    if kind in ("string_type",):
        return f"must be a string{got}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list{got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys{got}"
    if kind == "greater_than" and ctx.get("gt") == 0:
        return f"must be a positive {'integer' if isinstance(value, int) else 'number'}{got}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}{got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}{got}"
    if kind == "less_than":
        return f"must be below {ctx['lt']}{got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}{got}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        hint = did_you_mean(str(value), expected) if isinstance(value, str) else ""
        return f"must be one of {', '.join(expected)}{got}{hint}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg'][0].lower()}{err['msg'][1:]}{got}"


def _activation_name(spec) -> str:
    return spec["name"] if isinstance(spec, dict) else str(spec)


def _absolutize_paths(cfg: Config) -> None:
    base = cfg.base_dir
    if cfg.data is not None:
        for key in ("path", "train", "val", "test", "images", "root"):
            value = getattr(cfg.data, key)
            if value is not None:
                setattr(cfg.data, key, str((base / Path(value).expanduser()).resolve()))
    loss = cfg.loss
    if isinstance(loss, dict) and loss.get("name") == "custom":
        file, sep, fn = str(loss.get("function", "")).rpartition(":")
        if sep and file.endswith(".py"):
            loss["function"] = f"{(base / file).resolve()}:{fn}"
