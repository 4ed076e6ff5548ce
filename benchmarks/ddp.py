"""Data-parallel scaling: epoch time and samples/s of `dlcli train` on 1 process and on `--nproc 2`, 1 thread each.

    uv run python benchmarks/ddp.py                          # both workloads, as RESULTS.md reports them
    uv run python benchmarks/ddp.py --workload ffnn --epochs 3 --repeats 2
    uv run python benchmarks/ddp.py --nprocs 1,2,4 --cnn-rows 60000

The workloads are bench.py's, the lecture's networks on random numbers of their shapes (no download):
  ffnn  68,635 x 28, dense 300-150-100-50-1, SGD, global batch 256
  cnn   1 x 28 x 28 images (20,000 by default; --cnn-rows), conv32-pool-conv64-pool-dropout-dense10,
        Adam, global batch 128
Each process computes with one thread (train.threads=1, OMP_NUM_THREADS=1): 1 process against N
processes that share the global batch (gloo on the CPU). An epoch's time is metrics.csv's
epoch_seconds (the steps, the all-reduces and the gathering of train_accuracy), the median over the
epochs after the first, the best of the rounds; samples/s is the training rows over it. `wall` is the
whole command, start-up of the processes included. Each round runs every process count once, in turn,
so the machine's drift hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CNN_LAYERS, FFNN_LAYERS, WORKLOADS, make_data  # noqa: E402

BATCH = {"ffnn": 256, "cnn": 128}


def config(workload: str, data: Path, epochs: int, batch: int) -> dict:
    name, lr = WORKLOADS[workload]["optimizer"]
    return {
        "name": f"ddp-{workload}",
        "seed": 0,
        "data": {"path": str(data), "target": "y", "features": ["x"]},
        "model": {"layers": FFNN_LAYERS if workload == "ffnn" else CNN_LAYERS},
        "loss": "binary_crossentropy" if workload == "ffnn" else "categorical_crossentropy",
        "optimizer": {"name": name, "lr": lr},
        "train": {"epochs": epochs, "batch_size": batch, "device": "cpu", "threads": 1},
        "metrics": ["accuracy"],
    }


def run(cfg: Path, nproc: int, folder: Path) -> tuple[list[float], float]:
    """(epoch_seconds of every epoch, wall seconds of the command)."""
    run_dir = folder / f"run-{cfg.stem}-{nproc}-{time.time_ns()}"
    command = [sys.executable, "-m", "dlcli", "train", str(cfg), "--no-progress", "--run-dir", str(run_dir)]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    began = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    from dlcli.runs import read_metrics

    return [row["epoch_seconds"] for row in read_metrics(run_dir / "metrics.csv")], wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["ffnn", "cnn", "both"], default="both")
    parser.add_argument("--nprocs", default="1,2", help="process counts, comma-separated (default 1,2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is not timed (default 3)")
    parser.add_argument("--cnn-epochs", type=int, default=2, help="epochs per CNN run (default 2)")
    parser.add_argument("--cnn-rows", type=int, default=20_000, help="CNN training images (default 20,000)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--batch", choices=["global", "per-process"], default="global",
                        help="global: N processes share the batch (the same steps as 1 process, strong scaling); "
                             "per-process: each process takes a whole batch, N times the rows a step (weak "
                             "scaling, as Lightning's per-device batch_size)")
    args = parser.parse_args(argv)
    nprocs = [int(n) for n in args.nprocs.split(",")]
    workloads = ["ffnn", "cnn"] if args.workload == "both" else [args.workload]
    results = []
    with tempfile.TemporaryDirectory(prefix="dlcli-ddp-") as tmp:
        folder = Path(tmp)
        for workload in workloads:
            x, y = make_data(workload)
            if workload == "cnn":
                x, y = x[:args.cnn_rows], y[:args.cnn_rows]
            data = folder / f"{workload}.npz"
            np.savez(data, x=x, y=y)
            epochs = args.epochs if workload == "ffnn" else args.cnn_epochs
            batch = {n: BATCH[workload] * (n if args.batch == "per-process" else 1) for n in nprocs}
            cfgs = {}
            for n in nprocs:
                cfgs[n] = folder / f"{workload}-{batch[n]}.yaml"
                cfgs[n].write_text(yaml.safe_dump(config(workload, data, epochs, batch[n])))
            seconds: dict[int, list[float]] = {n: [] for n in nprocs}
            walls: dict[int, list[float]] = {n: [] for n in nprocs}
            for _ in range(args.repeats):
                for n in nprocs:
                    epoch_seconds, wall = run(cfgs[n], n, folder)
                    seconds[n].append(statistics.median(epoch_seconds[1:] or epoch_seconds))
                    walls[n].append(wall)
            base = min(seconds[nprocs[0]])
            for n in nprocs:
                best = min(seconds[n])
                results.append({"workload": workload, "batch": batch[n], "rows": len(x), "nproc": n,
                                "epoch_seconds": best, "rounds": seconds[n], "samples_per_s": len(x) / best,
                                "wall_seconds": min(walls[n]), "speedup": base / best})
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, 1 thread per process; epoch: median after the first, "
          f"best of {args.repeats} round(s)")
    print(f"{'workload':<10}{'procs':>6}{'s/epoch':>10}{'samples/s':>11}{'speedup':>9}{'wall s':>8}")
    for r in results:
        print(f"{r['workload'] + ' b' + str(r['batch']):<10}{r['nproc']:>6}{r['epoch_seconds']:>10.3f}"
              f"{r['samples_per_s']:>11.0f}{r['speedup']:>8.2f}x{r['wall_seconds']:>8.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
