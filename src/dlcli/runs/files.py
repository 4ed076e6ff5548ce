"""Writing a run's files so that a killed run never leaves half a file, and reading them back.

A file is written to a temporary name in the same folder, flushed to disk and renamed over the
old one, so a reader sees either the old or the new file, never half of one.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import RunError


def write_atomic(path: Path, data: bytes | str, *, make_folders: bool = False) -> None:
    """Write a file whole or not at all, with the user's umask; RunError (naming it) where it cannot be written.

    The folder must exist, unless `make_folders`: a mistyped output folder is an error, not a new
    folder (a run's own folders are made by `run_folder`). A device or pipe (/dev/null, /dev/stdout) is written
    straight to: renaming a temporary file over it would replace the device.
    """
    path = Path(path)
    if make_folders and not path.parent.exists():
        try:
            path.parent.mkdir(parents=True)
        except OSError as exc:
            raise _not_written(path, exc) from None
    check_writable(path)
    if path.exists() and not path.is_file():
        if not (path.is_char_device() or path.is_fifo()):
            raise RunError(f"{path}: cannot be written (it is not a regular file, a folder, a device or a pipe)")
        return _write_special(path, data)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a file of the user's is 0644 under umask 022
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _not_written(path, exc) from None
        raise


def check_writable(path: Path) -> None:
    """RunError unless `path` can be a file: its folder exists, and it is not a folder itself. Commands
    check their output this way before the work, so a mistyped -o fails at once."""
    path = Path(path)
    if path.is_dir():
        raise RunError(f"{path}: cannot be written (it is a folder; give a file name)")
    if not path.parent.is_dir():
        what = f"{path.parent} is a file, not a folder" if path.parent.exists() else \
            f"its folder {path.parent} does not exist"
        raise RunError(f"{path}: cannot be written ({what})")


def run_folder(run_dir: Path, name: str) -> Path:
    """A run's sub-folder (plots/, checkpoints/), created when missing. One that is a link out of the run
    directory is refused, never followed: writing a run's files must not write elsewhere."""
    run_dir, folder = Path(run_dir), Path(run_dir) / name
    check_inside(run_dir, folder)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder}: is a file, not a folder; move it away so the run can write its {name}")
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise _not_written(folder, exc) from None
    return folder


def check_inside(run_dir: Path, path: Path) -> None:
    """RunError when `path` (a folder or file of the run) is a symbolic link that leads out of the run directory."""
    if path.is_symlink() and not path.resolve().is_relative_to(Path(run_dir).resolve()):
        raise RunError(f"{path}: is a link to {path.resolve()}, out of the run directory; refusing to "
                       "follow it (put the folder or file itself in the run)")


def _write_special(path: Path, data: bytes | str) -> None:
    """Write to a device or a pipe (`-o /dev/stdout | head`); a pipe nobody reads is an error, not a hang."""
    for attempt in range(100):  # a reader about to open the pipe gets a second
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # a FIFO without a reader: ENXIO at once
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise _not_written(path, exc) from None
            if attempt == 99:
                raise RunError(f"{path}: cannot be written (a pipe that nothing reads)") from None
            time.sleep(0.01)
    try:
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    except OSError as exc:
        raise _not_written(path, exc) from None


def _not_written(path: Path, exc: OSError) -> RunError:
    return RunError(f"{path}: cannot be written ({os_reason(exc)})")


def os_reason(exc: OSError) -> str:
    """What the system said, as a message quotes it: "no space left on device", "read-only file system"."""
    return (exc.strerror or str(exc)).lower()


_umask_lock = threading.Lock()


def user_file_mode() -> int:
    """The mode a new file of the user's gets: 0666 less the umask (0644 under umask 022)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask. Linux tells it in /proc; elsewhere it is read by setting it (to a strict
    value, so a file another thread creates meanwhile is never more open than it should be)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        old = os.umask(0o077)
        os.umask(old)
    return old


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    write_atomic(path, yaml.safe_dump(obj, sort_keys=False))


def write_metrics(path: Path, rows: list[dict]) -> None:
    MetricsFile(path).write(rows)


class MetricsFile:
    """metrics.csv, written whole (atomically) each time, formatting only the rows it has not formatted yet:
    formatting every row again made an epoch's bookkeeping grow with the epochs (a 400-epoch run spent 20% of
    its time there)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.columns: list[str] = []
        self.lines: list[str] = []
        self.rows: list[dict] = []  # the rows formatted, as they were

    def write(self, rows: list[dict]) -> None:
        n, self.columns = rows_after(self.rows, self.columns, rows)
        if n == 0:
            self.lines, self.rows = [], []
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for row in rows[n:]:
            writer.writerow([_fmt_number(row[k]) if k in row else "" for k in self.columns])
        if rows[n:]:
            self.lines.append(out.getvalue())
        self.rows += rows[n:]
        head = io.StringIO()
        csv.writer(head, lineterminator="\n").writerow(self.columns)
        write_atomic(self.path, head.getvalue() + "".join(self.lines))


def rows_after(done: list[dict], columns: list[str], rows: list[dict]) -> tuple[int, list[str]]:
    """Where a writer that has handled `done` (with these `columns`) goes on in `rows`, and the columns:
    len(done) when `rows` only adds rows of known columns after those same row objects, else 0 and every
    column in the order first met (all again)."""
    n = len(done)
    if len(rows) >= n and all(a is b for a, b in zip(rows, done)) and \
            all(k in columns for row in rows[n:] for k in row):
        return n, columns
    every: list[str] = []
    for row in rows:
        every += [k for k in row if k not in every]
    return 0, every


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
