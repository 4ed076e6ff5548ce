"""The config: its schema, YAML with the line of every key, `key=value` overrides, and the checks.

    from dlcli.config import load_config
    cfg = load_config("configs/quickstart.yaml", ["optimizer.lr=0.01"])
"""

from .checks import check
from .load import load_config
from .overrides import apply_overrides, parse_key_path
from .schema import Config, DataConfig, ModelConfig, TrainConfig

__all__ = ["Config", "DataConfig", "ModelConfig", "TrainConfig", "apply_overrides", "check", "load_config",
           "parse_key_path"]
