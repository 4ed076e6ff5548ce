"""Does a training step cost more when its batch comes from a larger table? One process, the lecture's FFNN
at batch 1024, one thread, batches from dlcli's `Batches` over a small and a large in-memory table,
alternating in windows of steps, so that the shared machine's drift falls on both alike.

    uv run python benchmarks/table_size.py                      # 90,000 and 9,000,000 rows x 28
    uv run python benchmarks/table_size.py --rounds 8 --steps 300 --large 4500000

Per window it reports the gather (taking the batch's rows from the epoch's permutation: what
`Batches` yields; the permutation itself is drawn outside the timed windows) and the step (forward,
loss, backward, SGD, the loss read back), in ms per batch, for both ways of gathering rows:
advanced indexing `x[idx]` (dlcli before 2026-12-03) and `index_select` (now). Then the once-per-epoch
work per row: the permutation (`torch.randperm`), and the train metrics' gathering and accuracy.
The large table takes rows x 28 x 4 bytes (1 GiB at 9M rows) plus its targets.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench import FFNN_LAYERS  # noqa: E402

from dlcli.config import load_config  # noqa: E402
from dlcli.engine.batches import Batches, Tensors  # noqa: E402
from dlcli.engine.inference import Gathered  # noqa: E402
from dlcli.nn.losses import build_loss  # noqa: E402
from dlcli.nn.metrics import compute  # noqa: E402
from dlcli.nn.network import build_model  # noqa: E402

INDEX_SELECT = Tensors.rows


def advanced_indexing(self, idx):
    """How Batches took rows before index_select."""
    return self.x[idx], None if self.y is None else self.y[idx], None if self.w is None else self.w[idx]


GATHERS = {"x[idx]": advanced_indexing, "index_select": INDEX_SELECT}


def table(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, 28), dtype=np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


class Trainer:
    """The step as `fit` takes it, over several Batches, each continuing its epoch from window to window."""

    def __init__(self):
        cfg = load_config({"model": {"layers": FFNN_LAYERS}, "loss": "binary_crossentropy"})
        self.model, self.loss = build_model(cfg, (28,)), build_loss(cfg)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.epochs = {}

    def window(self, batches: Batches, steps: int) -> tuple[float, float, float]:
        """(gather ms, step ms) per batch and minor page faults per step over `steps` steps."""
        gather = step = 0.0
        done, faults = 0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        while done < steps:
            if self.epochs.get(id(batches)) is None:  # a new epoch: its permutation is drawn here, untimed
                self.epochs[id(batches)] = batches.epoch(0)
                first = next(self.epochs[id(batches)])
                del first
            start = time.perf_counter()
            try:
                xb, yb = next(self.epochs[id(batches)])
            except StopIteration:
                self.epochs[id(batches)] = None
                continue
            taken = time.perf_counter()
            loss = self.loss(self.model(xb), yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss.item()
            gather += taken - start
            step += time.perf_counter() - taken
            done += 1
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        return 1e3 * gather / steps, 1e3 * step / steps, faults / steps


def per_epoch(batches: Batches, head) -> str:
    """The once-per-epoch work of `fit` for this table, in ns per row."""
    n = batches.n
    start = time.perf_counter()
    torch.randperm(n, device=batches.holder, generator=batches.generator)
    permutation = time.perf_counter() - start
    out, gathered = torch.rand(n, 1), Gathered()
    start = time.perf_counter()
    for o, y in zip(out.split(batches.batch_size), batches.tensors.y.split(batches.batch_size)):
        gathered.add(o, y)
    metrics = compute(["accuracy"], gathered.outputs("binary", head))
    assert 0 <= metrics["accuracy"] <= 1
    done = time.perf_counter() - start
    return (f"permutation {1e3 * permutation:.1f} ms ({1e9 * permutation / n:.1f} ns/row); train metrics' "
            f"gathering and accuracy {1e3 * done:.1f} ms ({1e9 * done / n:.1f} ns/row)")


def hugepages() -> str:
    with open("/proc/self/smaps_rollup") as f:
        found = dict(line.split(":", 1) for line in f if line.startswith(("Rss:", "AnonHugePages:")))
    return ", ".join(f"{k} {int(v.split()[0]) / 1024:,.0f} MiB" for k, v in found.items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=90_000, help="rows of the small table")
    parser.add_argument("--large", type=int, default=9_000_000, help="rows of the large table")
    parser.add_argument("--steps", type=int, default=400, help="steps per window")
    parser.add_argument("--rounds", type=int, default=4, help="windows per table and gather")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    print(f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__}; a machine "
          f"shared with other work (load {os.getloadavg()[0]:.2f}); batch 1024, 1 thread", flush=True)
    rng = np.random.default_rng(0)
    tables = {}
    for n in (args.small, args.large):
        x, y = table(n, rng)
        tables[n] = Batches((x, y), "binary", torch.device("cpu"), 1024, shuffle=True, seed=0)
        del x, y
    trainer = Trainer()
    for batches in tables.values():
        trainer.window(batches, 50)  # warm-up
    times = {}
    for r in range(args.rounds):
        for name, gather in GATHERS.items():
            Tensors.rows = gather
            for n, batches in tables.items():
                g, s, f = trainer.window(batches, args.steps)
                times.setdefault((name, n), []).append((g, s))
                print(f"round {r + 1} {name:12} {n:>10,} rows: gather {g:.3f} ms, step {s:.3f} ms; "
                      f"{f:.1f} minor faults/step", flush=True)
    Tensors.rows = INDEX_SELECT
    print()
    for (name, n), each in times.items():
        g, s = statistics.median(t[0] for t in each), statistics.median(t[1] for t in each)
        print(f"median {name:12} {n:>10,} rows: gather {g:.3f} ms, step {s:.3f} ms, both {g + s:.3f} ms")
    for name in GATHERS:
        ratios = [(b[0] + b[1]) / (a[0] + a[1]) for a, b in zip(times[name, args.small], times[name, args.large])]
        print(f"{name}: (gather + step) at {args.large:,} over {args.small:,} rows, per round: "
              f"{', '.join(f'{v:.3f}' for v in ratios)}; median {statistics.median(ratios):.3f}")
    for n, batches in tables.items():
        print(f"once per epoch, {n:>10,} rows: {per_epoch(batches, trainer.model.head)}")
    print(f"this process: {hugepages()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
