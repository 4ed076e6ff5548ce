"""What this machine offers the data: free memory (to decide what to stream) and DataLoader workers."""

from __future__ import annotations

import os


def available_memory() -> int | None:
    """Bytes of memory free for new data (Linux MemAvailable: free pages plus reclaimable cache), or None when
    unknown. `stream: auto` compares a table's or an image folder's float32 size with it."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def worker_count(workers: int | str) -> int:
    """`data.workers`: a number, or `auto`: half the CPU cores, at most 8."""
    if workers != "auto":
        return int(workers)
    return max(1, min(8, (os.cpu_count() or 2) // 2))
