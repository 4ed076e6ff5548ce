"""Writing a run's files so that a killed run never leaves half a file, and reading them back.

A file is written to a temporary name in the same folder, flushed to disk and renamed over the
old one, so a reader sees either the old or the new file, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import RunError


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file whole or not at all; RunError (naming it) where it cannot be written."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise RunError(f"{path}: cannot be written ({(exc.strerror or str(exc)).lower()})") from None
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    write_atomic(path, yaml.safe_dump(obj, sort_keys=False))


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


DAMAGED = "the run directory is damaged: restore the file, or train the run again"


def read_json(path: Path, kind: type = dict) -> Any:
    """A run's JSON file, which must hold a `kind` (an object); RunError, one line naming the file, if not."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'is missing'}; {DAMAGED}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunError(f"{path}: is not UTF-8 text; {DAMAGED}") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not text.strip():
        raise RunError(f"{path}: is empty; {DAMAGED}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: is not JSON (line {exc.lineno}: {exc.msg}); {DAMAGED}") from None
    if not isinstance(value, kind):
        raise RunError(f"{path}: holds a JSON {type(value).__name__}, not an object; {DAMAGED}")
    return value


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
