"""Seconds per training epoch: dlcli against a hand-written PyTorch loop, Keras 3 and Lightning.

    uv run python benchmarks/bench.py                       # both workloads, CPU, dlcli + hand loops
    uv run --extra bench python benchmarks/bench.py         # also Keras 3 (torch backend) and Lightning
    uv run python benchmarks/bench.py --workload ffnn --device cuda --batch-sizes 32,128,1024 \\
        --variants fp32,bf16,compile-bf16

Everything runs in one process on the same data. The workloads are the lecture's:
  ffnn  68,635 x 28 table, dense 300-150-100-50-1 (ReLU, sigmoid + binary cross-entropy), SGD lr 0.01
  cnn   60,000 x 1 x 28 x 28 images, conv32-pool-conv64-pool-flatten-dropout-dense10, Adam, batch 128
The data are random numbers of those shapes (the timing does not depend on their values), so the
script runs offline. dlcli's figure is metrics.csv's epoch_seconds: the epoch's steps with its
train metrics (the checkpoint and metrics.csv written after it are not counted). Every tool's
figure is the median over the timed epochs (after one warm-up epoch) of each round, and the best
of the rounds (`--repeats`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

WORKLOADS = {
    "ffnn": {"n": 68_635, "shape": (28,), "classes": 2, "batch_size": 32, "optimizer": ("sgd", 0.01)},
    "cnn": {"n": 60_000, "shape": (1, 28, 28), "classes": 10, "batch_size": 128, "optimizer": ("adam", 0.001)},
}
FFNN_LAYERS = [
    {"type": "dense", "units": 300, "activation": "relu"},
    {"type": "dense", "units": 150, "activation": "relu"},
    {"type": "dense", "units": 100, "activation": "relu"},
    {"type": "dense", "units": 50, "activation": "relu"},
    {"type": "dense", "units": 1, "activation": "sigmoid"},
]
CNN_LAYERS = [
    {"type": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "max_pool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "max_pool2d", "pool_size": 2},
    {"type": "flatten"},
    {"type": "dropout", "rate": 0.5},
    {"type": "dense", "units": 10, "activation": "softmax"},
]
# name -> (precision, compile, channels_last). channels_last "auto" is dlcli's default, and the hand
# loop stays the plain NCHW loop a user writes; True or False sets both tools' memory format.
VARIANTS = {
    "fp32": ("fp32", False, "auto"), "bf16": ("bf16", False, "auto"), "fp16": ("fp16", False, "auto"),
    "compile": ("fp32", True, "auto"), "compile-bf16": ("bf16", True, "auto"),
    "channels-last": ("fp32", False, True), "nchw": ("fp32", False, False),
}


def make_data(workload: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    w = WORKLOADS[workload]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((w["n"], *w["shape"]), dtype=np.float32)
    y = rng.integers(0, w["classes"], w["n"])
    return x, y


def hand_model(workload: str) -> nn.Module:
    """The same networks written out by hand; the sigmoid/softmax sit in the loss, as dlcli fuses them."""
    if workload == "ffnn":
        return nn.Sequential(nn.Linear(28, 300), nn.ReLU(), nn.Linear(300, 150), nn.ReLU(), nn.Linear(150, 100),
                             nn.ReLU(), nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 1))
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))


def dlcli_initial_weights(workload: str) -> dict:
    """The weights dlcli's run starts from (seed 0): its network body has the hand model's layout."""
    from dlcli.config import load_config
    from dlcli.engine.setup import seed_everything
    from dlcli.nn.network import build_model

    seed_everything(0)
    cfg = load_config({"model": {"layers": FFNN_LAYERS if workload == "ffnn" else CNN_LAYERS},
                       "loss": "binary_crossentropy" if workload == "ffnn" else "categorical_crossentropy"})
    return build_model(cfg, WORKLOADS[workload]["shape"]).body.state_dict()


def hand_optimizer(workload: str, params):
    name, lr = WORKLOADS[workload]["optimizer"]
    return torch.optim.SGD(params, lr=lr) if name == "sgd" else torch.optim.Adam(params, lr=lr)


def hand_targets(workload: str, y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(y.astype(np.float32)).reshape(-1, 1) if workload == "ffnn" else torch.from_numpy(y)


def hand_loss(workload: str) -> nn.Module:
    return nn.BCEWithLogitsLoss() if workload == "ffnn" else nn.CrossEntropyLoss()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_hand_loop(workload, x, y, *, epochs, batch_size, device, precision="fp32", compile=False, loader=False,
                  channels_last="auto"):
    """The loop a PyTorch user writes: in-memory tensors indexed by batch (or a DataLoader over them)."""
    model = hand_model(workload)
    model.load_state_dict(dlcli_initial_weights(workload))  # the same start as dlcli's run: only the loop differs
    fmt = torch.channels_last if channels_last is True and workload == "cnn" else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    step_model = torch.compile(model) if compile else model
    opt = hand_optimizer(workload, model.parameters())
    loss_fn = hand_loss(workload)
    xt, yt = torch.from_numpy(x), hand_targets(workload, y)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    if loader:
        from torch.utils.data import DataLoader, TensorDataset

        batches = DataLoader(TensorDataset(xt, yt), batch_size=batch_size, shuffle=True)
    else:
        xt, yt = xt.to(device), yt.to(device)
    times = []
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        model.train()
        if loader:
            epoch_batches = ((xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)) for xb, yb in batches)
        else:
            perm = torch.randperm(len(xt), device=device)
            epoch_batches = ((xt[idx], yt[idx]) for idx in perm.split(batch_size))
        total = torch.zeros((), device=device)
        for xb, yb in epoch_batches:
            xb = xb.contiguous(memory_format=fmt) if fmt is torch.channels_last else xb
            if dtype is None:
                loss = loss_fn(step_model(xb), yb)
            else:
                with torch.autocast(device.type, dtype=dtype):
                    loss = loss_fn(step_model(xb), yb)
            opt.zero_grad(set_to_none=True)
            if precision == "fp16":
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            total += loss.detach()
        total.item()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def run_dlcli(workload, x, y, *, epochs, batch_size, device, precision="fp32", compile=False, channels_last="auto",
              folder: Path, threads="auto"):
    from dlcli import train
    from dlcli.config import load_config
    from dlcli.runs import read_metrics

    data = folder / f"{workload}.npz"
    if not data.exists():
        np.savez(data, x=x, y=y)
    name, lr = WORKLOADS[workload]["optimizer"]
    cfg = load_config({
        "name": f"bench-{workload}",
        "seed": 0,
        "data": {"path": str(data), "target": "y", "features": ["x"]},
        "model": {"layers": FFNN_LAYERS if workload == "ffnn" else CNN_LAYERS},
        "loss": "binary_crossentropy" if workload == "ffnn" else "categorical_crossentropy",
        "optimizer": {"name": name, "lr": lr},
        "train": {"epochs": epochs, "batch_size": batch_size, "device": str(device), "precision": precision,
                  "compile": compile, "channels_last": channels_last, "threads": threads},
        "metrics": ["accuracy"],
    })
    run = train(cfg, run_dir=folder / f"run-{workload}-{batch_size}-{precision}-{compile}-{time.time_ns()}",
                progress=False)
    return [row["epoch_seconds"] for row in read_metrics(Path(run) / "metrics.csv")]


def run_dlcli_evaluate(workload, x, y, *, epochs, batch_size, device):
    """Inference over the whole table as `dlcli evaluate` does it: batched, under inference_mode."""
    from dlcli.config import load_config
    from dlcli.engine.inference import evaluate_split
    from dlcli.nn.losses import LossContext, build_loss
    from dlcli.nn.network import build_model

    multiclass = workload == "cnn"
    cfg = load_config({"model": {"layers": CNN_LAYERS if multiclass else FFNN_LAYERS},
                       "loss": "categorical_crossentropy" if multiclass else "binary_crossentropy"})
    model = build_model(cfg, x.shape[1:]).to(device)
    task = "multiclass" if multiclass else "binary"
    loss = build_loss(cfg.loss, LossContext(task=task, output_activation=model.output_activation,
                                            activation=model.head)).to(device)
    times = []
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        evaluate_split(model, loss, (x, y), task, "auto", device)
        times.append(time.perf_counter() - start)
    return times


def run_keras(workload, x, y, *, epochs, batch_size, device):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"Keras uses the {keras.backend.backend()} backend; set KERAS_BACKEND=torch")
    keras.utils.set_random_seed(0)
    if workload == "ffnn":
        model = keras.Sequential([keras.Input((28,)), *[keras.layers.Dense(u, activation="relu") for u in
                                                        (300, 150, 100, 50)],
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="binary_crossentropy", metrics=["accuracy"])
        xk, yk = x, y.astype(np.float32)
    else:
        model = keras.Sequential([
            keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
            keras.layers.Dropout(0.5), keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        xk, yk = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    timer = Timer()
    model.fit(xk, yk, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[timer])
    return timer.times


def run_lightning(workload, x, y, *, epochs, batch_size, device):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.loss_fn = hand_model(workload), hand_loss(workload)
            self.net.load_state_dict(dlcli_initial_weights(workload))

        def training_step(self, batch, _):
            xb, yb = batch
            loss = self.loss_fn(self.net(xb), yb)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return hand_optimizer(workload, self.parameters())

    class Timer(L.Callback):
        def __init__(self):
            self.times = []

        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            _sync(device)
            self.times.append(time.perf_counter() - self.start)

    torch.manual_seed(0)
    timer = Timer()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), hand_targets(workload, y)), batch_size=batch_size,
                        shuffle=True)
    trainer = L.Trainer(max_epochs=epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer])
    trainer.fit(Module(), loader)
    return timer.times


def measure(tool, workload, x, y, args, batch_size, variant, folder):
    precision, compile, channels_last = VARIANTS[variant]
    device = torch.device(args.device)
    common = {"epochs": args.epochs + 1, "batch_size": batch_size, "device": device}
    loop = {"precision": precision, "compile": compile, "channels_last": channels_last}
    if tool == "dlcli":
        times = run_dlcli(workload, x, y, folder=folder, **loop, **common)
    elif tool == "hand loop":
        times = run_hand_loop(workload, x, y, **loop, **common)
    elif tool == "hand DataLoader":
        times = run_hand_loop(workload, x, y, loader=True, **loop, **common)
    elif tool == "dlcli evaluate":
        times = run_dlcli_evaluate(workload, x, y, **common)
    elif tool == "keras":
        times = run_keras(workload, x, y, **common)
    elif tool == "lightning":
        times = run_lightning(workload, x, y, **common)
    else:
        raise ValueError(tool)
    return times[1:] if len(times) > 1 else times  # the first epoch warms up (allocations, compiling)


def available(tool: str) -> bool:
    module = {"keras": "keras", "lightning": "lightning"}.get(tool)
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="all", choices=["all", *WORKLOADS])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (one more runs first, untimed)")
    p.add_argument("--repeats", type=int, default=1, help="run every tool this many times, in turns")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", default=None, help="comma-separated; default: each workload's own")
    p.add_argument("--variants", default="fp32", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--tools", default="hand loop,dlcli,hand DataLoader,keras,lightning,dlcli evaluate")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())  # as is; printed below
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    tools = [t.strip() for t in args.tools.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads"
               + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""))
    print(f"# {machine}; python {sys.version.split()[0]}; device {args.device}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            x, y = make_data(workload)
            sizes = ([int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes
                     else [WORKLOADS[workload]["batch_size"]])
            for batch_size in sizes:
                for variant in variants:
                    base = None
                    todo = [t for t in tools if available(t) and (variant == "fp32" or t in ("dlcli", "hand loop",
                                                                                              "hand DataLoader"))]
                    for tool in tools:
                        if not available(tool):
                            print(f"{workload:5} {tool:16} not installed (uv run --extra bench ...)", flush=True)
                    # Machines drift (other load, clocks): run the tools in turns, `--repeats` times, and take
                    # each one's median over all its timed epochs.
                    timed = {t: [] for t in todo}
                    # The first training on fresh data in a process runs slow (seen: the first of two rounds'
                    # hand loop 25-50% slower), so one untimed epoch of the hand loop goes first.
                    run_hand_loop(workload, x, y, epochs=1, batch_size=batch_size, device=torch.device(args.device))
                    for _ in range(args.repeats):
                        for tool in todo:
                            timed[tool].append(measure(tool, workload, x, y, args, batch_size, variant, Path(tmp)))
                    for tool in todo:
                        times = timed[tool]
                        # Each round's median, then the best round: a round slowed by the machine (seen here:
                        # 10-40% drifts over minutes) says nothing about the tool.
                        seconds = min(statistics.median(r) for r in times)
                        base = seconds if tool == "hand loop" else base
                        train_rate = next((r["samples_per_second"] for r in results[::-1]
                                           if r["tool"] == "dlcli" and r["workload"] == workload), None)
                        if tool == "dlcli evaluate" and train_rate:  # not a loop: compare with dlcli's training
                            print(f"{workload:5} dlcli evaluate: {len(x) / seconds:,.0f} samples/s = "
                                  f"{len(x) / seconds / train_rate:.1f}x dlcli's training throughput", flush=True)
                        row = {"workload": workload, "batch_size": batch_size, "variant": variant, "tool": tool,
                               "seconds_per_epoch": seconds, "samples_per_second": len(x) / seconds,
                               "ratio_to_hand_loop": seconds / base if base and tool != "dlcli evaluate" else None,
                               "epoch_seconds": times}
                        results.append(row)
                        ratio = f"{row['ratio_to_hand_loop']:.3f}x" if row["ratio_to_hand_loop"] else "-"
                        print(f"{workload:5} b={batch_size:<5} {variant:12} {tool:16} {seconds:8.3f} s/epoch "
                              f"{row['samples_per_second']:12,.0f} samples/s  {ratio:>8} hand loop", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "device": args.device, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
