"""`key.path=value` overrides from the command line, applied to the raw config before it is checked."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import yaml

from ..errors import ConfigError, Problem
from ..messages import key_path
from .lines import parse_yaml

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key_path(key: str) -> list[str | int]:
    """`model.layers[2].units` -> ["model", "layers", 2, "units"]."""
    parts: list[str | int] = []
    for name, index in _PATH_TOKEN.findall(key):
        parts.append(int(index) if index else name)
    return parts


SPACE = "tune.space."


def override_path(key: str, raw: dict) -> list[str | int]:
    """An override's key path. Under `tune.space`, whose keys are key paths themselves, the longest key the space
    has, or else all of the rest, is one part: `tune.space.optimizer.lr.high` -> tune, space, optimizer.lr, high."""
    if not key.startswith(SPACE) or len(key) == len(SPACE):
        return parse_key_path(key)
    rest = key[len(SPACE):]
    for k in sorted(space_keys(raw), key=len, reverse=True):
        if rest == k or rest.startswith(k + "."):
            return ["tune", "space", k, *parse_key_path(rest[len(k) + 1:])]
    return ["tune", "space", rest]


def space_keys(raw: dict) -> list[str]:
    tune = raw.get("tune")
    space = tune.get("space") if isinstance(tune, dict) else None
    return [k for k in space if isinstance(k, str)] if isinstance(space, dict) else []


def apply_overrides(raw: dict, overrides, label: str | None,
                    known: Callable[[tuple], bool] | None = None) -> tuple[dict, dict[tuple, str]]:
    """Set `a.b[1].c=value` pairs (values parsed as YAML) on a copy of the raw config; `known` as for parse_yaml."""
    raw = copy.deepcopy(raw)
    from_cli: dict[tuple, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        path = override_path(key.strip(), raw)
        if not sep or not path:
            raise ConfigError([Problem("", f"override '{item}' must look like key.path=value, e.g. optimizer.lr=0.01")], label)
        try:
            inside = (lambda p, at=tuple(path): known(at + p)) if known else None
            value = parse_yaml(text, inside)[0] if text.strip() else None
        except yaml.YAMLError:
            value = text
        except ConfigError as exc:  # `{1: 3}`, a duplicate key, an alias bomb
            raise ConfigError([Problem(key_path(path), f"override '{item}': {p.path + ': ' if p.path else ''}"
                                                       f"{p.message}") for p in exc.problems], label) from None
        if path[:2] == ["tune", "space"] and len(path) == 3 and path[2] not in space_keys(raw) \
                and not isinstance(value, dict):
            have = ", ".join(space_keys(raw)) or "none yet"
            raise ConfigError([Problem("tune.space", f"override '{item}': the space has no key {path[2]} (it has: "
                                       f"{have}); a new one takes a whole range, e.g. tune.space.{path[2]}="
                                       "{type: float, low: 1.0e-4, high: 0.1}")], label)
        node: Any = raw
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise ConfigError([Problem(key_path(path[: i + 1]), f"override '{item}': no item {part} here")], label)
            else:
                if not isinstance(node, dict):
                    raise ConfigError([Problem(key_path(path[:i]), f"override '{item}': not a mapping")], label)
                if isinstance(node.get(part), str) and not isinstance(nxt, int):
                    node[part] = {"name": node[part]}  # `optimizer: adam` + `optimizer.lr=0.1`
                node.setdefault(part, [] if isinstance(nxt, int) else {})
            node = node[part]
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ConfigError([Problem(key_path(path), f"override '{item}': no item {last} here")], label)
        elif not isinstance(node, dict):
            raise ConfigError([Problem(key_path(path[:-1]), f"override '{item}': not a mapping")], label)
        node[last] = value
        from_cli[tuple(path)] = item
    return raw, from_cli
