"""How the cost of `dlcli train` and `dlcli evaluate` grows with the data: the lecture's FFNN on 10^4 to
10^7 rows, from CSV and Parquet, read into memory or streamed (`data.stream: true`).

    uv run python benchmarks/scaling.py                              # 10^4, 10^5, 10^6 and 10^7 rows
    uv run python benchmarks/scaling.py --rows 10000,100000,1000000 --formats memory-csv,stream-csv
    uv run python benchmarks/scaling.py --data-dir /tmp/scaling --keep   # write the files once, reuse them
    uv run python benchmarks/scaling.py --rows 100000,10000000 --formats memory-csv,memory-parquet \
        --repeats 3 --no-evaluate --data-dir /tmp/scaling --keep        # the 10^7/10^5 ratio, 3 rounds

The data are ROWS x 28 standard-normal float features and a 0/1 target (f0 + f1 > 0), written once
per size (CSV with 6 significant digits, Parquet with pyarrow's default row groups of 2^20 rows, as
`DataFrame.to_parquet` writes them) and reused by every run. Each run is its own child process
(`dlcli train --run-dir ...`, then `dlcli evaluate RUN --no-plots`), so memory is per run:

  epoch s      metrics.csv's epoch_seconds (the steps and their train metrics), median of the epochs
               after the first (--epochs, --epochs-large from 10^7 rows)
  CPU µs/row   the training process's CPU time over the same epochs, per row: on a shared machine the
               wall time also holds the time the other work had the core (DataLoader workers, other
               processes, are not counted)
  setup s      `prepare` in the child: reading, checking, splitting and scaling the data, building
               the model (streamed: the first pass over the file); "start" is process start to the
               end of it, imports included
  eval s       the `dlcli evaluate` process from start to exit (it reads the data again), and the
               pass over the test split alone
  peak MiB     anonymous memory of the child and its DataLoader workers: the child's RssAnon, sampled
               every 20 ms from this process, plus each worker's Private_Dirty (what it wrote since
               it was forked, so pages it shares with the child count once), read once a second;
               libraries' code, mapped from disk, is not counted

Batch 1024 by default: at the lecture's batch 32 a 10^7-row epoch is 300,000 steps (about five
minutes here), and a step of 1024 rows costs the network little enough that the data path (parsing,
scaling, streaming) shows in the epoch time; it is also what memory.py trains with. Runs use one
CPU thread (--threads) so that a shared machine's load, not `threads: auto`'s choice, is the only
thing that differs between rows; streamed runs add one DataLoader worker (`workers: auto` on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import csv as csvmod
import fcntl
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench import FFNN_LAYERS  # noqa: E402

FORMATS = {"memory-csv": ("csv", False), "memory-parquet": ("parquet", False),
           "stream-parquet": ("parquet", True), "stream-csv": ("csv", True)}
FEATURES = 28
WRITE_ROWS = 1 << 20  # rows generated and written at a time: never one giant frame

# Run inside the child: times `prepare` (and, for evaluate, the pass over the split) in the command itself.
CHILD = textwrap.dedent("""
    import sys, time
    T0 = time.perf_counter()
    import dlcli.commands.{command} as command
    from dlcli.cli import main

    def timed(name, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            out = fn(*a, **k)
            end = time.perf_counter()
            print(f"TIMED {{name}} {{end - start:.6f}} {{end - T0:.6f}}", flush=True)
            return out
        return wrapper

    command.prepare = timed("prepare", command.prepare)
    if hasattr(command, "evaluate_split"):
        command.evaluate_split = timed("inference", command.evaluate_split)
    marks = []
    if "{command}" == "train":  # the loop reads the clock at an epoch's start and end: note the CPU time too
        import resource, types
        import dlcli.engine.loop as loop

        def clock():
            marks.append((time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt))
            return time.perf_counter()

        loop.time = types.SimpleNamespace(perf_counter=clock)
    sys.argv = ["dlcli", "{command}", *{argv!r}]
    try:
        main()
    except SystemExit as e:
        if e.code:
            raise
    finally:
        if marks:
            print("CPU", *(f"{{end[0] - start[0]:.6f}}" for start, end in zip(marks[::2], marks[1::2])), flush=True)
            print("FAULTS", *(end[1] - start[1] for start, end in zip(marks[::2], marks[1::2])), flush=True)
""")


# ----------------------------------------------------------------------------------------------
# Data files


def chunks(rows: int, seed: int = 0):
    """(x float32 (n, 28), y int (n,)) blocks of at most WRITE_ROWS rows."""
    rng = np.random.default_rng(seed)
    for start in range(0, rows, WRITE_ROWS):
        x = rng.standard_normal((min(WRITE_ROWS, rows - start), FEATURES), dtype=np.float32)
        yield x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def frame(x, y):
    import pandas as pd

    df = pd.DataFrame(x, columns=[f"f{j}" for j in range(FEATURES)])
    df["label"] = y
    return df


def write_csv(path: Path, rows: int) -> None:
    tmp = path.with_suffix(".part")
    with tmp.open("w") as f:
        for i, (x, y) in enumerate(chunks(rows)):
            frame(x, y).to_csv(f, header=i == 0, index=False, float_format="%.6g")
    tmp.rename(path)


def write_parquet(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".part")
    writer = None
    for x, y in chunks(rows):
        table = pa.Table.from_pandas(frame(x, y), preserve_index=False)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    tmp.rename(path)


def data_file(folder: Path, kind: str, rows: int) -> Path:
    """The table of `rows` rows in format `kind`, written the first time it is asked for."""
    path = folder / f"scaling-{rows}.{kind}"
    if not path.exists():
        start = time.perf_counter()
        (write_csv if kind == "csv" else write_parquet)(path, rows)
        print(f"  wrote {path.name} ({path.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - start:.1f} s",
              flush=True)
    return path


# ----------------------------------------------------------------------------------------------
# Child processes and their memory


def tree(pid: int) -> list[int]:
    """pid and its descendants (DataLoader workers), from /proc's parent ids."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith(field)), 0)
    except OSError:
        return 0


def private_kb(pid: int) -> int:
    """A worker's own pages (what it wrote since the fork); smaps_rollup takes tens of ms to read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Private_Dirty:")), 0)
    except OSError:
        return 0


def run_child(command: str, argv: list[str], timeout: float) -> dict:
    """Run `dlcli COMMAND ARGV` in a child; its wall time, TIMED lines, peak tree Pss_Anon and ru_maxrss."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(command=command, argv=argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample():
        workers, last_scan = {}, 0.0
        while not done.is_set():
            if time.perf_counter() - last_scan > 1.0:  # workers' pages change with their chunks: once a second
                workers = {p: private_kb(p) for p in tree(proc.pid)[1:]}
                last_scan = time.perf_counter()
            peak[0] = max(peak[0], status_kb(proc.pid, "RssAnon:") + sum(workers.values()))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise SystemExit(f"dlcli {command} {' '.join(argv)}: still running after {timeout:.0f} s; killed") from None
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"dlcli {command} {' '.join(argv)} failed ({proc.returncode}):\n{out}\n{err}")
    timed, cpu, faults = {}, [], []
    for line in out.splitlines():
        if line.startswith("TIMED "):
            _, name, seconds, since_start = line.split()
            timed[name] = (float(seconds), float(since_start))
        elif line.startswith("CPU "):
            cpu = [float(s) for s in line.split()[1:]]
        elif line.startswith("FAULTS "):
            faults = [int(s) for s in line.split()[1:]]
    return {"wall": wall, "timed": timed, "cpu_epochs": cpu, "faults": faults, "peak_anon_mib": peak[0] / 1024}


