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
    if isinstance(source, dict):
        raw, lines, file = source, {}, None
    else:
        file = Path(source)
        raw, lines = read_yaml(file, knows)
    label = str(file) if file else None
    raw, lines = keras_model(raw, lines)
    raw, from_cli = apply_overrides(raw, overrides, label, knows)
    cfg = check(raw, lines, from_cli, label)
    if file is not None:
        cfg.came_from(file, lines)
    absolutize_paths(cfg)
    return cfg


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
