"""Data-parallel training on PyTorch's own engine: `torch.distributed` and `DistributedDataParallel`.

A process is one rank of a data-parallel run when a launcher says so in its environment:
`torchrun` (and `dlcli train --nproc N`, which runs torch.distributed.run --standalone) sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `srun` sets SLURM_PROCID,
SLURM_STEP_NUM_TASKS (or SLURM_NTASKS) and SLURM_LOCALID, and the first host of the step's node
list is the master. Outside both, nothing here does anything and training is one process.

What a rank does differently, and where:
- `train.batch_size` stays the global batch: each rank takes its part of every batch of the one
  seeded permutation (engine/batches.py `shard`), so every rank takes the same number of steps;
- the loss of a rank's part is weighed by its share of the batch, so that DDP's mean of the
  gradients is the gradient of the whole batch's mean loss, as on one process;
- validation splits are cut into contiguous parts, one per rank, and the sums of the losses and
  the predictions are gathered: every row counts once (`evaluate`, `gather`);
- rank 0 alone writes the run directory (commands/train.py); the others log to logs/rank<r>.log.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import torch

from ..errors import DlcliError, RunError, TrainingFailed
from ..nn.metrics import Outputs
from .callbacks import Callback

LOGS = "logs"  # RUN_DIR/logs/rank<r>.log: what a rank other than 0 prints


@dataclass(frozen=True)
class World:
    """Where this process stands in a data-parallel run, as its launcher's environment says."""

    rank: int
    size: int
    local_rank: int
    launcher: str  # torchrun | slurm


@dataclass
class Group:
    """The process group this process joined: its world, backend and timeout, and every rank's (host, pid)."""

    world: World
    backend: str
    timeout: float
    peers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def size(self) -> int:
        return self.world.size


_group: Group | None = None


