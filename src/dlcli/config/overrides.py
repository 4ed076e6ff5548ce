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


def apply_overrides(raw: dict, overrides, label: str | None,
                    known: Callable[[tuple], bool] | None = None) -> tuple[dict, dict[tuple, str]]:
    """Set `a.b[1].c=value` pairs (values parsed as YAML) on a copy of the raw config; `known` as for parse_yaml."""
    raw = copy.deepcopy(raw)
    from_cli: dict[tuple, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        path = parse_key_path(key.strip())
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
