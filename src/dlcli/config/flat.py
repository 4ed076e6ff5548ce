"""A config as flat `key.path -> value` pairs: what MLflow logs as params and what `dlcli runs` compares.

    flatten({"optimizer": {"name": "adam", "lr": 0.01}, "model": {"layers": [{"units": 8}]}})
    -> {"optimizer.name": "adam", "optimizer.lr": 0.01, "model.layers.0.units": 8}

List items are numbered as path parts (`model.layers.0.units`), not `[0]`: MLflow refuses brackets
in a key. Empty dicts and lists stay as values, so a key that was set to {} is still seen.
"""

from __future__ import annotations

from typing import Any


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value} if prefix else {}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def changed_keys(configs: list[dict[str, Any]], ignore: tuple[str, ...] = ("name", "tracking")) -> list[str]:
    """The flat keys whose values differ between the (flattened) configs, in the first config's key order;
    a key missing from some of them counts as differing. Keys under `ignore` (where a run was tracked is
    not what tells two trainings apart) are left out."""
    keys: list[str] = []
    for flat in configs:
        keys += [k for k in flat if k not in keys]
    missing = object()
    return [k for k in keys if not any(k == i or k.startswith(i + ".") for i in ignore)
            and len({repr(flat.get(k, missing)) for flat in configs}) > 1]
