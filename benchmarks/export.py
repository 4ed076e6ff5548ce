"""ONNX export against `dlcli predict`, onnxruntime's throughput, and MLflow's cost per epoch.

    uv run python benchmarks/export.py                  # about 3 minutes on 2 CPU cores
    uv run python benchmarks/export.py --rows 20000 --repeats 3

1. The lecture's FFNN (Dense 300-150-100-50-1 on 28 features, as configs/higgs_ffnn.yaml) on a
   synthetic HIGGS-like table with missing values (missing: mean, scale: standard), and the
   lecture-shaped CNN of configs/digits_cnn.yaml on scikit-learn's digits (scale: minmax), and the
   lecture's own Fashion-MNIST CNN (configs/fashion_mnist_cnn.yaml, FASHION-CNN) on the digits scaled
   to 28x28, since Fashion-MNIST itself needs a download. Each is trained one epoch from explicit
   train/val/test files, so the test split is a file of raw rows.
   The ONNX export (preprocessing folded) runs in onnxruntime on the whole raw test file and is
   compared with `dlcli predict` on that file: the predicted class of every row, the largest
   probability difference.
2. Rows/s of onnxruntime (CPU, its default threads) at batch 1 and 4096, against `dlcli predict`
   on a file of the same rows (in-process: reading the file, preparing it and the batched loop;
   --batch-size 1 and 4096).
3. MLflow's cost on the quickstart (60 epochs): the median wall time between consecutive epoch ends
   (everything an epoch does, callbacks included), with and without `tracking: [{type: mlflow}]`,
   runs alternated; also the whole train() call, whose difference is mlflow's one-time cost.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import dlcli
from dlcli.engine.callbacks import OnEpochEnd

ROOT = Path(__file__).resolve().parent.parent

FFNN = """name: lecture-ffnn
seed: 42
data: {train: train.csv, val: val.csv, test: test.csv, target: class, missing: mean, scale: standard}
model:
  layers:
    - {type: dense, units: 300, activation: relu}
    - {type: dense, units: 150, activation: relu}
    - {type: dense, units: 100, activation: relu}
    - {type: dense, units: 50, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: sgd, lr: 0.01}
train: {epochs: 1, batch_size: 32}
"""


def higgs_like(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 28)) * rng.uniform(0.5, 20, 28) + rng.uniform(-5, 50, 28)
    w = rng.normal(size=28) / np.abs(x).mean(axis=0)
    y = ((x * w).sum(axis=1) + rng.normal(size=rows) > 0).astype(int)
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"f{j}" for j in range(28)])
    frame.iloc[rng.integers(0, rows, rows // 50), 3] = np.nan  # missing values for the folded fill
    frame["class"] = y
    return frame


def digits_files(folder: Path, size: int = 8) -> None:
    """scikit-learn's digits as train/val/test .npz files; `size=28`: each 8x8 image scaled 3x and padded
    to Fashion-MNIST's 28x28, for the lecture's own CNN (Fashion-MNIST itself needs a download)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 1, 8, 8).astype(np.float32)
    if size == 28:
        x = np.pad(np.kron(x, np.ones((1, 1, 3, 3), np.float32)), ((0, 0), (0, 0), (2, 2), (2, 2)))
    order = np.random.default_rng(0).permutation(len(x))
    parts = {"train": order[:1200], "val": order[1200:1440], "test": order[1440:]}
    for name, index in parts.items():
        np.savez(folder / f"{name}.npz", x=x[index], y=y[index])


def cnn_config(source: str = "digits_cnn.yaml") -> str:
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / source).read_text())
    cfg["name"] = "lecture-cnn"
    cfg["model"].pop("input_shape", None)  # from the files' images
    cfg["data"] = {"train": "train.npz", "val": "val.npz", "test": "test.npz", "target": "y", "features": ["x"],
                   "scale": "minmax"}
    cfg["train"] = {"epochs": 1, "batch_size": 64}
    return yaml.safe_dump(cfg, sort_keys=False)


def raw_test(folder: Path, kind: str) -> np.ndarray:
    if kind == "ffnn":
        return pd.read_csv(folder / "test.csv").drop(columns="class").to_numpy(np.float32)
    return np.load(folder / "test.npz")["x"].astype(np.float32)


def rows_per_second(fn, rows: int, seconds: float = 2.0) -> float:
    fn()  # warm
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        done += rows
    return done / (time.perf_counter() - started)


