"""Reading a YAML config, with the line each key path starts on, and placing a problem at its line.

    model.layers[2].units  ->  ("model", "layers", 2, "units")  ->  line 12
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, Problem
from ..messages import key_path, special_file

MAX_BYTES = 128 << 10  # a config is a few KB; pyyaml takes a second or two for this much, and it is the wrong file
MAX_DEPTH = 50  # levels of nesting: a config needs about five
MAX_ALIASED = 10_000  # values reached through aliases: a few anchors reach hundreds, an alias bomb billions
STR, MERGE = "tag:yaml.org,2002:str", "tag:yaml.org,2002:merge"
KINDS = {"int": "a number", "float": "a number", "bool": "true or false", "timestamp": "a date"}


def read_yaml(file: Path, known: Callable[[tuple], bool] | None = None) -> tuple[dict, dict]:
    """(the file's mapping, {key path: 1-based line}); ConfigError for a file that is not a YAML mapping.

    Only a regular file is opened, and at most MAX_BYTES of it are read. `known` as for parse_yaml.
    """
    kind = special_file(file)
    if kind:
        raise ConfigError([Problem("", f"is {kind}, not a config file; it was not read")], str(file))
    if not file.exists():
        raise ConfigError([Problem("", "file not found")], str(file))
    if file.is_dir():
        raise ConfigError([Problem("", "is a folder; give a YAML config file")], str(file))
    try:
        with open(file, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot be read ({exc.strerror or exc})")], str(file)) from None
    if len(data) > MAX_BYTES:
        raise ConfigError([Problem("", f"is larger than {MAX_BYTES >> 10} KiB, the most a config file may be; "
                                       "is it the right file?")], str(file))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"is not UTF-8 text (byte {exc.start} cannot be read); save it as UTF-8")],
                          str(file)) from None
    try:
        raw, lines = parse_yaml(text, known)
    except yaml.YAMLError as exc:
        raise ConfigError([_malformed(exc, text)], str(file)) from None
    except ConfigError as exc:
        raise ConfigError(exc.problems, str(file)) from None
    if raw is None:
        raise ConfigError([Problem("", "the file is empty; see configs/quickstart.yaml for an example")], str(file))
    if not isinstance(raw, dict):
        raise ConfigError([Problem("", f"must be a mapping of keys (name:, model:, ...), got {type(raw).__name__}")], str(file))
    return raw, lines


def _malformed(exc: yaml.YAMLError, text: str) -> Problem:
    """pyyaml's complaint at its line, and a hint when the line has a tab: YAML indents with spaces."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return Problem("", f"malformed YAML: {what}")
    if "\t" in "".join(text.splitlines()[mark.line:mark.line + 1]):
        what += "; indent with spaces, not tabs"
    return Problem("", f"malformed YAML: {what}", mark.line + 1)


def parse_yaml(text: str, known: Callable[[tuple], bool] | None = None) -> tuple[Any, dict]:
    """One YAML document -> (its value, {key path: 1-based line}).

    yaml.YAMLError for text that is not YAML; ConfigError (no file named) for what would make a config
    blow up later, refused before the value is built: nesting deeper than MAX_DEPTH, an alias inside
    the value it names, aliases that expand to more than MAX_ALIASED values, duplicate keys, and
    keys that are not names. Keys under a path `known` says the schema lacks (Keras' `class_weight:
    {0: 1, 1: 5}`) are left to the schema, which names the unknown key and the dlcli way.
    """
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except _Refused as exc:
            raise ConfigError([Problem("", exc.problem, exc.problem_mark.line + 1)]) from None
        if node is None:
            return None, {}
        walk = _Walk(known=known)
        walk.visit(node, (), False)
        if walk.problems:
            raise ConfigError(walk.problems)
        return loader.construct_document(node), walk.lines
    finally:
        loader.dispose()


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses, but that a config must not be."""


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing while it composes what pyyaml would recurse into or build endlessly:
    values nested deeper than MAX_DEPTH, an alias inside the value it names (`a: &x [*x]`), and
    aliases that together stand for more than MAX_ALIASED values (an alias bomb is a few lines
    that stand for billions)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.open_anchors: list[str | None] = []  # the anchor of each value being composed, outermost first
        self.aliased = 0  # values the aliases so far stand for
        self.sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) it holds, aliases expanded

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self.alias(event, super().compose_node(parent, index))
        if len(self.open_anchors) >= MAX_DEPTH:
            raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self.open_anchors.append(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.open_anchors.pop()

    def alias(self, event: yaml.AliasEvent, node: yaml.Node) -> yaml.Node:
        """The node an alias names, once it is clear that using it here builds something finite and small."""
        name, mark = event.anchor, event.start_mark
        if name in self.open_anchors:
            raise _Refused(None, None, f"alias *{name} is inside the value &{name} it names; a config cannot "
                                      "contain itself", mark)
        values, levels = self.size(node)
        if len(self.open_anchors) + levels > MAX_DEPTH:
            raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep (through alias *{name})", mark)
        self.aliased += values
        if self.aliased > MAX_ALIASED:
            raise _Refused(None, None, f"the aliases up to *{name} stand for more than {MAX_ALIASED:,} values; "
                                      "write the values out, or alias fewer", mark)
        return node

    def size(self, node: yaml.Node) -> tuple[int, int]:
        """(values, levels of nesting) of a composed node, with the aliases in it expanded."""
        if id(node) not in self.sizes:
            children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                        else node.value if isinstance(node, yaml.SequenceNode) else [])
            inner = [self.size(child) for child in children]
            self.sizes[id(node)] = (1 + sum(v for v, _ in inner), 1 + max((lv for _, lv in inner), default=0))
        return self.sizes[id(node)]


@dataclass
class _Walk:
    """One pass over the composed nodes: the line of each key path, and the problems of the keys.

    A node met again is reached through an alias: its keys are not reported twice.
    """

    lines: dict[tuple, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    known: Callable[[tuple], bool] | None = None  # whether the schema has a key path

    def visit(self, node: yaml.Node, path: tuple, aliased: bool) -> None:
        aliased = aliased or id(node) in self.seen
        self.seen.add(id(node))
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.visit(item, path + (i,), aliased)
        elif isinstance(node, yaml.MappingNode):
            self.mapping(node, path, aliased)

    def mapping(self, node: yaml.MappingNode, path: tuple, aliased: bool) -> None:
        first: dict[str, int] = {}  # key -> the line it is first given on
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.tag == MERGE:  # `<<: *defaults`: pyyaml merges these keys in, explicit ones win
                self.visit(value, path + ("<<",), aliased)
                continue
            if not (isinstance(key, yaml.ScalarNode) and key.tag == STR):
                if not aliased and (self.known is None or self.known(path)):
                    self.problems.append(Problem(key_path(path), "keys must be names such as units, got "
                                                                 f"{_shown(key)}", line))
                continue
            name = key.value
            if name in first and not aliased:
                where = f"on line {line}" if first[name] == line else f"on lines {first[name]} and {line}"
                self.problems.append(Problem(key_path(path + (name,)), f"is given twice, {where}; keep one",
                                             line))
            first.setdefault(name, line)
            self.visit(value, path + (name,), aliased)
            self.lines[path + (name,)] = line


def _shown(key: yaml.Node) -> str:
    """A key that is not a name, as a message shows it: `1 (a number)`, `null`, `a list`."""
    if isinstance(key, yaml.SequenceNode):
        return "a list"
    if isinstance(key, yaml.MappingNode):
        return "a mapping"
    kind = key.tag.rsplit(":", 1)[-1]
    if kind == "null":
        return "null (an empty key)"
    return f"{key.value} ({KINDS.get(kind, kind)})"


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
