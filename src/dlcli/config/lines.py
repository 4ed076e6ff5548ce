"""Reading a YAML config, with the line each key path starts on, and placing a problem at its line.

    model.layers[2].units  ->  ("model", "layers", 2, "units")  ->  line 12
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import ConfigError, Problem
from ..messages import key_path


def read_yaml(file: Path) -> tuple[dict, dict]:
    """(the file's mapping, {key path: 1-based line}); ConfigError for a file that is not a YAML mapping."""
    if not file.exists():
        raise ConfigError([Problem("", "file not found")], str(file))
    if file.is_dir():
        raise ConfigError([Problem("", "is a folder; give a YAML config file")], str(file))
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"is not UTF-8 text (byte {exc.start} cannot be read); save it as UTF-8")],
                          str(file)) from None
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot be read ({exc.strerror or exc})")], str(file)) from None
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


def locate(path: tuple, message: str, lines: dict, from_cli: dict) -> Problem:
    """A problem at a key path: on the line it starts on, or named as coming from a command-line override."""
    for n in range(len(path), 0, -1):
        if path[:n] in from_cli:
            return Problem(key_path(path), f"{message} (from the command-line override '{from_cli[path[:n]]}')")
    line = None
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            line = lines[path[:n]]
            break
    return Problem(key_path(path), message, line)
