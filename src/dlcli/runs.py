"""Run directories: where they go, what they hold, and writing every file atomically.

    runs/<name>/<YYYYmmdd-HHMMSS>/
        config.yaml      the resolved config, as used
        run.json         status (running | completed | failed | interrupted), times, versions, device
        metrics.csv      a row per epoch
        checkpoints/     last.pt, best.pt: model, optimizer, schedule, epoch, RNG states
        scaler.json      the scaler fitted on the train rows (when data.scale is set)
        labels.json      class id -> original label (classification)
        summary.txt      the model summary
        evaluation.json  written by `dlcli evaluate`

A file is written to a temporary name in the same folder, flushed to disk and renamed over the
old one, so a killed run leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .errors import RunError

CONFIG = "config.yaml"
RUN_INFO = "run.json"
METRICS = "metrics.csv"
SCALER = "scaler.json"
LABELS = "labels.json"
SUMMARY = "summary.txt"
EVALUATION = "evaluation.json"
CHECKPOINTS = "checkpoints"


def write_atomic(path: Path, data: bytes | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    write_atomic(path, yaml.safe_dump(obj, sort_keys=False))


def save_torch(path: Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


def write_metrics(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt_number(v) for k, v in row.items()})
    write_atomic(path, out.getvalue())


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: _parse_number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _fmt_number(v):
    return repr(v) if isinstance(v, float) else v


def _parse_number(v: str):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


def new_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """runs/<name>/<timestamp>, with -2, -3, ... when runs start in the same second."""
    base = Path(root) / name
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        candidate = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()  # exclusive: two runs never share a folder
            return candidate
        except FileExistsError:
            continue
    raise RunError(f"cannot create a run folder under {base}")


def open_run(run_dir: str | Path) -> Path:
    """Check that a folder is a dlcli run directory."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    if not (path / CONFIG).exists() or not (path / RUN_INFO).exists():
        raise RunError(f"{path}: not a dlcli run directory (it has no {CONFIG} and {RUN_INFO})")
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: cannot read ({exc})") from None


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def environment(device: str) -> dict:
    import torch

    from . import __version__

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
