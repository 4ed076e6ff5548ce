"""Splits -> batches on the training device.

Two ways in. A split held in memory becomes two tensors, kept on the GPU when they fit, and a batch
is a slice of a device-side permutation: no per-sample Python, no host sync. A split that is a torch
Dataset (streamed from disk, or augmented per sample) goes through a DataLoader with worker
processes, pinned memory and non-blocking copies. Both yield `(x, y)` with y in the loss's format:
float (n, 1) for binary, int64 (n,) for multi-class, float (n, k) for regression; y is None for
inputs without targets (predict).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..data import in_memory
from ..data.resources import worker_count


def target_format(y: torch.Tensor, task: str) -> torch.Tensor:
    """Labels or values -> what the task's losses take."""
    if task == "multiclass":
        return y.long().reshape(-1)
    if task == "binary":
        return y.float().reshape(-1, 1)
    return y.float().reshape(len(y), -1)


@dataclass
class Tensors:
    """One split as two tensors, targets in the loss's format (None: inputs only)."""

    x: torch.Tensor
    y: torch.Tensor | None
    w: torch.Tensor | None = None  # float32 event weights (n,), data.weight

    def __len__(self) -> int:
        return self.x.shape[0]

    def rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The rows `idx`, in that order. `index_select` copies whole rows; `x[idx]` (advanced indexing)
        goes element by element and took 3x as long on the CPU (benchmarks/RESULTS.md)."""
        return (self.x.index_select(0, idx), None if self.y is None else self.y.index_select(0, idx),
                None if self.w is None else self.w.index_select(0, idx))


def to_tensors(x: np.ndarray, y: np.ndarray | None, task: str, device: torch.device) -> Tensors:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    return Tensors(xt, None if y is None else target_format(torch.from_numpy(np.asarray(y)), task).to(device))


def data_device(device: torch.device, nbytes: int) -> torch.device:
    """Where in-memory data lives: on the training device when it takes under half its free memory."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes < free // 2 else torch.device("cpu")


