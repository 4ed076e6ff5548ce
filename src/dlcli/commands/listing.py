"""`list`: every name a config may use, from the registries themselves; and the README's tables of them.

The README's tables of layers, activations, losses, optimizers, schedules, metrics and augmentations
are `readme_tables()`, written between markers by `scripts/readme_tables.py`; a test checks that
they are current.
"""

from __future__ import annotations

import json
import re

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..nn.activations import ACTIVATIONS
from ..nn.augment import AUGMENTS
from ..nn.layers import LAYERS
from ..nn.losses import LOSSES
from ..nn.metrics import METRICS
from ..nn.optimizers import OPTIMIZERS
from ..nn.schedules import SCHEDULES
from ..registry import Entry, Registry, implied_task

SECTIONS: tuple[tuple[str, Registry], ...] = (
    ("layers", LAYERS), ("activations", ACTIVATIONS), ("losses", LOSSES), ("optimizers", OPTIMIZERS),
    ("schedules", SCHEDULES), ("metrics", METRICS), ("augmentations (data.augment)", AUGMENTS),
)


def catalogue() -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """[(section title, [(name, its parameters)])] in registration order."""
    return [(title, [(name, list(registry.get(name).params.model_fields)) for name in registry.names()])
            for title, registry in SECTIONS]


def readme_tables() -> dict[str, str]:
    """A markdown table per section, keyed by its first word (layers, activations, ...)."""
    tables = {}
    for title, registry in SECTIONS:
        tasks = registry in (LOSSES, METRICS)
        head = "| name (also accepted) |" + (" task |" if tasks else "") + " parameters: default |" + " what it does |"
        rows = [head, "|" + " --- |" * head.count(" |")]
        for name in registry.names():
            entry = registry.get(name)
            task = f" {implied_task(entry.tasks) or 'any'} |" if tasks else ""
            rows.append(f"| {_names(entry)} |{task} {_params(entry)} | {_cell(_summary(entry.doc))} |")
        tables[title.split()[0]] = "\n".join(rows)
    return tables


def _names(entry: Entry) -> str:
    return f"`{entry.name}`" + (f" ({', '.join(entry.aliases)})" if entry.aliases else "")


def _params(entry: Entry) -> str:
    return ", ".join(_param(name, field) for name, field in entry.params.model_fields.items()) or "-"


def _param(name: str, field: FieldInfo) -> str:
    choices = getattr(field.validation_alias, "choices", None) or []
    text = f"`{name}`" + "".join(f" (or `{c}`)" for c in choices if c != name)
    if field.default is PydanticUndefined:
        return text + " (required)"
    return f"{text}: {_cell(_value(field.default))}"


def _value(value) -> str:
    """A default as YAML would read it: true, none, 0.001, [0.75, 1.333]."""
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value)


def _summary(doc: str) -> str:
    """A docstring's first paragraph, on one line."""
    return " ".join(doc.split("\n\n")[0].split())


def _cell(text: str) -> str:
    return re.sub(r"(?<!\\)\|", r"\\|", text)
