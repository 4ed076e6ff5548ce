"""Peak memory of training from a large CSV, against an idle dlcli process with torch imported.

    uv run python benchmarks/memory.py                 # 1,000,000 x 28 (the issue's figure)
    uv run python benchmarks/memory.py --rows 200000

Writes a CSV of ROWS x 28 float features plus a 0/1 target, then runs two child processes and
reads each one's own peak resident set size (ru_maxrss): one that imports dlcli's training loop and torch
and does nothing, and one that runs `dlcli train` for one epoch on the CSV. The difference is what
training costs in memory; the target is under 3x the float32 feature array (ROWS x 28 x 4 bytes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

# The child samples its anonymous memory (RssAnon: heap, arrays, Python objects) every 5 ms: the kernel
# keeps a high-water mark only for the whole resident set, which also counts pages of shared libraries
# mapped from disk (libtorch's and libtriton's code), shared between processes and reclaimable.
CHILD = textwrap.dedent("""
    import resource, sys, threading, time
    peak_anon = [0]
    def anon_kb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
    def sample():
        while True:
            peak_anon[0] = max(peak_anon[0], anon_kb())
            time.sleep(0.005)
    threading.Thread(target=sample, daemon=True).start()
    {body}
    peak_anon[0] = max(peak_anon[0], anon_kb())
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print("ANON_KB", peak_anon[0])
""")
IDLE = "import torch, dlcli.engine.loop, dlcli.data"
# What any PyTorch training script holds before its data matters: constructing a torch.optim optimizer
# imports torch._dynamo (and triton with it), whatever the data.
TORCH_READY = IDLE + "\nm = torch.nn.Linear(28, 1); torch.optim.SGD(m.parameters(), lr=0.1)"
TRAIN = ("from dlcli.cli import main\nsys.argv = ['dlcli', 'train', {config!r}, '--run-dir', {run!r}, "
         "'--no-progress']\ntry:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code")


def peak_kb(body: str) -> tuple[int, int]:
    """A child process's peak resident set and sampled peak anonymous memory, in KiB."""
    out = subprocess.run([sys.executable, "-c", CHILD.format(body=body)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"child failed:\n{out.stdout}\n{out.stderr}")
    found = dict(line.split() for line in out.stdout.splitlines() if line.startswith(("MAXRSS_KB", "ANON_KB")))
    return int(found["MAXRSS_KB"]), int(found["ANON_KB"])


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        f.write(",".join([f"f{j}" for j in range(28)] + ["label"]) + "\n")
        for start in range(0, rows, 100_000):
            x = rng.standard_normal((min(100_000, rows - start), 28)).astype(np.float32)
            y = (x[:, 0] + x[:, 1] > 0).astype(int)
            np.savetxt(f, np.column_stack([x, y]), fmt=["%.6g"] * 28 + ["%d"], delimiter=",")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = tmp / "big.csv"
        write_csv(csv, args.rows)
        config = tmp / "big.yaml"
        config.write_text(textwrap.dedent(f"""\
            name: memory
            data: {{path: {csv}, target: label, scale: standard}}
            model:
              layers:
                - {{type: dense, units: 64, activation: relu}}
                - {{type: dense, units: 1, activation: sigmoid}}
            loss: binary_crossentropy
            train: {{epochs: 1, batch_size: 1024}}
            """))
        small = tmp / "small.csv"
        write_csv(small, 1000)
        small_config = tmp / "small.yaml"
        small_config.write_text(config.read_text().replace(str(csv), str(small)))
        (idle, idle_anon), (ready, ready_anon) = peak_kb(IDLE), peak_kb(TORCH_READY)
        fixed, fixed_anon = peak_kb(TRAIN.format(config=str(small_config), run=str(tmp / "small-run")))
        trained, trained_anon = peak_kb(TRAIN.format(config=str(config), run=str(tmp / "run")))
    array_mb = args.rows * 28 * 4 / 2**20
    extra_mb = (trained - idle) / 1024
    print(f"csv: {args.rows:,} x 28 ({csv.name}); float32 features {array_mb:.1f} MiB")
    print(f"peak RSS (MiB): idle dlcli+torch {idle / 1024:.1f}; + a torch.optim optimizer {ready / 1024:.1f}; "
          f"training on 1,000 rows {fixed / 1024:.1f}; training on {args.rows:,} rows {trained / 1024:.1f}")
    print(f"training adds {extra_mb:.1f} MiB above idle = {extra_mb / array_mb:.2f}x the float32 array (target < 3x)")
    print(f"  of which torch's optimizer machinery {(ready - idle) / 1024:.1f} MiB, the rest of a run's fixed cost "
          f"{(fixed - ready) / 1024:.1f} MiB (config, model, run files), and what grows with the data "
          f"{(trained - fixed) / 1024:.1f} MiB = {(trained - fixed) / 1024 / array_mb:.2f}x the array")
    anon_mb = (trained_anon - idle_anon) / 1024
    print(f"peak anonymous memory (MiB, sampled every 5 ms; RSS less the pages of files mapped from disk): "
          f"idle {idle_anon / 1024:.1f}; + optimizer {ready_anon / 1024:.1f}; 1,000 rows {fixed_anon / 1024:.1f}; "
          f"{args.rows:,} rows {trained_anon / 1024:.1f}")
    print(f"  training adds {anon_mb:.1f} MiB of it = {anon_mb / array_mb:.2f}x the array, of which the optimizer "
          f"machinery {(ready_anon - idle_anon) / 1024:.1f} MiB")
    return 0 if extra_mb < 3 * array_mb else 1


if __name__ == "__main__":
    sys.exit(main())
