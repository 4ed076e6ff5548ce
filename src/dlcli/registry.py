"""Name -> builder registries, one per kind of thing (layers, activations, losses, ...).

A builder is registered with a decorator. Its keyword-only parameters, with their type annotations
and defaults, *are* the config schema for that entry: the registry turns them into a pydantic model,
so a new loss or layer needs one function, one decorator and one test, and `dlcli validate`, the
"did you mean" hints, `dlcli list` and the README's tables (checked by a test) all come from the
same place.

    @LOSSES.register("focal", "FocalLoss", tasks=CLASSIFICATION)
    def focal(ctx, *, gamma: NonNegFloat = 2.0, alpha: float | None = 0.25): ...

Names are matched case-, underscore- and dash-insensitively, so Keras' `BinaryCrossentropy`,
`binary_crossentropy` and `binary-crossentropy` are one name. Every spec, whether in a config or
passed to a builder from Python, is checked by `Registry.check` or `Registry.parse`: one path for
names, aliases, parameters and their messages.

The config checks specs without importing a component: it looks a registry up by kind with
`lookup("loss")`, and the first lookup imports the registry's home module (HOMES), which fills it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .errors import SpecError
from .messages import article, did_you_mean, key_path, normalize, translate

# The tasks an entry serves (`tasks=`); None serves any task.
BINARY, MULTICLASS, REGRESSION = ("binary",), ("multiclass",), ("regression",)
CLASSIFICATION = BINARY + MULTICLASS

# Where each kind's entries are registered: the module that fills its registry when imported.
HOMES = {
    "layer": "dlcli.nn.layers",
    "activation": "dlcli.nn.activations",
    "loss": "dlcli.nn.losses",
    "optimizer": "dlcli.nn.optimizers",
    "schedule": "dlcli.nn.schedules",
    "metric": "dlcli.nn.metrics",
    "augmentation": "dlcli.nn.augment",
}
_REGISTRIES: dict[str, Registry] = {}

Problems = list[tuple[tuple, str]]  # (key path, message)


class Params(BaseModel):
    """Base of every generated parameter model: unknown keys are errors, and so are infinite numbers (an
    `lr: .inf` is refused like `.nan`, not found out by a NaN loss)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)
    hints: ClassVar[dict[str, str]] = {}  # an unknown key -> what to write here instead (messages.translate)


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable[..., Any]
    params: type[Params]
    doc: str
    aliases: tuple[str, ...] = ()
    tasks: tuple[str, ...] | None = None  # the tasks it serves; None: any
    tasks_from: str | None = None  # a parameter naming another entry, whose tasks then apply
    display: str | None = None  # Keras' name for it (a layer's class name: MaxPooling2D)


