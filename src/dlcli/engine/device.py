"""Where training runs: the device a config or `--device` names, and mixed precision on it."""

from __future__ import annotations

import contextlib
import re

import torch

from ..config import Config
from ..errors import DlcliError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`, `mps`; DlcliError, listing the devices this machine
    has, for one it has not (a GPU index past the last, mps off a Mac)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", name):
        raise DlcliError(f"device must be auto, cpu, cuda, cuda:N or mps, got '{name}'")
    device = torch.device(name)
    if device.type == "cuda":
        present = torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    else:
        present = device.type == "cpu" or torch.backends.mps.is_available()
    if not present:
        raise DlcliError(f"device '{name}' is not on this machine, which has {', '.join(devices_here())}; "
                         "use one of them, or auto")
    return device


def devices_here() -> list[str]:
    """The devices this machine has, as `train.device` names them (GPUs with their model)."""
    gpus = [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return ["cpu", *gpus, *(["mps"] if torch.backends.mps.is_available() else [])]


def config_device(cfg: Config, override: str | None = None) -> torch.device:
    """The device a run uses: `override` (`--device`) or the config's train.device, whose problem is then a
    ConfigError at that key and line."""
    if override is not None:
        return resolve_device(override)
    try:
        return resolve_device(cfg.train.device)
    except DlcliError as exc:
        raise cfg.error("train.device", str(exc).removeprefix("device ")) from None


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


_NO_AUTOCAST = contextlib.nullcontext()  # reusable: entering it does nothing


def autocast(device: torch.device, precision: str):
    """Mixed precision for bf16/fp16; for fp32 a context that costs nothing per batch."""
    if precision not in AUTOCAST_DTYPES:
        return _NO_AUTOCAST
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