class Batches:
    """The batches of one split for one epoch at a time: `for xb, yb in batches.epoch(e): ...`."""

    def __init__(self, split, task: str, device: torch.device, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, workers: int | str = "auto", memory_format=torch.contiguous_format,
                 weights: np.ndarray | None = None, shard: tuple[int, int] | None = None):
        self.task, self.device, self.batch_size, self.shuffle, self.seed = task, device, batch_size, shuffle, seed
        # Data-parallel training: (rank, world size); each batch is this rank's part of a global batch.
        self.shard = shard
        self._global_rows: int | None = None  # a streamed table's global batch being cut among the ranks
        self._global_weight: torch.Tensor | None = None  # the event weights' sum of the global batch being taken
        self.memory_format = memory_format
        if in_memory(split):
            x, y = split
            self.holder = data_device(device, x.nbytes + (0 if y is None else y.nbytes))
            self.tensors = to_tensors(x, y, task, self.holder)
            if weights is not None:
                self.tensors.w = torch.from_numpy(np.asarray(weights, dtype=np.float32)).to(self.holder)
            self.dataset = None
            self.generator = torch.Generator(device=self.holder).manual_seed(seed)
            self.n = len(self.tensors)
        else:
            self.tensors, self.dataset, self.n = None, split, len(split)
            self.holder = torch.device("cpu")
            self.generator = torch.Generator().manual_seed(seed)
            self.workers = worker_count(workers)
            self.loader = None

    @property
    def streamed(self) -> bool:
        return self.dataset is not None

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.shard is not None and not self._iterable:  # a last batch too short to give each rank a row is left out
            return self.n // self.batch_size + (self.n % self.batch_size >= self.shard[1])
        return -(-self.n // self.batch_size)

    @property
    def weighted(self) -> bool:
        if self.tensors is None:  # a streamed table with data.weight serves (x, y, w) batches
            return bool(getattr(self.dataset, "weighted", False))
        return self.tensors.w is not None

    @property
    def _iterable(self) -> bool:
        from torch.utils.data import IterableDataset

        return isinstance(self.dataset, IterableDataset)

    def share(self, b: int, rows: int) -> float:
        """Data-parallel training: the fraction of global batch `b` that this rank's `rows` are, times the world
        size. DDP averages the ranks' gradients; weighing each rank's mean loss by its share makes that
        average the gradient of the global batch's mean loss, also for a last batch that does not divide."""
        world = self.shard[1]
        if self._iterable:  # a streamed table's ranks read batches of batch_size / world rows (or cut global ones)
            return rows * world / (self._global_rows or self.batch_size)
        return rows * world / min(self.batch_size, self.n - b * self.batch_size)

    def denominator(self, weights: torch.Tensor | None) -> torch.Tensor | None:
        """Data-parallel training with event weights: the divisor of this rank's weighted loss sum, the global
        batch's sum(w) over the world size, so that DDP's mean of the gradients is the gradient of the global
        batch's sum(w l) / sum(w). None on one process or without weights (the loss divides by its own sum)."""
        if self.shard is None or weights is None:
            return None
        return self._global_weight / self.shard[1]

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        if not self.streamed:
            return ((xb, yb) for xb, yb, _ in self._slices())
        return ((xb, yb) for xb, yb, _ in self._streamed(epoch))

    def weighted_epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
        """As `epoch`, each batch with its event weights (None without data.weight)."""
        if not self.streamed:
            return self._slices()
        return self._streamed(epoch)

    def _streamed(self, epoch: int):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        # Augmentation in the main process draws from the global RNG: seed it per epoch so a resumed
        # run sees the same random crops as an uninterrupted one. Workers get seeds from the generator.
        torch.manual_seed(self.seed * 100_003 + epoch)
        yield from self._loaded()

    def _slices(self):
        t = self.tensors
        if self.shard is not None:  # every rank draws the same permutation and takes its part of each batch
            order = (torch.randperm(self.n, device=self.holder, generator=self.generator) if self.shuffle
                     else torch.arange(self.n, device=self.holder))
            pieces = self._shard_pieces(order)
        elif self.shuffle:  # the permutation is cut into batches in one call, not sliced per step
            order = torch.randperm(self.n, device=self.holder, generator=self.generator)
            pieces = (t.rows(idx) for idx in order.split(self.batch_size))
        else:
            k = -(-self.n // self.batch_size)
            pieces = zip(t.x.split(self.batch_size), [None] * k if t.y is None else t.y.split(self.batch_size),
                         [None] * k if t.w is None else t.w.split(self.batch_size))
        copy = self.holder != self.device  # data too large for the GPU: copy batch by batch
        reformat = self.memory_format is not torch.contiguous_format and t.x.ndim == 4
        for xb, yb, wb in pieces:
            if copy:
                xb = xb.to(self.device, non_blocking=True)
                yb = None if yb is None else yb.to(self.device, non_blocking=True)
                wb = None if wb is None else wb.to(self.device, non_blocking=True)
            if reformat:
                xb = xb.contiguous(memory_format=self.memory_format)
            yield xb, yb, wb

    def _shard_pieces(self, order: torch.Tensor):
        """This rank's part of each global batch of `order` (as `_parts`), noting the global batch's weight sum,
        the same on every rank: each holds all the split's weights."""
        t = self.tensors
        for idx, part in _parts(order, self.batch_size, *self.shard, whole=True):
            if t.w is not None:
                self._global_weight = t.w[idx].sum()
            yield t.rows(part)

    def _loaded(self):
        from torch.utils.data import DataLoader, IterableDataset

        iterable = isinstance(self.dataset, IterableDataset)
        if self.loader is None:
            # A streamed table serves whole batches (TableStream.batches): no per-sample collation.
            whole = hasattr(self.dataset, "batches")
            dataset = self.dataset.batches(self.batch_size).transfers() if whole else self.dataset
            sharded = {}
            if self.shard is not None and whole and self.dataset.chunks() >= self.shard[1]:
                # each rank reads its own chunks, in batches of its part of the global batch
                dataset = self.dataset.sharded(*self.shard).batches(self.batch_size // self.shard[1]).transfers()
            elif self.shard is not None and not iterable:  # each rank reads its part of every global batch
                sharded = {"batch_sampler": _ShardSampler(self)}
            self.loader = DataLoader(
                dataset, **(sharded or {"batch_size": None if whole else self.batch_size,
                                        "shuffle": self.shuffle and not iterable}),
                num_workers=self.workers, pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0, generator=None if sharded else self.generator,
                prefetch_factor=getattr(dataset, "prefetch", 4) if self.workers > 0 else None,
            )
        source = self.loader
        if getattr(source.dataset, "per_transfer", 1) > 1:  # a streamed table's worker sends batches in groups
            from ..data.stream import ungrouped

            source = ungrouped(source, source.dataset.batch_size)
        if self.shard is None or not iterable:
            loaded = source
        elif self.loader.dataset.shard == (0, 1):  # fewer chunks than ranks: each rank cuts every global batch
            loaded = self._cut(source)
        else:
            loaded = _even(source, self.device)
        for xb, yb, *wb in loaded:  # wb: [w] from a weighted streamed table
            xb = xb.to(self.device, non_blocking=True)
            if self.memory_format is not torch.contiguous_format and xb.ndim == 4:
                xb = xb.contiguous(memory_format=self.memory_format)
            yield (xb, target_format(yb, self.task).to(self.device, non_blocking=True),
                   wb[0].to(self.device, self._weight_dtype, non_blocking=True) if wb else None)

    @property
    def _weight_dtype(self) -> torch.dtype:
        """A streamed table's weights stay float64 (evaluate reports them as the file has them); MPS has none."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    def _cut(self, loader):
        """A streamed table read whole by every rank (it has fewer chunks than ranks): this rank's part of
        each global batch, as for data in memory."""
        rank, world = self.shard
        for batch in loader:
            if len(batch[0]) < world:
                continue
            self._global_rows = len(batch[0])
            yield tuple(t.tensor_split(world)[rank] for t in batch)


def _parts(order: torch.Tensor, batch_size: int, rank: int, world: int, *, whole: bool = False):
    """Rank `rank`'s part of each global batch of `order` (with `whole`: the global batch and the part); a last
    batch with fewer rows than ranks is left out (every rank must take the same number of steps)."""
    for idx in order.split(batch_size):
        if len(idx) < world:
            break
        part = idx.tensor_split(world)[rank]
        yield (idx, part) if whole else part


class _ShardSampler:
    """Data-parallel training from a map-style Dataset (image files, augmented images): the indices of this
    rank's part of each global batch of the epoch's permutation, drawn from the same seeded generator on
    every rank. A rank reads only its own files."""

    def __init__(self, batches: Batches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        b = self.batches
        order = torch.randperm(b.n, generator=b.generator) if b.shuffle else torch.arange(b.n)
        for idx in _parts(order, b.batch_size, *b.shard):
            yield idx.tolist()


def _even(loader, device: torch.device):
    """The batches of a rank that reads its own chunks of a streamed table, as long as every rank has one:
    the ranks' shares of rows differ by up to a chunk, and a rank that stepped alone would wait forever."""
    import torch.distributed as dist

    flag = torch.ones((), dtype=torch.int32, device=device)
    for batch in loader:
        flag.fill_(1)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if int(flag.item()) == 0:
            return
        yield batch
    flag.fill_(0)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
