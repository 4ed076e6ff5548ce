"""dlcli: train feed-forward and convolutional networks from YAML configs.

    from dlcli import load_config, build_model, build_loss, train, evaluate

Attributes load lazily so that `import dlcli` (and `dlcli --help`) does not import torch.
"""

__version__ = "0.1.0"

_API = {
    "load_config": ("config", "load_config"),
    "build_model": ("models", "build_model"),
    "build_loss": ("losses", "build_loss"),
    "LossContext": ("losses", "LossContext"),
    "prepare": ("build", "prepare"),
    "train": ("trainer", "train"),
    "evaluate": ("evaluation", "evaluate"),
    "predict": ("predictions", "predict"),
    "summary_dict": ("summary", "summary_dict"),
}

__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'dlcli' has no attribute {name!r}")
