"""Run directories: where they go and what they hold.

    runs/<name>/<YYYYmmdd-HHMMSS>/
        config.yaml      the resolved config, as used
        run.json         status (running | completed | failed | interrupted), times, pid, host, versions,
                         the overrides of each resume
        run.lock         while a process trains in the run (lock.py)
        metrics.csv      a row per epoch
        checkpoints/     last.pt, best.pt: model, optimizer, schedule, epoch, RNG states (checkpoint.py)
        scaler.json      the scaler fitted on the train rows (when data.scale is set)
        labels.json      class id -> original label, feature names, fill values, row counts
        summary.txt      the model summary
        evaluation.json  written by `dlcli evaluate`
        plots/           written by `dlcli evaluate`
"""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime
from pathlib import Path

from ..errors import RunError
from .files import os_reason

CONFIG = "config.yaml"
RUN_INFO = "run.json"
METRICS = "metrics.csv"
SCALER = "scaler.json"
LABELS = "labels.json"
SUMMARY = "summary.txt"
EVALUATION = "evaluation.json"
CHECKPOINTS = "checkpoints"
PLOTS = "plots"


def new_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """runs/<name>/<timestamp>, with -2, -3, ... when runs start in the same second."""
    base = Path(root) / name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        base.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = base / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                candidate.mkdir()  # exclusive: two runs never share a folder
                return candidate
            except FileExistsError:
                continue
    except OSError as exc:
        raise RunError(f"{base}: a run folder cannot be created there ({os_reason(exc)})") from None
    raise RunError(f"cannot create a run folder under {base}")


def check_run_dir(run_dir: str | Path) -> Path:
    """The folder, once checked to be a dlcli run directory."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    missing = [name for name in (CONFIG, RUN_INFO) if not (path / name).exists()]
    if len(missing) == 2:
        raise RunError(f"{path}: not a dlcli run directory (it has no {CONFIG} and {RUN_INFO})")
    if missing:
        raise RunError(f"{path / missing[0]}: is missing; the run directory is damaged: restore the file, or "
                       "train the run again")
    return path


def environment(device: str) -> dict:
    """What run.json records of where a run ran: versions, device, host, git commit."""
    import torch

    from .. import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dlcli": __version__,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or platform.machine(),
        "host": platform.node(),
        "git_commit": git_commit(Path.cwd()),
    }


def git_commit(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
