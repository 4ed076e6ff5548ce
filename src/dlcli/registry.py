"""Name -> builder registries, one per kind of thing (layers, activations, losses, ...).

A builder is registered with a decorator. Its keyword-only parameters, with their type annotations
and defaults, *are* the config schema for that entry: the registry turns them into a pydantic model,
so a new loss or layer needs one function, one decorator and one test, and `dlcli validate`, the
"did you mean" hints and the names listed in `--help` all come from the same place.

    @LOSSES.register("focal", "FocalLoss")
    def focal(ctx, *, gamma: NonNegFloat = 2.0, alpha: float | None = 0.25): ...

Names are matched case-, underscore- and dash-insensitively, so Keras' `BinaryCrossentropy`,
`binary_crossentropy` and `binary-crossentropy` are one name.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model


def normalize(name: str) -> str:
    """The key two spellings of one name share: `MaxPooling2D` -> `maxpooling2d`."""
    return "".join(ch for ch in str(name).lower() if ch not in "_- ")


def suggest(word: str, candidates: list[str]) -> str | None:
    """The closest candidate to a misspelled word, or None when nothing is close."""
    by_key = {normalize(c): c for c in candidates}
    hit = difflib.get_close_matches(normalize(word), list(by_key), n=1, cutoff=0.6)
    return by_key[hit[0]] if hit else None


def did_you_mean(word: str, candidates: list[str]) -> str:
    hint = suggest(word, candidates)
    return f"; did you mean '{hint}'?" if hint else ""


class Params(BaseModel):
    """Base of every generated parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable[..., Any]
    params: type[Params]
    doc: str


class Registry:
    def __init__(self, kind: str):
        self.kind = kind  # "layer type", "activation", "loss", ... used in messages
        self._entries: dict[str, Entry] = {}  # canonical name -> entry
        self._keys: dict[str, str] = {}  # normalized name or alias -> canonical name

    def register(self, name: str, *aliases: str):
        def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
            entry = Entry(name, builder, _params_model(name, builder), inspect.getdoc(builder) or "")
            self._entries[name] = entry
            for key in (name, *aliases):
                self._keys[normalize(key)] = name
            return builder

        return decorate

    def canonical(self, name: str) -> str | None:
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

    def __contains__(self, name: str) -> bool:
        return self.canonical(name) is not None


def _params_model(name: str, builder: Callable[..., Any]) -> type[Params]:
    """A pydantic model of the builder's keyword-only parameters."""
    fields: dict[str, Any] = {}
    hints = inspect.get_annotations(builder, eval_str=True)
    for param in inspect.signature(builder).parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    return create_model(f"{name}_params", __base__=Params, **fields)