# ----------------------------------------------------------------------------------------------
# One configuration


def config_text(path: Path, stream: bool, epochs: int, batch_size: int) -> str:
    layers = "\n".join(f"    - {{{', '.join(f'{k}: {v}' for k, v in layer.items())}}}" for layer in FFNN_LAYERS)
    return (f"name: scaling\nseed: 0\n"
            f"data: {{path: {path}, target: label, scale: standard, split: {{test: 0.1}}, stream: {str(stream).lower()}}}\n"
            f"model:\n  layers:\n{layers}\n"
            f"loss: binary_crossentropy\noptimizer: {{name: sgd, lr: 0.01}}\nmetrics: [accuracy]\n"
            f"train: {{epochs: {epochs}, batch_size: {batch_size}}}\n")


def measure(folder: Path, fmt: str, rows: int, args) -> dict:
    kind, stream = FORMATS[fmt]
    epochs = args.epochs_large if rows >= 10**7 else args.epochs
    path = data_file(folder, kind, rows)
    config = folder / f"{fmt}-{rows}.yaml"
    config.write_text(config_text(path, stream, epochs, args.batch_size))
    run_dir = folder / f"run-{fmt}-{rows}"
    shutil.rmtree(run_dir, ignore_errors=True)
    threads = ["--threads", str(args.threads)] if args.threads != "auto" else []
    train = run_child("train", [str(config), "--run-dir", str(run_dir), "--no-progress", *threads], args.timeout)
    with open(run_dir / "metrics.csv", newline="") as f:
        epoch_seconds = [float(row["epoch_seconds"]) for row in csvmod.DictReader(f)]
    train_rows = json.loads((run_dir / "labels.json").read_text())["rows"]["train"]  # streamed: near 90%
    epoch = statistics.median(epoch_seconds[1:] or epoch_seconds)
    cpu = train["cpu_epochs"]
    cpu_epoch = statistics.median(cpu[1:] or cpu) if cpu else float("nan")
    result = {
        "format": fmt, "rows": rows, "train_rows": train_rows, "epochs": epoch_seconds, "epoch_s": epoch,
        "samples_s": train_rows / epoch, "cpu_epochs": cpu, "cpu_epoch_s": cpu_epoch, "faults": train["faults"],
        "cpu_samples_s": train_rows / cpu_epoch, "setup_s": train["timed"]["prepare"][0],
        "start_s": train["timed"]["prepare"][1], "train_peak_mib": train["peak_anon_mib"],
        "eval_s": None, "eval_setup_s": None, "inference_s": None, "eval_peak_mib": None,
    }
    if args.evaluate:
        evaluate = run_child("evaluate", [str(run_dir), "--no-plots", *threads], args.timeout)
        result.update(eval_s=evaluate["wall"], eval_setup_s=evaluate["timed"]["prepare"][0],
                      inference_s=evaluate["timed"]["inference"][0], eval_peak_mib=evaluate["peak_anon_mib"])
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------------------------
# Report


