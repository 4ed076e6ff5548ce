"""Where training runs: the device a config or `--device` names, and mixed precision on it."""

from __future__ import annotations

import contextlib

import torch

from ..errors import DlcliError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`; DlcliError for a GPU that is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DlcliError(f"device '{name}' was asked for but no CUDA GPU is available here; use device: cpu or auto")
    return torch.device(name)


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


_NO_AUTOCAST = contextlib.nullcontext()  # reusable: entering it does nothing


def autocast(device: torch.device, precision: str):
    """Mixed precision for bf16/fp16; for fp32 a context that costs nothing per batch."""
    if precision not in AUTOCAST_DTYPES:
        return _NO_AUTOCAST
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
