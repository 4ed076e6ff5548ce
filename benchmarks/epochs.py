"""Many short epochs: dlcli's whole `train()` (its per-epoch checkpoint, metrics.csv and run.json, each
written atomically and flushed to disk) against a hand-written PyTorch loop, in one process.

    uv run python benchmarks/epochs.py                    # 100 and 1000 epochs of the quickstart
    uv run python benchmarks/epochs.py --epochs 100,400 --repeats 3

The workload is configs/quickstart.yaml: scikit-learn's breast-cancer table (341 training rows, scaled),
dense 32-dropout-16-1, Adam lr 1e-3, batch 32, 1 thread. Two hand loops on the same rows: "bare" (the
steps and a validation loss each epoch) and "saving" (also `torch.save` of model and optimizer to a file
each epoch, what Keras' ModelCheckpoint does). Each figure is the wall time of the whole training after
a warm-up run, best of `--repeats`; what the bookkeeping costs shows as dlcli / hand loop, and whether it
grows with the epochs as the ratio at 1000 epochs against 100.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "quickstart.yaml"


def data():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.25, stratify=y_train,
                                                      random_state=0)
    scaler = StandardScaler().fit(x_train)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return (as_t(scaler.transform(x_train)), as_t(y_train).unsqueeze(1),
            as_t(scaler.transform(x_val)), as_t(y_val).unsqueeze(1))


def hand_loop(epochs: int, folder: Path | None) -> float:
    x, y, xv, yv = data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 16), nn.ReLU(),
                          nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            loss_fn(model(xv), yv).item()
        if folder is not None:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch},
                       folder / "last.pt")
    return time.perf_counter() - t0


def dlcli_train(epochs: int, folder: Path) -> float:
    from dlcli.commands.train import train

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        train(CONFIG, [f"train.epochs={epochs}", "train.threads=1"], run_dir=folder / f"run-{time.time_ns()}",
              progress=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", default="100,1000", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("NO_COLOR", "1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dlcli_train(2, tmp)  # warm-up: imports, the first optimizer step
        hand_loop(2, None)
        results = {}
        for epochs in (int(e) for e in args.epochs.split(",")):
            best = {"dlcli": [], "hand loop": [], "hand loop + torch.save": []}
            for _ in range(args.repeats):  # in turns: the machine's speed drifts
                best["dlcli"].append(dlcli_train(epochs, tmp))
                best["hand loop"].append(hand_loop(epochs, None))
                best["hand loop + torch.save"].append(hand_loop(epochs, tmp))
            walls = {k: min(v) for k, v in best.items()}
            results[epochs] = walls
            print(f"{epochs} epochs: " + ", ".join(f"{k} {v:.2f} s ({1000 * v / epochs:.1f} ms/epoch)"
                                                    for k, v in walls.items())
                  + f"; dlcli / hand loop {walls['dlcli'] / walls['hand loop']:.2f}, / hand loop + torch.save "
                    f"{walls['dlcli'] / walls['hand loop + torch.save']:.2f}", flush=True)
        if len(results) > 1:
            first, last = min(results), max(results)
            grow = (results[last]["dlcli"] / last) / (results[first]["dlcli"] / first)
            print(f"dlcli's time per epoch at {last} epochs / at {first}: {grow:.2f} (1.00: no growth)")


if __name__ == "__main__":
    main()
