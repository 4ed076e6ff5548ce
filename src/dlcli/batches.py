"""Splits -> batches on the training device, and whole-split evaluation.

Two ways in. A split held in memory becomes two tensors, kept on the GPU when they fit, and a batch
is a slice of a device-side permutation: no per-sample Python, no host sync. A split that is a torch
Dataset (streamed from disk, or augmented per sample) goes through a DataLoader with worker
processes, pinned memory and non-blocking copies. Both yield `(x, y)` with y in the loss's format:
float (n, 1) for binary, int64 (n,) for multi-class, float (n, k) for regression.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .data import in_memory
from .metrics import Outputs
from .models import Maxout


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from .errors import DlcliError

        raise DlcliError(f"device '{name}' was asked for but no CUDA GPU is available here; use device: cpu or auto")
    return torch.device(name)


def target_format(y: torch.Tensor, task: str) -> torch.Tensor:
    """Labels or values -> what the task's losses take."""
    if task == "multiclass":
        return y.long().reshape(-1)
    if task == "binary":
        return y.float().reshape(-1, 1)
    return y.float().reshape(len(y), -1)


@dataclass
class Tensors:
    """One split as two tensors, targets in the loss's format."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


def to_tensors(x: np.ndarray, y: np.ndarray, task: str, device: torch.device) -> Tensors:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return Tensors(xt.to(device), target_format(torch.from_numpy(np.asarray(y)), task).to(device))


def data_device(device: torch.device, nbytes: int) -> torch.device:
    """Where in-memory data lives: on the training device when it takes under half its free memory."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes < free // 2 else torch.device("cpu")


