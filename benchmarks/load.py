"""Epoch time on a machine others are using: dlcli (train.threads: auto) against a hand-written loop
with torch's default threads, idle and under load, as ratios to each tool's own idle epoch.

    uv run python benchmarks/load.py                        # FFNN batch 32 and 1024, CNN batch 128
    uv run python benchmarks/load.py --workloads ffnn-32 --epochs 4 --rows-ffnn 68635

Conditions, each set up and torn down by the script (every helper process also ends itself after
--max-seconds, so an interrupted benchmark leaves nothing spinning):
  idle      nothing else running
  busy      one busy-looping process per core
  training  a second training process beside (a hand loop on the FFNN, torch's default threads)

The workloads are bench.py's (the lecture's FFNN and CNN on random data of their shapes), on
--rows-* rows so that a loaded epoch stays short: the ratio does not depend on the epoch's length.
"hand loop, 1 thread" is the floor under load: one thread gets a core's fair share of a loaded
machine, so its loaded/idle ratio is what no choice of threads can beat (a CNN that idles faster on
all cores cannot stay within 2x of that idle time while every core is taken).
The first epoch is a warm-up (it holds dlcli's thread timing); the figure is the median of the rest.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench  # noqa: E402  (the workloads and both tools' runners)

WORKLOADS = {"ffnn-32": ("ffnn", 32), "ffnn-1024": ("ffnn", 1024), "cnn-128": ("cnn", 128)}

BUSY = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"
TRAINING = """\
import time, torch
from torch import nn
end = time.time() + {seconds}
model = nn.Sequential(nn.Linear(28, 300), nn.ReLU(), nn.Linear(300, 150), nn.ReLU(), nn.Linear(150, 100),
                      nn.ReLU(), nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(32, 28), torch.rand(32, 1).round()
while time.time() < end:
    loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


@contextmanager
def condition(name: str, seconds: float):
    """Start the condition's helper processes, and stop them afterwards."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    scripts = {"idle": [], "busy": [BUSY] * cores, "training": [TRAINING]}[name]
    procs = [subprocess.Popen([sys.executable, "-c", s.format(seconds=seconds)]) for s in scripts]
    try:
        time.sleep(1.0 if procs else 0.0)  # let them get going (torch's import, for the training)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def epoch_seconds(tool: str, workload: str, batch_size: int, x, y, epochs: int, folder: Path) -> float:
    device = torch.device("cpu")
    # the hand loop runs at torch's default; dlcli's auto starts from it. "hand loop, 1 thread" is the floor:
    # one core's share of a loaded machine, which no choice of threads can beat
    torch.set_num_threads(1 if tool == ONE_THREAD else DEFAULT_THREADS)
    if tool in ("hand loop", ONE_THREAD):
        times = bench.run_hand_loop(workload, x, y, epochs=epochs, batch_size=batch_size, device=device)
    else:
        times = bench.run_dlcli(workload, x, y, epochs=epochs, batch_size=batch_size, device=device, folder=folder,
                                threads=1 if tool == DLCLI_ONE else "auto")
    return statistics.median(times[1:])


DEFAULT_THREADS = torch.get_num_threads()
ONE_THREAD = "hand loop, 1 thread"
DLCLI_ONE = "dlcli, 1 thread"  # --one-thread-dlcli: dlcli's own floor, train.threads: 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"of {', '.join(WORKLOADS)}")
    parser.add_argument("--conditions", default="idle,busy,training")
    parser.add_argument("--epochs", type=int, default=3, help="per measurement, the first one a warm-up")
    parser.add_argument("--rows-ffnn", type=int, default=20_000, help="at batch 1024: up to 5x as many, for enough steps")
    parser.add_argument("--rows-cnn", type=int, default=6_000)
    parser.add_argument("--one-thread-dlcli", action="store_true", help=f"also time {DLCLI_ONE!r}")
    parser.add_argument("--max-seconds", type=float, default=900, help="helper processes end themselves after this")
    args = parser.parse_args(argv)
    workloads = args.workloads.split(",")
    conditions = args.conditions.split(",")
    tools = ["hand loop", ONE_THREAD, "dlcli"] + [DLCLI_ONE] * args.one_thread_dlcli
    print(f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__} (default {DEFAULT_THREADS} threads), Python {platform.python_version()}")
    data = {}
    for name in {WORKLOADS[w][0] for w in workloads}:
        x, y = bench.make_data(name)
        rows = args.rows_ffnn if name == "ffnn" else args.rows_cnn
        data[name] = (x[:rows], y[:rows])
        data[name, 1024] = (x[:5 * rows], y[:5 * rows])  # batch 1024: enough steps that auto's timing ends in the warm-up
    seconds: dict[tuple[str, str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cond in conditions:
            with condition(cond, args.max_seconds):
                for w in workloads:
                    name, batch = WORKLOADS[w]
                    for tool in tools:
                        arrays = data.get((name, batch), data[name])
                        seconds[w, tool, cond] = s = epoch_seconds(tool, name, batch, *arrays, args.epochs, Path(tmp))
                        print(f"  {cond:8} {w:9} {tool:18} {s:8.3f} s/epoch", flush=True)
    print()
    header = f"| workload | tool | idle s/epoch | {' | '.join(c + ' / idle' for c in conditions if c != 'idle')} |"
    print(header)
    print("| --- " * (header.count("|") - 1) + "|")
    for w in workloads:
        for tool in tools:
            idle = seconds.get((w, tool, "idle"))
            ratios = [f"{seconds[w, tool, c] / idle:.2f}x" if idle else f"{seconds[w, tool, c]:.3f} s"
                      for c in conditions if c != "idle"]
            print(f"| {w} | {tool} | {idle:.3f} | {' | '.join(ratios)} |" if idle else
                  f"| {w} | {tool} | - | {' | '.join(ratios)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
