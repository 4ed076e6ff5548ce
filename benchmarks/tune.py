"""`dlcli tune`: throughput with 1 and 2 workers, the study's overhead per trial, and search quality.

    uv run python benchmarks/tune.py                      # all three (a few minutes on 2 cores)
    uv run python benchmarks/tune.py --only throughput    # or overhead, quality

throughput: 8 trials of configs/quickstart.yaml (60 epochs each, random sampler, no pruning), as
  `dlcli tune` processes with workers: 1 and workers: 2, alternately (--repeats); the median wall times'
  ratio and trials per hour. Then what bounds that ratio: a steady trial's seconds alone and two at a time
  (trials.csv, each worker's first trial aside; "two at a time" includes the last, which may run alone for
  part of its time), what workers 1 spends beyond its trials, and how long a fresh process takes to import what
  any trial process must (torch, torch._dynamo, scikit-learn, pandas): were that the only cost besides the
  trials, workers 2 / workers 1 would be (imports + 4 x two-at-a-time) / (imports + 8 x alone).
  --trial-epochs 300 shows the same study with longer trials.
overhead: the same study in this process (workers: 1): its wall time minus the time spent inside
  `train()` (each trial's own set-up and training), per trial; process start is not in it.
quality: configs/digits_cnn.yaml at a few epochs, untuned, against the best of 20 TPE trials over the
  learning rate, the convolutions' width and the dropout rate; validation accuracy (the objective) and
  the test accuracy of both (dlcli evaluate), which the search never saw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DLCLI = [str(Path(sys.executable).with_name("dlcli"))]


def config(path: Path, base: str, tune: dict, **changes) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / base).read_text())
    cfg["data"]["root"] = str(ROOT / "data")
    for key, value in changes.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    cfg["tune"] = tune
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


QUICK_SPACE = {"optimizer.lr": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True},
               "model.layers[0].units": {"type": "int", "low": 16, "high": 64}}


def imports_alone() -> float:
    """Seconds a fresh process takes to import what every trial process must: torch, torch._dynamo (which an
    optimizer's construction and first step import), and the quickstart's data libraries (scikit-learn's
    datasets and split, pandas). Median of 3."""
    import statistics

    code = "import torch, torch._dynamo, sklearn.datasets, sklearn.model_selection, pandas"
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def steady_trials(study_dir: Path) -> list[float]:
    """trials.csv's seconds of every trial but each worker process's first (its imports), by the worker each
    trial records in the study."""
    import csv

    import optuna

    from dlcli.commands.tune_checks import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with open(study_dir / "trials.csv") as f:
        seconds = {int(r["number"]): float(r["seconds"]) for r in csv.DictReader(f)}
    study = optuna.load_study(study_name=study_dir.name, storage=open_storage("journal.log", study_dir))
    first: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        worker = t.user_attrs.get("worker")
        first[worker] = min(first.get(worker, t.number), t.number)
    return [s for n, s in seconds.items() if n not in first.values()]


def throughput(tmp: Path, repeats: int, epochs: int) -> dict:
    """workers 1 and 2 alternately, `repeats` times each (the machine is shared: one pair's ratio is noisy),
    then what bounds the ratio: the costs each process pays once, against the trials' own time."""
    import statistics

    walls: dict[int, list[float]] = {1: [], 2: []}
    trials: dict[int, list[float]] = {1: [], 2: []}  # each trial's seconds, each process's first aside
    for r in range(repeats):
        for workers in (1, 2):
            study = f"q{workers}-{r}"
            cfg = config(tmp / f"q{workers}.yaml", "quickstart.yaml", {
                "study": study, "objective": "val_accuracy", "n_trials": 8, "workers": workers,
                "sampler": {"name": "random", "seed": 0}, "pruner": "none", "space": QUICK_SPACE},
                train={"epochs": epochs})
            t0 = time.perf_counter()
            proc = subprocess.run([*DLCLI, "tune", str(cfg)], cwd=tmp, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            assert proc.returncode == 0, proc.stderr
            walls[workers].append(wall)
            trials[workers] += steady_trials(tmp / "runs" / "tune" / study)
            print(f"repeat {r + 1}, workers {workers}: 8 trials in {wall:.1f} s, {8 * 3600 / wall:.0f} trials/hour",
                  flush=True)
    med = {w: statistics.median(v) for w, v in walls.items()}
    pairs = [b / a for a, b in zip(walls[1], walls[2])]
    print(f"median: workers 1 {med[1]:.1f} s ({8 * 3600 / med[1]:.0f} trials/hour), workers 2 {med[2]:.1f} s "
          f"({8 * 3600 / med[2]:.0f} trials/hour); workers 2 / workers 1: {med[2] / med[1]:.2f} "
          f"(each pair: {', '.join(f'{p:.2f}' for p in pairs)})", flush=True)
    t1, t2 = statistics.median(trials[1]), statistics.median(trials[2])
    fixed = med[1] - 8 * t1  # workers 1's time beyond 8 steady trials: start, imports, study, final plots
    imports = imports_alone()
    print(f"a trial: {t1:.2f} s alone, {t2:.2f} s two at a time; workers 1 spends {fixed:.1f} s beyond its 8 trials "
          f"(process start, imports, the study, the final plots), of which {imports:.1f} s are the imports no trial "
          f"process avoids (torch, torch._dynamo, scikit-learn, pandas)", flush=True)
    perfect = (fixed + 4 * t2) / med[1]
    floor = (imports + 4 * t2) / (imports + 8 * t1)
    print(f"workers 2 / workers 1 expected at {perfect:.2f} with workers 1's fixed cost and 4 trials each, two at a "
          f"time; at best {floor:.2f} were the imports above the only cost besides the trials", flush=True)
    return {"epochs": epochs, "walls_1": walls[1], "walls_2": walls[2], "median_1": med[1], "median_2": med[2],
            "ratio": med[2] / med[1], "pairs": pairs, "trial_1": t1, "trial_2": t2, "fixed_1": fixed,
            "imports": imports, "bound_fixed": perfect, "bound_imports": floor}


def overhead(tmp: Path) -> dict:
    from dlcli.commands.tune import tune

    cfg = config(tmp / "o.yaml", "quickstart.yaml", {
        "study": "o", "objective": "val_accuracy", "n_trials": 8, "sampler": {"name": "random", "seed": 1},
        "pruner": "none", "space": QUICK_SPACE})
    ends = []
    t0 = time.perf_counter()
    tune(cfg, runs_root=tmp / "runs", progress=lambda e: ends.append(e) if e["event"] == "end" else None)
    wall = time.perf_counter() - t0
    inside = sum(e["train_seconds"] for e in ends)
    per_trial = [e["seconds"] - e["train_seconds"] for e in ends]
    print(f"overhead: study {wall:.2f} s, inside train() {inside:.2f} s: {(wall - inside) / len(ends):.3f} s per "
          f"trial in all (checks, storage, trials.csv, final plots); around each train() call "
          f"{sum(per_trial) / len(per_trial):.3f} s (max {max(per_trial):.3f})", flush=True)
    return {"wall": wall, "inside": inside, "per_trial_all": (wall - inside) / len(ends),
            "per_trial_call": sum(per_trial) / len(per_trial)}


def quality(tmp: Path, epochs: int, trials: int) -> dict:
    space = {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
             "model.layers[0].filters": {"type": "int", "low": 8, "high": 64, "log": True},
             "model.layers[2].filters": {"type": "int", "low": 16, "high": 128, "log": True},
             "model.layers[4].rate": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1}}
    cfg = config(tmp / "d.yaml", "digits_cnn.yaml", {
        "study": "digits", "objective": "val_accuracy", "n_trials": trials, "workers": 2,
        "sampler": {"name": "tpe", "seed": 0}, "pruner": {"name": "median", "warmup_epochs": 2}, "space": space},
        train={"epochs": epochs})
    untuned = subprocess.run([*DLCLI, "train", str(cfg), "--run-dir", str(tmp / "untuned")], cwd=tmp,
                             capture_output=True, text=True)
    assert untuned.returncode == 0, untuned.stderr
    import csv

    rows = list(csv.DictReader(open(tmp / "untuned" / "metrics.csv")))
    base_val = max(float(r["val_accuracy"]) for r in rows)
    t0 = time.perf_counter()
    proc = subprocess.run([*DLCLI, "tune", str(cfg)], cwd=tmp, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    status = json.loads(subprocess.run([*DLCLI, "tune", "status", str(tmp / "runs/tune/digits"), "--json"], cwd=tmp,
                                       capture_output=True, text=True).stdout)
    best = status["best"]
    states = [t["state"] for t in status["trials"]]

    def test_accuracy(run_dir) -> float:
        ev = subprocess.run([*DLCLI, "evaluate", str(run_dir), "--json", "--no-plots"], cwd=tmp, capture_output=True,
                            text=True)
        return json.loads(ev.stdout)["metrics"]["accuracy"]

    result = {"epochs": epochs, "trials": trials, "wall": wall, "untuned_val": base_val, "best_val": best["value"],
              "best_params": best["params"], "complete": states.count("complete"), "pruned": states.count("pruned"),
              "untuned_test": test_accuracy(tmp / "untuned"), "best_test": test_accuracy(best["run_dir"])}
    print(f"quality: digits CNN, {epochs} epochs: untuned val_accuracy {base_val:.4f} (test {result['untuned_test']:.4f}); "
          f"best of {trials} TPE trials ({result['complete']} complete, {result['pruned']} pruned, {wall:.0f} s) "
          f"val_accuracy {best['value']:.4f} (test {result['best_test']:.4f}), params {best['params']}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["throughput", "overhead", "quality"])
    parser.add_argument("--epochs", type=int, default=6, help="quality: epochs per trial")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="throughput: alternating repeats of each")
    parser.add_argument("--trial-epochs", type=int, default=60,
                        help="throughput: epochs per trial (60, the quickstart's; more shows longer trials' scaling)")
    args = parser.parse_args()
    os.environ.setdefault("NO_COLOR", "1")
    print(f"{os.cpu_count()} CPU cores, shared with other work: run it under a lock (flock /tmp/cpu.lock ...); "
          "medians of alternating repeats", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {}
        if args.only in (None, "throughput"):
            results["throughput"] = throughput(tmp, args.repeats, args.trial_epochs)
        if args.only in (None, "overhead"):
            results["overhead"] = overhead(tmp)
        if args.only in (None, "quality"):
            results["quality"] = quality(tmp, args.epochs, args.trials)
        print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
