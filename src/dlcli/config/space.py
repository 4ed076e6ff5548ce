"""The `tune:` section: a study's objective, sampler, pruner, workers and search space.

A space entry is `key.path: {type: float|int|categorical, ...}`, its key any path an override
accepts. keras-tuner's spellings (`Int`, `Float`, `Choice`, `Boolean`, `min_value`, `max_value`,
`sampling: log`, `values`) and Ludwig's (`space: loguniform|uniform|randint|qrandint|choice|grid_search`,
`lower`, `upper`, `categories`) are read as the same entries.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..messages import did_you_mean, normalize

PositiveInt = Annotated[int, Field(gt=0)]


class Section(BaseModel):  # as schema.Section (which imports this module)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

TYPES = ("float", "int", "categorical")
_TYPE_ALIASES = {  # normalized (messages.normalize) -> dlcli's type
    "float": "float", "real": "float", "uniform": "float", "double": "float",
    "int": "int", "integer": "int",
    "categorical": "categorical", "choice": "categorical", "categories": "categorical",
}
# Ludwig's (Ray Tune's) `space:` names -> (type, log)
_LUDWIG = {"uniform": ("float", False), "quniform": ("float", False), "loguniform": ("float", True),
           "qloguniform": ("float", True), "randint": ("int", False), "qrandint": ("int", False),
           "lograndint": ("int", True), "qlograndint": ("int", True), "choice": ("categorical", False),
           "grid_search": ("categorical", False), "randn": None}
_KEY_ALIASES = {"min_value": "low", "lower": "low", "max_value": "high", "upper": "high", "values": "choices",
                "categories": "choices", "q": "step"}
SAMPLERS = ("random", "tpe", "grid", "cmaes")
PRUNERS = ("none", "median", "hyperband")


class ParamSpec(Section):
    """One searched key: a float or int range (log-scaled, or in steps) or a list of choices."""

    type: Literal[TYPES]  # type: ignore[valid-type]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: Annotated[float, Field(gt=0)] | None = None
    choices: Annotated[list[Any], Field(min_length=1)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, values):
        if not isinstance(values, dict):
            return values
        values = dict(values)
        ludwig = values.pop("space", None)
        if ludwig is not None:
            found = _LUDWIG.get(str(ludwig))
            if found is None:
                raise ValueError(f"space: '{ludwig}' is not a space dlcli can search; use one of "
                                 f"{', '.join(k for k, v in _LUDWIG.items() if v)}{did_you_mean(str(ludwig), list(_LUDWIG))}")
            kind, log = found
            values.setdefault("type", kind)
            values.setdefault("log", log)
            if str(ludwig) in ("randint", "lograndint") and isinstance(values.get("upper"), int):
                values["upper"] = values["upper"] - 1  # Ray Tune's randint leaves out `upper`
        for old, new in _KEY_ALIASES.items():
            if old in values:
                if new in values:
                    raise ValueError(f"{old} and {new} are one key, given twice here; give one of them")
                values[new] = values.pop(old)
        sampling = values.pop("sampling", None)
        if sampling is not None:
            if str(sampling).lower() not in ("log", "linear"):
                raise ValueError(f"sampling: must be linear or log, got '{sampling}'")
            values.setdefault("log", str(sampling).lower() == "log")
        kind = values.get("type")
        if isinstance(kind, str):
            word = normalize(kind)
            if word == "boolean":  # keras-tuner's hp.Boolean
                values["type"] = "categorical"
                values.setdefault("choices", [False, True])
            elif word == "fixed":  # hp.Fixed
                values["type"], values["choices"] = "categorical", [values.pop("value", None)]
            else:
                values["type"] = _TYPE_ALIASES.get(word, kind)
        values.pop("default", None)  # keras-tuner's first-trial value; the sampler chooses here
        return values

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, kind):
        if isinstance(kind, str) and kind not in TYPES:
            raise ValueError(f"must be float, int or categorical (keras-tuner's Float, Int, Choice; Ludwig's "
                             f"space: uniform, randint, choice), got '{kind}'{did_you_mean(kind, list(TYPES))}")
        return kind

    @model_validator(mode="after")
    def _consistent(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical entry needs choices: [a, b, ...]")
            extra = [k for k in ("low", "high", "step") if getattr(self, k) is not None] + (["log"] if self.log else [])
            if extra:
                raise ValueError(f"{', '.join(extra)} go with a float or int range, not with choices")
            return self
        if self.choices is not None:
            raise ValueError(f"choices go with type: categorical, not with a {self.type} range")
        if self.low is None or self.high is None:
            missing = " and ".join(k for k in ("low", "high") if getattr(self, k) is None)
            raise ValueError(f"a {self.type} range needs low and high; {missing} missing")
        if self.type == "int":
            bad = [k for k in ("low", "high", "step") if getattr(self, k) is not None and
                   not float(getattr(self, k)).is_integer()]
            if bad:
                raise ValueError(f"{bad[0]}: an int range takes whole numbers, got {getattr(self, bad[0]):g}")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g}); swap them")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs a positive range, got low {self.low:g}; raise low above 0 or set "
                             "log: false")
        if self.log and self.step is not None:
            raise ValueError("step and log: true cannot go together (Optuna samples one or the other)")
        return self

    def values(self) -> list:
        """A few values that span the entry: both ends and the middle, or every choice."""
        if self.type == "categorical":
            return list(self.choices)
        low, high = self.low, self.high
        middle = math.sqrt(low * high) if self.log else (low + high) / 2
        if self.step:
            middle = low + round((middle - low) / self.step) * self.step
            high = low + math.floor((high - low) / self.step + 1e-9) * self.step
        cast = int if self.type == "int" else float
        return [cast(round(v)) if cast is int else v for v in (low, middle, high)]


class Objective(Section):
    metric: str = "val_loss"  # a metrics.csv column; a trial's value is its best epoch's
    mode: Literal["auto", "min", "max"] = "auto"  # auto: max for accuracy-like names, else min


class SamplerConfig(Section):
    name: str = "tpe"
    seed: Annotated[int, Field(ge=0)] | None = None  # default: the config's seed

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        word = normalize(name).removesuffix("sampler")
        word = {"randomsearch": "random", "gridsearch": "grid", "cmaes": "cmaes", "bayesian": "tpe"}.get(word, word)
        if word not in SAMPLERS:
            raise ValueError(f"unknown sampler '{name}'{did_you_mean(name, list(SAMPLERS))}; use one of "
                             f"{', '.join(SAMPLERS)}")
        return word


class PrunerConfig(Section):
    name: str = "median"
    warmup_epochs: Annotated[int, Field(ge=0)] = 1  # epochs a trial runs before it may be pruned
    startup_trials: Annotated[int, Field(ge=0)] = 2  # median: trials that finish before any is pruned
    reduction_factor: Annotated[int, Field(ge=2)] = 3  # hyperband

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        word = normalize(name).removesuffix("pruner")
        word = {"nop": "none", "off": "none", "false": "none"}.get(word, word)
        if word not in PRUNERS:
            raise ValueError(f"unknown pruner '{name}'{did_you_mean(name, list(PRUNERS))}; use one of "
                             f"{', '.join(PRUNERS)}")
        return word


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_UNIT = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def seconds(value: str | float | int) -> float:
    """`90`, `90s`, `30m`, `2h`, `1d` -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    found = _DURATION.match(str(value))
    if not found:
        raise ValueError(f"must be a duration such as 90s, 30m or 2h (or a number of seconds), got '{value}'")
    return float(found.group(1)) * _UNIT[found.group(2)]