def worker_count(workers: int | str) -> int:
    if workers != "auto":
        return int(workers)
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class Batches:
    """The batches of one split for one epoch at a time: `for xb, yb in batches.epoch(e): ...`."""

    def __init__(self, split, task: str, device: torch.device, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, workers: int | str = "auto", memory_format=torch.contiguous_format):
        self.task, self.device, self.batch_size, self.shuffle, self.seed = task, device, batch_size, shuffle, seed
        self.memory_format = memory_format
        if in_memory(split):
            x, y = split
            self.holder = data_device(device, x.nbytes + y.nbytes)
            self.tensors = to_tensors(x, y, task, self.holder)
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
        return -(-self.n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.streamed:
            return self._slices()
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        # Augmentation in the main process draws from the global RNG: seed it per epoch so a resumed
        # run sees the same random crops as an uninterrupted one. Workers get seeds from the generator.
        torch.manual_seed(self.seed * 100_003 + epoch)
        return self._loaded()

    def _slices(self):
        t = self.tensors
        if self.shuffle:  # the permutation is cut into batches in one call, not sliced per step
            order = torch.randperm(self.n, device=self.holder, generator=self.generator)
            pieces = ((t.x[idx], t.y[idx]) for idx in order.split(self.batch_size))
        else:
            pieces = zip(t.x.split(self.batch_size), t.y.split(self.batch_size))
        copy = self.holder != self.device  # data too large for the GPU: copy batch by batch
        reformat = self.memory_format is not torch.contiguous_format and t.x.ndim == 4
        for xb, yb in pieces:
            if copy:
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            if reformat:
                xb = xb.contiguous(memory_format=self.memory_format)
            yield xb, yb

    def _loaded(self):
        from torch.utils.data import DataLoader, IterableDataset

        if self.loader is None:
            iterable = isinstance(self.dataset, IterableDataset)
            self.loader = DataLoader(
                self.dataset, batch_size=self.batch_size, shuffle=self.shuffle and not iterable,
                num_workers=self.workers, pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0, generator=self.generator,
                prefetch_factor=4 if self.workers > 0 else None,
            )
        for xb, yb in self.loader:
            xb = xb.to(self.device, non_blocking=True)
            if self.memory_format is not torch.contiguous_format and xb.ndim == 4:
                xb = xb.contiguous(memory_format=self.memory_format)
            yield xb, target_format(yb, self.task).to(self.device, non_blocking=True)


class Gathered:
    """A pass's raw model outputs and targets, batch after batch, kept on the device.

    Each batch's tensors are appended to a list (under a microsecond; copying them into a
    preallocated buffer cost 4 us each per step), and every 16 batches the list is concatenated
    into one chunk. Each small tensor kept alive splits a block the next step's activations would
    have reused, so the heap grows until they are freed. On 1M rows in batches of 1024, whose
    outputs and targets take 8 MiB, the epoch's heap grew by 300 MiB when every batch's tensors
    were kept to the end, by 31-55 MiB with chunks of 256 batches, and by 10 MiB with chunks of 16.
    """

    CHUNK = 16

    def __init__(self):
        self.chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.out: list[torch.Tensor] = []
        self.y: list[torch.Tensor] = []

    def add(self, out: torch.Tensor, y: torch.Tensor) -> None:
        self.out.append(out)
        self.y.append(y)
        if len(self.out) == self.CHUNK:
            self.chunks.append((torch.cat(self.out), torch.cat(self.y)))
            self.out, self.y = [], []

    def outputs(self, task: str, head) -> Outputs:
        """-> Outputs for the metrics: the head applied, one host transfer. Empties the gatherer.

        The parts are written one by one into the result arrays, each freed once written, so the
        pass's outputs are never held twice over as a concatenation holds them; binary class ids
        take a byte a row. Together with one-byte binary predictions (`Outputs.y_pred`) this lowered
        the peak at the end of a 1M-row epoch by 14 MiB.
        """
        parts = self.chunks + list(zip(self.out, self.y))
        self.chunks, self.out, self.y = [], [], []
        n = sum(len(o) for o, _ in parts)
        out, y = parts[0]
        binary = task == "binary"  # p(positive) (n, 1) -> both classes' probabilities (n, 2), ids 0/1
        y_prob = out.new_empty((n, 2) if binary else (n, *out.shape[1:]), dtype=torch.float32)
        y_true = y.new_empty((n,), dtype=torch.uint8) if binary else y.new_empty((n, *y.shape[1:]))
        parts.reverse()  # popped from the end: first part first
        start = 0
        with torch.no_grad():
            while parts:
                out, y = parts.pop()
                stop = start + len(out)
                p = head(out.float())
                if binary:
                    y_prob[start:stop, 1:] = p
                    y_prob[start:stop, :1] = 1 - p
                else:
                    y_prob[start:stop] = p
                y_true[start:stop] = y.reshape(stop - start, *y_true.shape[1:])
                start = stop
                del out, y, p
        return Outputs(task, y_true.cpu().numpy(), y_prob.cpu().numpy())


@torch.inference_mode()
def evaluate_batches(model, loss_fn, batches: Batches, *, precision: str = "fp32") -> tuple[float, Outputs]:
    """Loss and outputs over a whole split, batched, without gradients; one host transfer at the end."""
    total = torch.zeros((), device=batches.device)
    gathered = Gathered()
    with inference(model), autocast(batches.device, precision):
        for xb, yb in batches.epoch(0):
            raw = model(xb)
            total += loss_fn(raw, yb).float() * len(xb)
            gathered.add(raw, yb)
    return (total / max(batches.n, 1)).item(), gathered.outputs(batches.task, model.head)


# Layers whose output is always a new tensor, never a view of their input: an activation right after
# one of these may overwrite that output in place. (After a flatten, a reshape or an eval-mode
# dropout it would overwrite the layer's input: possibly the caller's data.)
_FRESH_OUTPUT = (torch.nn.Linear, torch.nn.modules.conv._ConvNd, torch.nn.modules.batchnorm._BatchNorm,
                 torch.nn.modules.pooling._MaxPoolNd, torch.nn.modules.pooling._AvgPoolNd, Maxout)


@contextlib.contextmanager
def inference(model):
    """Eval mode, with the activations that may run in place doing so; both restored afterwards.

    Without autograd, an in-place ReLU saves allocating (and page-faulting) a second copy of a
    conv layer's output: measured 10-20% faster inference for the lecture's CNN on a CPU.
    """
    was_training = model.training
    model.eval()
    body = list(getattr(model, "body", model).children())
    flipped = [m for before, m in zip(body, body[1:])
               if isinstance(before, _FRESH_OUTPUT) and getattr(m, "inplace", None) is False]
    for m in flipped:
        m.inplace = True
    try:
        yield
    finally:
        for m in flipped:
            m.inplace = False
        model.train(was_training)


def for_inference(model, device: torch.device, batch_size: int | str) -> tuple[torch.memory_format, int]:
    """How a trained network runs best for evaluation and predict: (memory format, batch size).

    Convolutional networks run channels-last (measured 1.7-2.4x faster on a CPU; on CUDA not
    measured apart from the rest of evaluate). On a CPU `auto` gives them batches of 128: a conv
    layer's output for 512 images of 28 x 28 is already over 32 MiB, which the C allocator hands
    back to the system after every batch and then page-faults in again (measured on the lecture's
    CNN: in a bare loop 128 ran 1.6-2x faster than 512; through evaluate_split the two were level).
    Moves the model's weights to that format: call it on a model that is not being trained.
    """
    batch_size = inference_batch_size(model, device, batch_size)
    if not convolutional(model):
        return torch.contiguous_format, batch_size
    model.to(memory_format=torch.channels_last)
    return torch.channels_last, batch_size


def inference_batch_size(model, device: torch.device, batch_size: int | str) -> int:
    """`train.eval_batch_size`, with `auto` resolved."""
    if batch_size != "auto":
        return int(batch_size)
    return 128 if convolutional(model) and device.type == "cpu" else 4096


def convolutional(model) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def evaluate_split(model, loss_fn, split, task: str, batch_size: int | str, device: torch.device, *,
                   workers: int | str = "auto", precision: str = "fp32") -> tuple[float, Outputs]:
    """A split as data.py gives it (arrays or a torch Dataset) -> loss and outputs, from a trained model."""
    memory_format, batch_size = for_inference(model, device, batch_size)
    batches = Batches(split, task, device, batch_size, workers=workers, memory_format=memory_format)
    return evaluate_batches(model, loss_fn, batches, precision=precision)


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


_NO_AUTOCAST = contextlib.nullcontext()  # reusable: entering it does nothing


def autocast(device: torch.device, precision: str):
    """Mixed precision for bf16/fp16; for fp32 a context that costs nothing per batch."""
    if precision not in AUTOCAST_DTYPES:
        return _NO_AUTOCAST
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