def table(results: list[dict]) -> str:
    head = ("| rows | data | epoch s | samples/s | µs/row (epoch) | CPU µs/row | setup s (start) | µs/row (setup) | "
            "eval s (pass) | train peak MiB | eval peak MiB |")
    lines = [head, "| --- " * (head.count("|") - 1) + "|"]
    rounds = len({r["round"] for r in results}) > 1
    for r in results:
        label = f"{r['rows']:,}" + (f" ({r['round'] + 1})" if rounds else "")
        evaluate = (f"{r['eval_s']:.1f} ({r['inference_s']:.2f})", f"{r['eval_peak_mib']:,.0f}") \
            if r["eval_s"] is not None else ("-", "-")
        lines.append(
            f"| {label} | {r['format']} | {r['epoch_s']:.2f} | {r['samples_s']:,.0f} | "
            f"{1e6 * r['epoch_s'] / r['train_rows']:.2f} | {1e6 * r['cpu_epoch_s'] / r['train_rows']:.2f} | "
            f"{r['setup_s']:.2f} ({r['start_s']:.1f}) | {1e6 * r['setup_s'] / r['rows']:.2f} | {evaluate[0]} | "
            f"{r['train_peak_mib']:,.0f} | {evaluate[1]} |")
    return "\n".join(lines)