class TuneConfig(Section):
    study: str | None = None  # runs/tune/<study>/; default: the config's name
    objective: Objective = Objective()
    n_trials: PositiveInt = 20  # complete + pruned trials, across workers and restarts
    timeout: str | float | None = None  # the study's budget: no trial starts once its commands ran this long in all
    workers: PositiveInt = 1
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    storage: str | None = None  # default: a journal file in the study folder; sqlite:/// or postgresql:// URLs
    space: Annotated[dict[str, ParamSpec], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _keras_names(cls, values):
        if isinstance(values, dict) and "max_trials" in values and "n_trials" not in values:
            values = {**values, "n_trials": values["max_trials"]}  # keras-tuner's name
            del values["max_trials"]
        if isinstance(values, dict) and isinstance(values.get("objective"), str):
            values = {**values, "objective": {"metric": values["objective"]}}  # objective: val_accuracy
        if isinstance(values, dict) and isinstance(values.get("sampler"), str):
            values = {**values, "sampler": {"name": values["sampler"]}}
        if isinstance(values, dict) and isinstance(values.get("pruner"), (str, bool)):
            p = values["pruner"]
            values = {**values, "pruner": {"name": "none" if p is False else "median" if p is True else p}}
        return values

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value):
        if value is None:
            return value
        if seconds(value) <= 0:
            raise ValueError(f"must be above 0, got '{value}'")
        return value

    @field_validator("study")
    @classmethod
    def _one_folder(cls, name):
        if name is not None and (not name.strip() or "/" in name or "\\" in name or name in (".", "..")):
            raise ValueError(f"is one folder name under runs/tune/, got {name!r}")
        return name

    @model_validator(mode="after")
    def _grid_has_grid(self):
        if self.sampler.name == "grid":
            for key, spec in self.space.items():
                if spec.type == "float" and spec.step is None:
                    raise ValueError(f"sampler grid needs a finite grid: give tune.space.{key} a step, or choices")
        return self

    @property
    def timeout_seconds(self) -> float | None:
        return None if self.timeout is None else seconds(self.timeout)


def override(key: str, value) -> str:
    """`key=value`, the value written so that the override reads it back as it is (1e-05 as a float)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return f"{key}={text.removesuffix('...').strip()}"


def overrides_of(params: dict) -> list[str]:
    return [override(k, v) for k, v in params.items()]


def encode(value):
    """Optuna's choices are None, bool, int, float or str: a list choice travels as its JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def decode(spec: ParamSpec, value):
    if spec.type == "categorical" and isinstance(value, str) and value not in spec.choices:
        return json.loads(value)
    return value
