"""The one batched-inference loop: a trained network over a whole split, for validation, evaluate and predict.

Outputs and targets stay on the device until the split is done, then come back in one transfer;
the network runs under `torch.inference_mode`, in eval mode, in its fastest memory format.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from ..nn.layers import Maxout
from ..nn.metrics import Outputs
from .batches import Batches
from .device import autocast
from .threads import choose_inference_threads


class Gathered:
    """A pass's raw model outputs and targets, batch after batch, kept on the device.

    Batches are concatenated into chunks of CHUNK: every small tensor kept alive splits a block of
    the heap that the next step's activations would have reused (benchmarks/RESULTS.md).
    """

    CHUNK = 16

    def __init__(self):
        self.chunks: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.out: list[torch.Tensor] = []
        self.y: list[torch.Tensor | None] = []
        self.w: list[torch.Tensor] = []  # event weights, when batches carry them (small: kept as they come)

    def add(self, out: torch.Tensor, y: torch.Tensor | None, w: torch.Tensor | None = None) -> None:
        self.out.append(out)
        self.y.append(y)
        if w is not None:
            self.w.append(w)
        if len(self.out) == self.CHUNK:
            self.chunks.append((torch.cat(self.out), None if y is None else torch.cat(self.y)))
            self.out, self.y = [], []

    def outputs(self, task: str, head, width: tuple[int, ...] = ()) -> Outputs:
        """-> Outputs for the metrics: the head applied, one host transfer. Empties the gatherer.

        The parts are written one by one into the result arrays, each freed once written, so the
        outputs are never held twice over; binary class ids take a byte a row. `width` is the output
        shape per row, for a pass over no rows.
        """
        parts = self.chunks + list(zip(self.out, self.y))
        weight = torch.cat(self.w).double().cpu().numpy() if self.w else None
        self.chunks, self.out, self.y, self.w = [], [], [], []
        binary = task == "binary"  # p(positive) (n, 1) -> both classes' probabilities (n, 2), ids 0/1
        if not parts:
            y_prob = np.empty((0, 2) if binary else (0, *width), dtype=np.float32)
            return Outputs(task, np.empty(0, dtype=np.uint8 if binary else np.int64), y_prob, weight)
        n = sum(len(o) for o, _ in parts)
        out, y = parts[0]
        y_prob = out.new_empty((n, 2) if binary else (n, *out.shape[1:]), dtype=torch.float32)
        y_true = None
        if y is not None:
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
                if y_true is not None:
                    y_true[start:stop] = y.reshape(stop - start, *y_true.shape[1:])
                start = stop
                del out, y, p
        return Outputs(task, None if y_true is None else y_true.cpu().numpy(), y_prob.cpu().numpy(), weight)


@torch.inference_mode()
def evaluate_batches(model, loss_fn, batches: Batches, *, precision: str = "fp32") -> tuple[float | None, Outputs]:
    """Loss (None without a loss or targets) and outputs over a whole split; one host transfer at the end.
    With event weights the loss is sum(w l) / sum(w) over the split."""
    wide = torch.float32 if batches.device.type == "mps" else torch.float64  # (MPS has no float64)
    total = torch.zeros((), device=batches.device, dtype=wide)
    weight_sum = torch.zeros((), device=batches.device, dtype=wide)
    gathered = Gathered()
    with inference(model), autocast(batches.device, precision):
        for xb, yb, wb in batches.weighted_epoch(0):
            raw = model(xb)
            if loss_fn is not None:
                if wb is None:
                    total += loss_fn(raw, yb).to(wide) * len(xb)
                else:
                    w_sum = wb.to(wide).sum()
                    total += loss_fn(raw, yb, wb).to(wide) * w_sum
                    weight_sum += w_sum
            gathered.add(raw, yb, wb)
    rows = weight_sum if batches.weighted else max(batches.n, 1)
    loss = (total / rows).item() if loss_fn is not None else None
    return loss, gathered.outputs(batches.task, model.head, tuple(model.output_shape))


# Layers whose output is always a new tensor, never a view of their input: an activation right after
# one of these may overwrite that output in place. (After a flatten, a reshape or an eval-mode
# dropout it would overwrite the layer's input: possibly the caller's data.)
_FRESH_OUTPUT = (torch.nn.Linear, torch.nn.modules.conv._ConvNd, torch.nn.modules.batchnorm._BatchNorm,
                 torch.nn.modules.pooling._MaxPoolNd, torch.nn.modules.pooling._AvgPoolNd, Maxout)


@contextlib.contextmanager
def inference(model):
    """Eval mode, with the activations that may run in place doing so; both restored afterwards.

    Without autograd, an in-place ReLU saves allocating (and page-faulting) a second copy of a
    layer's output.
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

    Convolutional networks run channels-last, in batches of 128 on a CPU by default: larger batches'
    conv outputs go back to the system after every batch and are page-faulted in again. Moves the
    model's weights to that format: call it on a model that is not being trained.
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


PROBE_ROWS = 32  # the fewest rows `threads: auto` times a model on


def evaluate_split(model, loss_fn, split, task: str, batch_size: int | str, device: torch.device, *,
                   workers: int | str = "auto", precision: str = "fp32", threads: int | str = "auto",
                   note: Callable[[str], None] | None = None,
                   weights: np.ndarray | None = None) -> tuple[float | None, Outputs]:
    """A split as the data gives it ((x, y) arrays, (x, None) for inputs alone, or a torch Dataset) -> loss
    and outputs, from a trained model. `threads` as train.threads (`auto` times the first batch both
    ways); `note` hears the choice."""
    memory_format, batch_size = for_inference(model, device, batch_size)
    batches = Batches(split, task, device, batch_size, workers=workers, memory_format=memory_format, weights=weights)
    with inference(model), torch.no_grad():
        first = next(iter(batches.epoch(0)), (None, None))[0]
        if first is not None:  # the timing (8 runs) costs at most ~1/8 of the split's own work
            first = first[:max(PROBE_ROWS, min(len(first), batches.n // 64))]
        chosen = choose_inference_threads(threads, device, lambda: first is not None and model(first))
    if note is not None:
        note(chosen.line())
    return evaluate_batches(model, loss_fn, batches, precision=precision)
