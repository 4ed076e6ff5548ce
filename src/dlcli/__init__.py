"""dlcli: train feed-forward and convolutional networks from YAML configs.

    from dlcli import load_config, build_model, build_loss, train, evaluate

Attributes load lazily so that `import dlcli` (and `dlcli --help`) does not import torch. The
packages, each importing only those below it (pyproject.toml's import-linter contract says so):

    cli/        the Typer app and what it prints
    commands/   train, evaluate, predict, summarize, validate, list, runs, compare, plots
    engine/     setup (config -> data, model, loss), the loop (fit), callbacks, batches, inference
    runs/       run directories: layout, atomic writes, checkpoints, the Run object
    data/       sources, table formats, images, streaming, scaling, labels, splits
    nn/         layers and the network, activations, losses, optimizers, schedules, metrics, augment
    config/     schema, YAML with line numbers, overrides, checks
    registry.py, messages.py, errors.py
"""

__version__ = "0.1.0"

_API = {
    "load_config": ("config", "load_config"),
    "build_model": ("nn.network", "build_model"),
    "build_loss": ("nn.losses", "build_loss"),
    "LossContext": ("nn.losses", "LossContext"),
    "prepare": ("engine.setup", "prepare"),
    "train": ("commands.train", "train"),
    "evaluate": ("commands.evaluate", "evaluate"),
    "predict": ("commands.predict", "predict"),
    "summary_dict": ("nn.summary", "summary_dict"),
    "Run": ("runs.run", "Run"),
    "tune": ("commands.tune", "tune"),
    "load_run": ("commands.load", "load_run"),
    "export": ("commands.export", "export"),
}

__all__ = ["__version__", *_API]


def __dir__():
    """`dir(dlcli)` lists the public API, which loads lazily (so it is not in the module's namespace yet)."""
    return sorted(__all__)


def __getattr__(name):
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'dlcli' has no attribute {name!r}")
