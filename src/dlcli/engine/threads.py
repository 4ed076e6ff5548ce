"""How many CPU threads torch computes with: `train.threads: auto | N`, `--threads N`.

torch starts one intra-op thread per core. On a machine others share (a login node, a JupyterHub
pod, a laptop running other work) those threads wait for each other behind the other work, and a
small network's steps get 10-75x slower; one thread is then much faster. On an idle machine the two
are level for small networks and more threads win for big ones. So `auto` decides on evidence: it
times the first training steps at one thread and at every core, keeps the faster, and times again
if the steps later get 2x slower (judged every 32 steps and 0.1 s), at most 3 times. `evaluate` and
`predict` time one batch both ways.

Timings are means, never medians or minimums: on a loaded machine most steps at every core run at
full speed and one in ten waits a whole scheduler time slice (4 ms) for a descheduled thread, so the
median of 2 threads looked level with 1 while the epoch took 7x as long (benchmarks/RESULTS.md,
2026-12-02). For the same reason each count is timed for 0.1 s at least, not for a few 0.4 ms steps.

A count the user set (`OMP_NUM_THREADS`, or `torch.set_num_threads` before calling dlcli) is kept
as it is. Processes that share the machine's cores (tuning workers, data-parallel ranks) get
`cores() // processes` each.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

WARMUP_STEPS = 2  # per candidate: the first steps after a change pay for it (thread pool start, caches)
TIMED_STEPS = 8  # per candidate, after its warm-up, at least
TIMED_SECONDS = 0.1  # per candidate, at least: long enough to see the scheduler's time slices
MAX_TIMED_STEPS = 400  # per candidate, at most (0.1 s of steps shorter than 0.25 ms)
SLOWER = 2.0  # steps this much slower than when chosen: time the candidates again
RECHECK_WINDOW = 32  # steps (and TIMED_SECONDS), whose mean is compared with the chosen count's
MAX_RECHECKS = 3

_set_by_us: int | None = None  # the count dlcli last set: not a user's choice, when a notebook trains again


def cores(processes: int = 1) -> int:
    """The CPU cores this process may use (its affinity mask, as a container or `taskset` limits it),
    shared among `processes` processes."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, n // max(1, processes))


def user_setting() -> str | None:
    """Why the thread count is the user's to keep: `OMP_NUM_THREADS=2`, `torch.set_num_threads(3)`; else None."""
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS'].strip()}"
    current = torch.get_num_threads()
    if current != _set_by_us and current != cores():
        return f"torch.set_num_threads({current})"
    return None


def set_threads(n: int) -> None:
    global _set_by_us
    torch.set_num_threads(n)
    _set_by_us = n


def one_interop_thread() -> None:
    """A single inter-op thread: dlcli runs one op at a time. torch allows setting it only before its first
    parallel work; afterwards it stays as it is."""
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


@dataclass
class Threads:
    """The thread count a run computes with, and why: what run.json records and the start of a run prints."""

    count: int
    why: str
    tuner: ThreadTuner | None = None  # auto: the callback that times training steps and decides

    def summary(self) -> dict:
        """What run.json records: the tuner's choice once it has made one, else the count set at the start."""
        if self.tuner is not None and self.tuner.decided:
            return {"count": torch.get_num_threads(), "why": self.tuner.why}
        return {"count": self.count, "why": self.why}

    def line(self) -> str:
        return f"threads: {self.count} ({self.why})"


def choose_threads(option: int | str, device: torch.device, *, processes: int = 1,
                   timer: Callable[[], float] = time.perf_counter) -> Threads:
    """Apply `train.threads` (`--threads`): N as given, or `auto`: the user's own setting, else one thread on
    one core, else a tuner that decides while training (`Threads.tuner`, a per-step callback)."""
    if option != "auto":
        set_threads(int(option))
        return Threads(int(option), "train.threads" if processes == 1 else f"train.threads, {processes} processes")
    kept = user_setting()
    if kept is not None:
        return Threads(torch.get_num_threads(), kept)
    one_interop_thread()
    n = cores(processes)
    if device.type != "cpu":
        set_threads(n)
        return Threads(n, f"{device.type} run: the CPU only feeds it")
    if n == 1:
        set_threads(1)
        return Threads(1, "one core" if processes == 1 else f"one core for each of {processes} processes")
    return Threads(n, "auto: timing the first steps", ThreadTuner([1, n], timer))


