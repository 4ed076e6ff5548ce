"""One process per run directory: `run.lock`, held while a training or a resume writes to the run.

The lock is an exclusive `flock` on the file, which the kernel releases when the process ends, however
it ends: a SIGKILL leaves no stale lock, and `dlcli runs` tells a killed run (lock free, run.json still
`running`) from a live one. The file holds the owner's pid, host and start time, for the message a
second process gets. Taking the lock removes the temporary files a killed writer left. Where `fcntl`
is missing (Windows), runs are not locked.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from ..errors import RunError
from .files import now, os_reason
from .layout import CHECKPOINTS, PLOTS

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK = "run.lock"


class RunLock:
    """`with RunLock(folder):` holds the run's lock, or raises RunError naming the process that does."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if fcntl is None:
            return
        for _ in range(100):  # retried while another process swaps the file (release unlinks it)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise RunError(f"{self.path}: cannot be written ({os_reason(exc)}); "
                               "the run directory must be writable to train in it") from None
            try:
                _lock(fd, fcntl.LOCK_EX)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunError(f"{self.path.parent}: is in use by {holder}; wait for it to end, or stop it "
                               "(a second training or resume of one run is refused)") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the file was unlinked by its last owner after we opened it: take the new one
        else:
            raise RunError(f"{self.path}: could not be locked")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": platform.node(), "since": now()}).encode())
        self.fd = fd
        remove_leftovers(self.path.parent)

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # still holding the lock: no one else can have taken this file
        os.close(self.fd)
        self.fd = None


def remove_leftovers(folder: Path) -> list[Path]:
    """The temporary files of writes a killed process left (write_atomic's `.<name>.*.tmp`), removed: only
    the lock's holder may, since a live writer's temporary file must not vanish under it."""
    found = [p for where in (folder, folder / CHECKPOINTS, folder / PLOTS) if where.is_dir()
             for p in where.glob(".*.tmp") if p.is_file() and not p.is_symlink()]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def is_locked(folder: Path) -> bool:
    """Whether a live process holds the run's lock (False where locks are not supported)."""
    path = Path(folder) / LOCK
    if fcntl is None or not path.is_file():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        _lock(fd, fcntl.LOCK_SH)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the shared lock, if it was taken
    return False


def _lock(fd: int, kind: int) -> None:
    """flock, non-blocking, retried for a moment: `is_locked` takes the lock for an instant to test it."""
    import time

    for attempt in range(20):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if kind == fcntl.LOCK_SH or attempt == 19:
                raise
            time.sleep(0.05)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"process {info['pid']} on {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