def ratios(results: list[dict]) -> list[str]:
    """The issue's two ratios; with --repeats, each round's (a round runs every size once, so its 10^5 and
    10^7 runs are minutes apart, not an hour) and their median. "CPU" divides by the process's CPU time
    in the epoch instead of the wall time: the time the shared machine gave the training to others is
    taken out (the workers of streamed runs are other processes: not counted)."""
    by = {(r["round"], r["format"], r["rows"]): r for r in results}
    rounds = sorted({r["round"] for r in results})
    sizes = sorted({r["rows"] for r in results})
    lines = []
    top = max(sizes)
    if 10**5 in sizes and top > 10**5:
        for fmt in FORMATS:
            for key, label in (("samples_s", "wall"), ("cpu_samples_s", "CPU")):
                each = [by[k, fmt, top][key] / by[k, fmt, 10**5][key] for k in rounds
                        if (k, fmt, 10**5) in by and (k, fmt, top) in by]
                if each:
                    per_round = f" (rounds: {', '.join(f'{v:.2f}' for v in each)})" if len(each) > 1 else ""
                    lines.append(f"samples/s at {top:,} over 10^5, {fmt}, {label}: {statistics.median(each):.2f}"
                                 f"{per_round} (target >= 0.85)")
    for kind in ("parquet", "csv"):
        for rows in sizes:
            each = [by[k, f"stream-{kind}", rows]["epoch_s"] / by[k, f"memory-{kind}", rows]["epoch_s"]
                    for k in rounds if (k, f"stream-{kind}", rows) in by and (k, f"memory-{kind}", rows) in by]
            if each:
                lines.append(f"streamed / in-memory epoch, {kind}, {rows:,} rows: {statistics.median(each):.2f} "
                             "(target <= 1.3)")
    return lines


@contextlib.contextmanager
def locked(path: Path | None):
    """An exclusive flock on `path` (None: no lock) while the block runs."""
    if path is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000,1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"of {', '.join(FORMATS)}")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is not timed")
    parser.add_argument("--epochs-large", type=int, default=2, help="per run from 10^7 rows")
    parser.add_argument("--threads", default="1", help="train/evaluate --threads, or auto")
    parser.add_argument("--data-dir", type=Path, help="where the data files go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the data files")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of every size and format, one after the other; ratios per round and their median")
    parser.add_argument("--no-evaluate", dest="evaluate", action="store_false", help="skip `dlcli evaluate`")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--lock", type=Path, help="a file to flock around each run (a machine shared with others' "
                        "work: it is free between runs)")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.rows.split(",")]
    formats = args.formats.split(",")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        parser.error(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="dlcli-scaling-"))
    folder.mkdir(parents=True, exist_ok=True)
    import torch

    print(f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, Python {platform.python_version()}; load {os.getloadavg()[0]:.2f}; "
          f"batch {args.batch_size}, threads {args.threads}", flush=True)
    print("a machine shared with other work" + (f": each run holds {args.lock}, the others run between them"
                                                if args.lock else "?") + "; the CPU columns take its share out",
          flush=True)
    results = []
    try:
        for round_ in range(args.repeats):
            for rows in sizes:
                for fmt in formats:
                    with locked(args.lock):
                        r = {"round": round_, "load": os.getloadavg()[0], **measure(folder, fmt, rows, args)}
                    results.append(r)
                    evaluated = f"; evaluate {r['eval_s']:.1f} s" if r["eval_s"] is not None else ""
                    print(f"  {rows:>10,} {fmt:14} epochs {', '.join(f'{s:.2f}' for s in r['epochs'])} s "
                          f"(CPU {', '.join(f'{s:.2f}' for s in r['cpu_epochs'])}; minor faults "
                          f"{', '.join(str(f) for f in r['faults'])}); setup {r['setup_s']:.2f} s"
                          f"{evaluated}; peak {r['train_peak_mib']:,.0f} MiB; load {os.getloadavg()[0]:.2f}",
                          flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(results, indent=1))
    finally:
        if not args.keep:
            for rows in sizes:
                for kind in ("csv", "parquet"):
                    (folder / f"scaling-{rows}.{kind}").unlink(missing_ok=True)
            if args.data_dir is None:
                shutil.rmtree(folder, ignore_errors=True)
    print()
    print(table(results))
    print()
    print("\n".join(ratios(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
