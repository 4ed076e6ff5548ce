"""Checkpoints, `checkpoints/last.pt` and `best.pt`: everything needed to resume a run exactly.

    model, optimizer, schedule    their state_dicts
    grad_scaler                   fp16's gradient scaler, or None
    state                         epochs completed, the history, the best value and epoch, early stopping
    rng                           torch (CPU and CUDA), numpy, Python and the batch order's generator
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from .files import write_atomic


def save_checkpoint(path: Path, *, model, optimizer, schedule, grad_scaler, state: dict,
                    generator: torch.Generator) -> None:
    buffer = io.BytesIO()
    torch.save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "grad_scaler": grad_scaler.state_dict() if grad_scaler.is_enabled() else None,
        "state": state,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "generator": generator.get_state(),
        },
    }, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """A checkpoint's contents, tensors on `device`."""
    return torch.load(path, map_location=device, weights_only=False)


def restore_rng(rng: dict, generator: torch.Generator) -> None:
    """Put every random number generator back where the checkpoint left it."""
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    generator.set_state(rng["generator"].cpu())