def fastest(run: Callable[[], object], candidates: list[int], *, repeats: int = 3,
            timer: Callable[[], float] = time.perf_counter) -> tuple[int, dict[int, float]]:
    """The thread count among `candidates` that runs `run` fastest (the mean of `repeats`, after a warm-up),
    and each one's seconds: how evaluate and predict choose, on one batch."""
    seconds = {}
    for n in candidates:
        set_threads(n)
        run()
        times = []
        for _ in range(repeats):
            start = timer()
            run()
            times.append(timer() - start)
        seconds[n] = statistics.fmean(times)
    best = min(candidates, key=seconds.__getitem__)
    set_threads(best)
    return best, seconds


def choose_inference_threads(option: int | str, device: torch.device, run: Callable[[], object]) -> Threads:
    """`threads` for evaluate and predict: as for training, with `auto` timing `run` (one batch) both ways."""
    threads = choose_threads(option, device)
    if threads.tuner is None:
        return threads
    best, seconds = fastest(run, threads.tuner.candidates)
    return Threads(best, _compare(best, seconds, "batch"))


@dataclass
class ThreadTuner:
    """Times training steps at each candidate thread count, keeps the fastest by mean step time, and times
    again (at most MAX_RECHECKS times) when the steps get SLOWER times slower than the chosen count ran:
    another job started beside this one.

    A callback (engine/callbacks.py) by its hooks, not by subclassing: setup.py, which callbacks.py
    sits above, creates it."""

    candidates: list[int]
    timer: Callable[[], float] = time.perf_counter
    decided: bool = False
    why: str = ""
    rechecks: int = 0
    notify: Callable[[str], None] = print  # where the decision is said: fit passes it to the callbacks' on_note
    _times: dict[int, list[float]] = field(default_factory=dict)
    _trial: list[int] = field(default_factory=list)
    _last: float | None = None
    _chosen_step: float = 0.0
    _recent: list[float] = field(default_factory=list)

    rank_zero_only = False  # every process chooses for itself
    per_batch = True

    def on_fit_start(self, training):
        self._start_trial()

    def on_epoch_end(self, training, row):
        pass

    def _start_trial(self) -> None:
        self._recent = []
        self._times = {n: [] for n in self.candidates}
        self._trial = list(self.candidates)
        set_threads(self._trial[0])

    def on_epoch_start(self, training, epoch):
        self._last = self.timer()

    def on_train_batch_end(self, training, b):
        now = self.timer()
        step, self._last = now - self._last, now
        if self.decided:
            self._recent.append(step)
            if len(self._recent) >= RECHECK_WINDOW and sum(self._recent) >= TIMED_SECONDS:
                self._check_slower(self._recent)
                self._recent = []
            return
        n = self._trial[0]
        self._times[n].append(step)
        if not self._timed_enough(n) and not self._clearly_slower(n):
            return
        self._trial.pop(0)
        if self._trial:
            set_threads(self._trial[0])
            return
        means = {k: statistics.fmean(v[WARMUP_STEPS:]) for k, v in self._times.items()}
        best = min(self.candidates, key=means.__getitem__)
        set_threads(best)
        self.decided, self._chosen_step = True, means[best]
        self.why = _compare(best, means, "step")
        self.notify(f"threads: {best} ({self.why})")

    def _timed_enough(self, n: int) -> bool:
        timed = self._times[n][WARMUP_STEPS:]
        return len(timed) >= MAX_TIMED_STEPS or (len(timed) >= TIMED_STEPS and sum(timed) >= TIMED_SECONDS)

    def _clearly_slower(self, n: int) -> bool:
        """After 3 timed steps and a quarter of TIMED_SECONDS, a count running 2x slower than one timed before it
        needs no more of them: on a busy machine each of its steps may cost 40 of the other's. (Not after 3
        steps alone: one 4 ms hiccup among three 0.4 ms steps is no evidence.)"""
        timed = self._times[n][WARMUP_STEPS:]
        done = [statistics.fmean(v[WARMUP_STEPS:]) for k, v in self._times.items() if k != n
                and len(v) > WARMUP_STEPS]
        return (len(timed) >= 3 and sum(timed) >= TIMED_SECONDS / 4 and bool(done)
                and statistics.fmean(timed) > 2 * min(done))

    def on_fit_end(self, training):
        pass

    def on_note(self, text):
        pass

    def _check_slower(self, steps: list[float]) -> None:
        if self.rechecks < MAX_RECHECKS and statistics.fmean(steps) > SLOWER * self._chosen_step:
            self.rechecks, self.decided = self.rechecks + 1, False  # the machine got busier: time them again
            self._start_trial()


def _compare(best: int, seconds: dict[int, float], unit: str) -> str:
    others = ", ".join(f"{seconds[n] * 1e3:.3g} ms/{unit} at {n}" for n in seconds if n != best)
    return f"{seconds[best] * 1e3:.3g} ms/{unit} vs {others}"
