"""What event weights and the physics plots cost `dlcli evaluate`, on a 1,000,000-row table.

    uv run python benchmarks/weights.py                  # 10^6 rows, 3 repeats
    uv run python benchmarks/weights.py --rows 100000 --repeats 2

One Parquet file of ROWS x 20 float features, a 0/1 target and a positive weight column. Two runs are
trained on it (one epoch, batch 4096, a 64-32-1 FFNN, val and test 20% each): one with
`data.weight: w` and `train.class_weight`, one without. Then, alternating within one process so
that the machine's drift hits both alike, it times

  no plots   evaluate(unweighted run, plots=False): the data read and split, the test pass, the metrics
  old plots  evaluate(unweighted run) with only the plots evaluate drew before issue 15: learning
             curves, ROC, confusion matrix, scores (the HEP ROC and the overtraining check switched off)
  weighted   evaluate(weighted run): weighted metrics and figures of merit, every plot, the HEP ROC and
             the overtraining check (a pass over up to 100,000 train events, KS tests)

and prints the medians and their ratios; weighted / old plots must stay at or below 1.3.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 20)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 1, rows) > 1.0).astype(np.int64)
    frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(20)])
    frame["label"] = y
    frame["w"] = rng.exponential(1.0, rows) * np.where(y == 1, 0.01, 1.0)
    frame.to_parquet(path, index=False)


def config(path: Path, weighted: bool) -> dict:
    data = {"path": str(path), "target": "label", "split": {"val": 0.2, "test": 0.2}, "scale": "standard",
            "class_names": ["background", "signal"], "stream": False}
    train = {"epochs": 1, "batch_size": 4096, "device": "cpu", "train_metrics": False}
    if weighted:
        data["weight"] = "w"
        train["class_weight"] = "balanced"
    else:
        data["drop"] = ["w"]
    return {"name": "weighted" if weighted else "plain", "data": data,
            "model": [{"type": "dense", "units": 64, "activation": "relu"},
                      {"type": "dense", "units": 32, "activation": "relu"},
                      {"type": "dense", "units": 1, "activation": "sigmoid"}],
            "loss": "bce", "optimizer": {"name": "adam", "lr": 0.001}, "train": train,
            "metrics": ["auc", "rejection@eff=0.5"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from dlcli import evaluate, load_config, train
    from dlcli.commands import evaluate as evaluate_module
    from dlcli.commands import physics_plots

    def old_plots(run):
        """evaluate as before issue 15: no HEP ROC, no overtraining check (the rest as it is now)."""
        saved = physics_plots.hep_roc_plot, evaluate_module.overtraining_sample
        physics_plots.hep_roc_plot = lambda *args, **kwargs: None
        evaluate_module.overtraining_sample = lambda *args, **kwargs: None
        try:
            return evaluate(run)
        finally:
            physics_plots.hep_roc_plot, evaluate_module.overtraining_sample = saved

    folder = Path(tempfile.mkdtemp(prefix="dlcli-weights-"))
    try:
        table = folder / "events.parquet"
        make_table(table, args.rows)
        plain = train(load_config(config(table, False)), run_dir=folder / "plain").run_dir
        weighted = train(load_config(config(table, True)), run_dir=folder / "weighted").run_dir
        cases = {"no plots": lambda: evaluate(plain, plots=False),
                 "old plots": lambda: old_plots(plain),
                 "weighted": lambda: evaluate(weighted)}
        for case in cases.values():  # warm-up: imports, matplotlib's font cache
            case()
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, case in cases.items():
                started = time.perf_counter()
                case()
                seconds[name].append(time.perf_counter() - started)
        base = statistics.median(seconds["old plots"])
        print(f"{args.rows} rows, median of {args.repeats} (ratios in one process; the machine may be shared "
              "with other jobs: run it under `flock /tmp/cpu.lock` there):")
        for name, values in seconds.items():
            median = statistics.median(values)
            print(f"  {name:10s} {median:7.2f} s  ({median / base:.2f}x old plots; "
                  f"{', '.join(f'{v:.2f}' for v in values)})")
        metrics = evaluate(weighted, write=False)["metrics"]
        print(f"  weighted run: auc {metrics['auc']:.4f}, rejection@eff=0.5 {metrics['rejection@eff=0.5']:.2f}, "
              f"ams {metrics['ams@b_reg=10']:.3f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