def export_check(kind: str, folder: Path, out: list[str]) -> None:
    import onnxruntime as ort

    result = dlcli.train(folder / "cfg.yaml", runs_root=folder / "runs", progress=False)
    exported = dlcli.export(result.run_dir)
    test_file = folder / ("test.csv" if kind == "ffnn" else "test.npz")
    x = raw_test(folder, kind)
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    probs = session.run(None, {name: x})[0]
    table = dlcli.predict(result.run_dir, test_file).table
    prob_columns = [c for c in table.columns if c.startswith("prob_")]
    dlcli_probs = table[prob_columns].to_numpy()
    if kind == "ffnn":  # binary: the model gives p(class 1); predict both classes' probabilities
        probs = np.column_stack([1 - probs[:, 0], probs[:, 0]])
    classes = np.array([c[len("prob_"):] for c in prob_columns])
    same = (classes[probs.argmax(axis=1)] == table["predicted"].astype(str).to_numpy()).mean()
    worst = np.abs(probs - dlcli_probs).max()
    nan_rows = int(np.isnan(x.reshape(len(x), -1)).any(axis=1).sum())
    out.append(f"| {kind.upper()} | {len(x)} ({nan_rows} with NaN) | {same * 100:.2f}% | {worst:.2e} |")

    # Throughput: onnxruntime at batch 1 and 4096, dlcli predict on a file of the same rows.
    big = np.concatenate([x] * int(np.ceil(4096 / len(x))))[:4096]
    ort_1 = rows_per_second(lambda: session.run(None, {name: x[:1]}), 1)
    ort_4096 = rows_per_second(lambda: session.run(None, {name: big}), len(big))
    one = folder / ("one.csv" if kind == "ffnn" else "one.npz")
    many = folder / ("big.csv" if kind == "ffnn" else "big.npz")
    if kind == "ffnn":
        columns = [f"f{j}" for j in range(28)]
        pd.DataFrame(x[:512], columns=columns).to_csv(one, index=False)
        pd.DataFrame(big, columns=columns).to_csv(many, index=False)
    else:
        np.savez(one, x=x[:512], y=np.zeros(len(x[:512]), int))
        np.savez(many, x=big, y=np.zeros(len(big), int))
    dl_1 = rows_per_second(lambda: dlcli.predict(result.run_dir, one, batch_size=1), len(x[:512]))
    dl_4096 = rows_per_second(lambda: dlcli.predict(result.run_dir, many, batch_size=4096), len(big))
    out.append(f"| {kind.upper()} | {ort_1:,.0f} | {dl_1:,.0f} | {ort_4096:,.0f} | {dl_4096:,.0f} |")


def mlflow_overhead(repeats: int, folder: Path) -> list[str]:
    """quickstart without tracking, into one sqlite store that exists after the first run, and into a new
    store each run (its tables made as the run starts): the median gap between epoch ends, and the run."""
    shared = f"sqlite:///{folder / 'mlflow.db'}"
    results: dict[str, list] = {"off": [], "mlflow": [], "new": []}
    for r in range(repeats):
        for mode in results:
            ends: list[float] = []
            uri = shared if mode == "mlflow" else f"sqlite:///{folder / f'new-{r}.db'}"
            overrides = ["train.threads=1"] + ([f'tracking=[{{type: mlflow, uri: "{uri}"}}]'] if mode != "off"
                                               else [])
            started = time.perf_counter()
            dlcli.train(ROOT / "configs" / "quickstart.yaml", overrides, runs_root=folder / "runs", progress=False,
                        callbacks=[OnEpochEnd(lambda t, r, ends=ends: ends.append(time.perf_counter()))])
            total = time.perf_counter() - started
            gaps = np.diff(ends)
            results[mode].append((statistics.median(gaps), total))
    off = statistics.median(g for g, _ in results["off"])
    total_off = statistics.median(t for _, t in results["off"])
    rows = []
    for mode, label in (("mlflow", "an existing store"), ("new", "a new store each run")):
        on = statistics.median(g for g, _ in results[mode])
        total_on = statistics.median(t for _, t in results[mode])
        rows.append(f"| quickstart, 60 epochs, {label} ({repeats} runs each) | {off * 1000:.2f} ms | "
                    f"{on * 1000:.2f} ms | {(on / off - 1) * 100:+.1f}% | {total_off:.2f} s | {total_on:.2f} s |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=30000, help="rows of the synthetic FFNN table")
    parser.add_argument("--repeats", type=int, default=3, help="quickstart runs with and without mlflow")
    parser.add_argument("--only", choices=("export", "mlflow"), help="one part of the benchmark")
    args = parser.parse_args()
    agreement = ["| model | test rows | same class | largest prob difference |", "| --- | --- | --- | --- |"]
    speed = ["| model | onnxruntime batch 1 | dlcli predict batch 1 | onnxruntime batch 4096 | "
             "dlcli predict batch 4096 |", "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in ("ffnn", "cnn", "fashion-cnn") if args.only != "mlflow" else ():
            folder = tmp / kind
            folder.mkdir()
            if kind == "ffnn":
                table = higgs_like(args.rows, 1)
                n = len(table)
                table[: int(n * 0.6)].to_csv(folder / "train.csv", index=False)
                table[int(n * 0.6): int(n * 0.8)].to_csv(folder / "val.csv", index=False)
                table[int(n * 0.8):].to_csv(folder / "test.csv", index=False)
                (folder / "cfg.yaml").write_text(FFNN)
            elif kind == "cnn":
                digits_files(folder)
                (folder / "cfg.yaml").write_text(cnn_config())
            else:  # the lecture's Fashion-MNIST CNN, exactly (configs/fashion_mnist_cnn.yaml), on 28x28 digits
                digits_files(folder, size=28)
                (folder / "cfg.yaml").write_text(cnn_config("fashion_mnist_cnn.yaml"))
            out: list[str] = []
            export_check(kind, folder, out)
            print(*out, sep="\n", flush=True)
            agreement.append(out[0])
            speed.append(out[1])
        tracking = ["| workload | epoch, no tracking | epoch, mlflow | overhead | train(), no tracking | "
                    "train(), mlflow |", "| --- | --- | --- | --- | --- | --- |",
                    *(mlflow_overhead(args.repeats, tmp) if args.only != "export" else [])]
    print("\n".join(agreement), "", "rows/s:", "\n".join(speed), "", "\n".join(tracking), sep="\n")


if __name__ == "__main__":
    main()
