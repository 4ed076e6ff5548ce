"""`load_config`: a YAML file (or a dict) and `key=value` overrides -> one checked `Config`.

`dlcli validate` and `dlcli train` share it, and the run directory stores `config.resolved()`
exactly as used.
"""

from __future__ import annotations

from pathlib import Path

from .checks import check, keras_model
from .lines import read_yaml
from .overrides import apply_overrides
from .schema import Config, knows


def load_config(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and check a config; raise ConfigError listing every problem found."""
    raw, lines, from_cli, file = _read(source, overrides)
    cfg = check(raw, lines, from_cli, str(file) if file else None)
    if file is not None:
        cfg.came_from(file, lines)
    absolutize_paths(cfg)
    return cfg


def read_config(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The config's mapping as read and overridden, before any check: for a command that starts processes
    before the checks import torch (for the layers' names), as `dlcli tune` its workers. Only a hint:
    nothing in it has been checked. Raises ConfigError as load_config does for an unreadable file."""
    return _read(source, overrides)[0]


def _read(source, overrides) -> tuple[dict, dict, dict, Path | None]:
    if isinstance(source, dict):
        raw, lines, file = source, {}, None
    else:
        file = Path(source)
        raw, lines = read_yaml(file, knows)
    raw, lines = keras_model(raw, lines)
    raw, from_cli = apply_overrides(raw, overrides, str(file) if file else None, knows)
    return raw, lines, from_cli, file


def absolutize_paths(cfg: Config) -> None:
    """Data files and a custom loss's file are relative to the config file's folder: make them absolute."""
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