def from_env(env=os.environ) -> World | None:
    """The world a launcher started this process in; None when it runs alone."""
    if "RANK" in env and "WORLD_SIZE" in env:
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), "torchrun")
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    # SLURM_STEP_NUM_TASKS is set inside an srun step only: a batch script that runs dlcli without srun
    # is one process, even in a job of many tasks.
    if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env and tasks and int(tasks) > 1:
        return World(int(env["SLURM_PROCID"]), int(tasks), int(env.get("SLURM_LOCALID", 0)), "slurm")
    return None


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[03-04,07],cpu1` -> `gpu03`."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if match is None:
        return nodelist
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def current() -> Group | None:
    """The process group training runs in, or None for a run of one process."""
    return _group


def rank() -> int:
    return 0 if _group is None else _group.rank


def join(cfg, device: torch.device) -> torch.device:
    """Join the data-parallel run the environment describes (no-op outside one); the device this rank trains
    on (cuda:LOCAL_RANK for a GPU run). Checks that the global batch divides among the ranks."""
    global _group
    world = from_env()
    if world is None:
        return device
    backend = check(cfg, world.size, device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank % max(torch.cuda.device_count(), 1))
    if _group is not None:
        return device
    import torch.distributed as dist

    options = cfg.distributed
    if world.launcher == "slurm":
        os.environ.setdefault("MASTER_ADDR", first_host(os.environ.get("SLURM_STEP_NODELIST")
                                                        or os.environ.get("SLURM_JOB_NODELIST", "localhost")))
        os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, rank=world.rank, world_size=world.size,
                                timeout=timedelta(seconds=options.timeout))
    except (RuntimeError, ValueError) as exc:
        raise RunError(f"rank {world.rank} of {world.size} could not join the others ({backend} at "
                       f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}): {_first_line(exc)}") from None
    peers: list = [None] * world.size
    dist.all_gather_object(peers, (socket.gethostname(), os.getpid()))
    _group = Group(world, backend, float(options.timeout), peers)
    return device


def leave() -> None:
    """Leave the process group (at the end of training)."""
    global _group
    if _group is None:
        return
    import torch.distributed as dist

    _group = None
    if dist.is_initialized():
        dist.destroy_process_group()


def check(cfg, size: int, device: torch.device) -> str:
    """The config's batch and distributed: options against `size` ranks on `device`; the backend to use."""
    check_batch(cfg, size)
    options = cfg.distributed
    backend = options.backend if options.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise cfg.error("distributed.backend", f"nccl runs on GPUs only, and this run trains on {device}; "
                                               "use gloo (or auto)")
    if options.sync_batchnorm and device.type != "cuda":
        raise cfg.error("distributed.sync_batchnorm", "synchronized batch norm runs on GPUs only (nccl); set it "
                                                      "to false for a CPU run")
    return backend


def check_batch(cfg, size: int) -> None:
    """train.batch_size is the global batch: it must divide among `size` ranks."""
    batch = cfg.train.batch_size
    if batch % size:
        lower, upper = batch // size * size, -(-batch // size) * size
        nearer = f"{lower} or {upper}" if lower else str(upper)
        raise cfg.error("train.batch_size", f"is the global batch, split among {size} processes, so it must divide "
                                            f"by {size}; got {batch} (try {nearer})")


def info() -> dict:
    """What run.json records of the run's processes."""
    if _group is None:
        return {"world_size": 1, "backend": None}
    return {"world_size": _group.size, "backend": _group.backend, "launcher": _group.world.launcher}


def announce(fn: Callable | None, *, send: bool = True, what: str = "its set-up"):
    """Rank 0 runs `fn` and hands its result (a plain value: a run folder; None unless `send`) to every rank,
    or, when it fails, its error, so that no rank waits for a rank 0 that has given up. Other ranks pass
    fn=None and get the result."""
    if _group is None:
        return fn()
    import torch.distributed as dist

    box: list = [None]
    if _group.rank == 0:
        try:
            result = fn()
        except BaseException as exc:
            box[0] = ("error", str(exc) if isinstance(exc, DlcliError) else f"{type(exc).__name__}: {exc}")
            dist.broadcast_object_list(box, src=0)
            raise
        box[0] = ("ok", result if send else None)
        dist.broadcast_object_list(box, src=0)
        return result
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise RunError(f"rank 0 stopped during {what}: {value}")
    return value


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as DistributedDataParallel trains it (with synchronized batch norm, if asked); the model
    itself on one process. DDP broadcasts rank 0's weights and buffers as it starts."""
    if _group is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sync_batchnorm(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    if _group is None or not enabled:
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def shard() -> tuple[int, int] | None:
    """(rank, world size) for engine/batches.py, or None on one process."""
    return None if _group is None else (_group.rank, _group.size)


def part(split):
    """This rank's contiguous part of a split to evaluate (arrays, a map-style Dataset, or a streamed table);
    the parts of all ranks, in rank order, are the split's rows, each once."""
    from ..data import in_memory

    if _group is None:
        return split
    r, size = _group.rank, _group.size
    if in_memory(split):
        x, y = split
        lo, hi = _bounds(len(x), r, size)
        return x[lo:hi], (None if y is None else y[lo:hi])
    if hasattr(split, "sharded"):  # a streamed table: its chunks shared out among the ranks
        return split.sharded(r, size)
    from torch.utils.data import IterableDataset, Subset

    if isinstance(split, IterableDataset):
        return split  # no way to share it out: every rank evaluates all of it, and rank 0's result is kept
    lo, hi = _bounds(len(split), r, size)
    return Subset(split, range(lo, hi))


def part_weights(weights: np.ndarray | None) -> np.ndarray | None:
    """The event weights of this rank's part (`part`) of an in-memory split."""
    if _group is None or weights is None:
        return weights
    lo, hi = _bounds(len(weights), _group.rank, _group.size)
    return weights[lo:hi]


def _bounds(n: int, r: int, size: int) -> tuple[int, int]:
    edges = np.linspace(0, n, size + 1).round().astype(int)
    return int(edges[r]), int(edges[r + 1])


def sum_loss(total: torch.Tensor, count):
    """A loss summed over this rank's rows, and its divisor (the row count, or the event weights' sum, a
    tensor) -> both over all ranks, in one all-reduce."""
    if _group is None:
        return total, count
    import torch.distributed as dist

    both = torch.stack([total.detach().double(), torch.as_tensor(count, dtype=torch.float64, device=total.device)])
    dist.all_reduce(both)
    return both[0], (both[1] if isinstance(count, torch.Tensor) else int(both[1].item()))


def gather(outputs: Outputs) -> Outputs:
    """Every rank's outputs, concatenated in rank order."""
    if _group is None:
        return outputs
    import torch.distributed as dist

    parts: list = [None] * _group.size
    dist.all_gather_object(parts, (outputs.y_true, outputs.y_prob, outputs.weight))
    y_true = None if parts[0][0] is None else np.concatenate([p[0] for p in parts])
    weight = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
    return Outputs(outputs.task, y_true, np.concatenate([p[1] for p in parts]), weight)


def evaluate(evaluate_batches, model, loss_fn, batches, *, precision: str = "fp32"):
    """`inference.evaluate_batches` over this rank's part (`part`) -> the loss and outputs of the whole split."""
    from torch.utils.data import IterableDataset

    loss, outputs = evaluate_batches(model, loss_fn, batches, precision=precision)
    if _group is None:
        return loss, outputs
    if isinstance(batches.dataset, IterableDataset) and not hasattr(batches.dataset, "sharded"):
        return loss, outputs  # every rank evaluated the whole split (`part`)
    # evaluate_batches divides the loss's sum by batches.n, or by the event weights' sum; the rows evaluated
    # are the outputs' (a streamed table's part has fewer rows than its len(), the split's)
    if batches.weighted:
        count = float(batches.tensors.w.double().sum())
        local = 0.0 if loss is None or count == 0 else loss * count  # a part whose weights sum to 0 adds 0
        count = torch.tensor(count, dtype=torch.float64)
    else:
        local, count = (0.0 if loss is None else loss * batches.n), len(outputs.y_prob)
    total, count = sum_loss(torch.tensor(local, dtype=torch.float64, device=batches.device), count)
    return (None if loss is None else (total / (count if batches.weighted else max(count, 1))).item()), gather(outputs)


def decided_on_rank_zero(value: bool) -> bool:
    """A decision (stop early) as rank 0 made it, on every rank."""
    if _group is None:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def note_stopped(folder, signum: int) -> None:
    """A rank other than 0 stopped by a signal leaves RUN_DIR/logs/rank<r>.stopped before it exits, so that
    rank 0, whose next collective fails once this rank is gone, knows the run was stopped, not broken."""
    from pathlib import Path

    from ..runs.files import write_atomic

    if _group is None or _group.rank == 0:
        return
    try:
        write_atomic(Path(folder) / LOGS / f"rank{_group.rank}.stopped", f"{signum}\n")
    except (OSError, RunError):
        pass  # then rank 0 reports the run failed: still resumable from its last checkpoint


def clear_notes(folder) -> None:
    """Rank 0, before the other ranks may start: an earlier attempt's stopped notes are not this one's (a
    rank that crashes before it reaches its own log must not read as stopped)."""
    from pathlib import Path

    if _group is None or _group.rank != 0:
        return
    for note in (Path(folder) / LOGS).glob("rank*.stopped"):
        note.unlink(missing_ok=True)


def stopped_peers(folder) -> int | None:
    """The signal that stopped the other ranks, when one of them left a note that a signal stopped it and
    every one that has gone left one (a launcher passing SIGTERM on reaches the ranks one by one); None
    when a rank went without a word (killed, crashed) or none was stopped. A rank on another host cannot
    be seen to go, so it counts as stopped only with a note of its own (on a shared run folder)."""
    from pathlib import Path

    if _group is None:
        return None
    signums = {}
    for r in range(_group.size):
        try:
            signums[r] = int((Path(folder) / LOGS / f"rank{r}.stopped").read_text())
        except (OSError, ValueError):
            pass
    host = socket.gethostname()
    unseen = {r for r, (peer_host, _) in enumerate(_group.peers) if r != _group.rank and peer_host != host}
    if not signums or any(r not in signums for r in unseen | {r for r, _ in _gone()}):
        return None
    return next(iter(signums.values()))


def lost_ranks() -> list[str]:
    """Ranks on this host whose process has gone (killed, crashed): why the others stopped."""
    return [f"rank {r} (pid {pid})" for r, pid in _gone()]


def _gone() -> list[tuple[int, int]]:
    """(rank, pid) of the other ranks on this host whose process has gone."""
    if _group is None:
        return []
    host = socket.gethostname()
    return [(r, pid) for r, (peer_host, pid) in enumerate(_group.peers)
            if r != _group.rank and peer_host == host and not _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def failure(exc: BaseException) -> str | None:
    """Why a rank's training stopped when it was another rank's doing (a rank died, one stopped answering);
    None when the error is this rank's own."""
    if _group is None or isinstance(exc, (DlcliError, TrainingFailed)):  # this rank's own: a NaN loss is every rank's
        return None
    name = type(exc).__name__
    broken = name in ("DistBackendError", "DistNetworkError", "DistError", "DistStoreError") or (
        isinstance(exc, RuntimeError) and re.search(r"gloo|nccl|NCCL|Connection|timed? ?out|peer", str(exc)))
    lost = lost_ranks()
    # A killed peer's sockets are closed while its process is still exiting: give it a moment to be gone
    for _ in range(40 if broken else 0):
        if lost:
            break
        time.sleep(0.05)
        lost = lost_ranks()
    if lost:
        return (f"{' and '.join(lost)} of {_group.size} died, so the others stopped; the checkpoints of the last "
                "completed epoch are kept")
    if broken:
        return (f"another rank stopped answering (within distributed.timeout: {_group.timeout:g} s): "
                f"{_first_line(exc)}")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


_held = False  # hold_signals() was called: the process is on its way out, with stop signals ignored


def signals_held() -> bool:
    """Whether this rank ignores stop signals until it exits (hold_signals): nothing may hand them back."""
    return _held


def hold_signals() -> None:
    """A rank that is stopping ignores further stop signals: the launcher stops every rank once one has
    failed, and that must not cut rank 0's writing of run.json short."""
    global _held
    if _group is None:
        return
    import signal

    _held = True
    for name in ("SIGINT", "SIGTERM", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def log_to(folder) -> None:
    """A rank other than 0: its output (stdout and stderr, warnings and errors too) into RUN_DIR/logs/rank<r>.log."""
    import sys
    from pathlib import Path

    if _group is None or _group.rank == 0:
        return
    logs = Path(folder) / LOGS
    try:
        logs.mkdir(exist_ok=True)
        (logs / f"rank{_group.rank}.stopped").unlink(missing_ok=True)  # an earlier attempt's: not this one's
        fd = os.open(logs / f"rank{_group.rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    except OSError as exc:
        from ..runs.files import os_reason

        raise RunError(f"{logs}: rank {_group.rank} cannot write its log there ({os_reason(exc)})") from None
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


class RankLog(Callback):
    """A rank's line per epoch (and its notes) in its log: what it trained, for a look when something fails."""

    rank_zero_only = False

    def on_note(self, text):
        print(text, flush=True)

    def on_fit_start(self, training):
        print(f"rank {rank()} of {_group.size if _group else 1} (pid {os.getpid()}): {training.batches_per_epoch} "
              f"steps per epoch{', resumed' if training.resumed else ''}", flush=True)

    def on_epoch_end(self, training, row):
        values = "  ".join(f"{k} {v:.6g}" for k, v in row.items() if k != "epoch" and isinstance(v, float))
        print(f"epoch {row['epoch']}  {values}", flush=True)