def split_spec(spec: Any) -> tuple[str, dict]:
    """`relu` -> ("relu", {}); `{name: elu, alpha: 0.5}` -> ("elu", {"alpha": 0.5})."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "name" in spec:
        params = dict(spec)
        return str(params.pop("name")), params
    raise SpecError(f"must be a name or {{name: ..., <params>}}, got {spec!r}")


class Registry:
    def __init__(self, kind: str, *, key: str | None = None, common: type[Params] | None = None,
                 hints: dict[str, str] | None = None):
        self.kind = kind  # "layer type", "activation", "loss", ... used in messages
        self.common = common  # keys every entry takes, handled by the caller (a schedule's warmup_epochs)
        self.hints = hints or {}  # another library's key -> the way to say it here, for every entry
        self._entries: dict[str, Entry] = {}  # canonical name -> entry
        self._keys: dict[str, str] = {}  # normalized name or alias -> canonical name
        _REGISTRIES[key or kind] = self

    def register(self, name: str, *aliases: str, tasks: tuple[str, ...] | None = None,
                 tasks_from: str | None = None, display: str | None = None, hints: dict[str, str] | None = None):
        """`hints`: keys this entry does not take, each with the way to say it here (Keras' `alpha`...)."""
        def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
            params = _params_model(name, builder, {**self.hints, **(hints or {})})
            entry = Entry(name, builder, params, inspect.getdoc(builder) or "", aliases, tasks, tasks_from, display)
            self._entries[name] = entry
            for key in (name, *aliases):
                self._keys[normalize(key)] = name
            return builder

        return decorate

    def expand(self, spec: Any) -> Any:
        """A shorthand spec in its full form; the base registry has none (losses: `file.py:fn` is custom)."""
        return spec

    def canonical(self, name: Any) -> str | None:
        return self._keys.get(normalize(name))

    def get(self, name: str) -> Entry:
        canon = self.canonical(name)
        if canon is None:
            raise KeyError(self.unknown_message(name))
        return self._entries[canon]

    def unknown_message(self, name: Any) -> str:
        return f"unknown {self.kind} '{name}'{did_you_mean(str(name), self.names())} (choose from {', '.join(self.names())})"

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: Any) -> bool:
        return self.canonical(name) is not None

    @property
    def common_keys(self) -> frozenset[str]:
        return frozenset(self.common.model_fields) if self.common else frozenset()

    def check(self, spec: Any, where: tuple = ()) -> tuple[dict | None, Problems]:
        """A `name` or `{name: ..., <params>}` spec at key path `where` -> (the spec normalized: canonical name,
        defaults filled in, as JSON-friendly values; the problems found). None when the name is unusable."""
        spec = self.expand(spec)
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            return None, [(where, f"must be {article(self.kind)} name or {{name: ..., <params>}}, got {spec!r}")]
        params = dict(spec)
        name = params.pop("name")
        if name not in self:
            return None, [((*where, "name") if len(spec) > 1 else where, self.unknown_message(name))]
        entry = self.get(name)
        given = {k: params.pop(k) for k in list(params) if k in self.common_keys}
        common, problems = validate_params(self.common, given, where, "json", only_given=True) if given else ({}, [])
        validated, errs = validate_params(entry.params, params, where, "json")
        return {"name": entry.name, **common, **validated}, problems + errs

    def parse(self, spec: Any) -> tuple[Entry, dict, dict]:
        """(entry, its parameters validated, the common keys with their defaults) of a spec, for building it;
        SpecError at the key at fault."""
        name, params = split_spec(self.expand(spec))
        if name not in self:
            raise SpecError(self.unknown_message(name), key="name")
        entry = self.get(name)
        given = {k: params.pop(k) for k in list(params) if k in self.common_keys}
        common, problems = validate_params(self.common, given, (), "python") if self.common else ({}, [])
        validated, errs = validate_params(entry.params, params, (), "python")
        if problems or errs:
            path, message = first_problem(problems + errs)
            raise SpecError(message, key_path(path))
        return entry, validated, common

    def tasks(self, spec: Any) -> tuple[str, ...] | None:
        """The tasks a spec's entry serves (through `tasks_from`, its base's); None for any or unknown."""
        try:
            name, params = split_spec(self.expand(spec))
        except SpecError:
            return None
        canon = self.canonical(name)
        if canon is None:
            return None
        entry = self._entries[canon]
        base = self.canonical(str(params.get(entry.tasks_from) or "")) if entry.tasks_from else None
        return self._entries[base].tasks if base else entry.tasks


def first_problem(problems: Problems) -> tuple[tuple, str]:
    """The one problem to report where only one is: an unknown key first (a misspelled key also makes its
    real name look missing), then the deepest key path."""
    return min(problems, key=lambda p: (not p[1].startswith("unknown"), -len(p[0])))


def lookup(key: str) -> Registry:
    """The registry of a kind ("layer", "loss", ...; see HOMES), filled by importing its home module."""
    if key not in _REGISTRIES:
        importlib.import_module(HOMES[key])
    return _REGISTRIES[key]


def implied_task(tasks: tuple[str, ...] | None) -> str | None:
    """binary, multiclass or regression for one task; classification for both classification tasks."""
    if tasks is None:
        return None
    if len(tasks) == 1:
        return tasks[0]
    return "classification" if set(tasks) == set(CLASSIFICATION) else None


def validate_params(model: type[Params], params: dict, where: tuple, mode: str, *,
               only_given: bool = False) -> tuple[dict, Problems]:
    """`params` checked against `model`: (their values dumped in `mode`, []), or (params, the problems)."""
    try:
        values = model(**params)
    except ValidationError as exc:
        return params, [((*where, *path), msg) for path, msg in translate(exc, params, model)]
    except TypeError as exc:  # keys that are not strings: `**params` refuses them
        return params, [(where, f"keys must be names (text), got {exc}")]
    return values.model_dump(mode=mode, include=set(params) if only_given else None), []


def _params_model(name: str, builder: Callable[..., Any], key_hints: dict[str, str]) -> type[Params]:
    """A pydantic model of the builder's keyword-only parameters, with the hints for keys it does not take."""
    fields: dict[str, Any] = {}
    hints = inspect.get_annotations(builder, eval_str=True)
    for param in inspect.signature(builder).parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    model = create_model(f"{name}_params", __base__=Params, **fields)
    model.hints = key_hints
    return model
