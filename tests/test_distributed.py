"""Data-parallel training with torchrun (DDP) on CPU with gloo, 2 processes (`dlcli train --nproc 2`).

One launched run proves several things at once: its weights equal a 1-process run's with the same
global batch (SGD, no dropout, one seeded permutation), its validation over 7 rows equals a hand
computation with scikit-learn from the checkpoint (every row once, no padding duplicates), it wrote
one run directory with a metrics.csv row per epoch, and a single-process `evaluate` reads its
checkpoint. A weighted run (event and class weights) matches 1 process the same way. Two more runs are
stopped: rank 0 SIGKILLed (rank 1 marks the run failed, nothing hangs) and SIGTERM (interrupted, then
resumed on one process). Sharding of streamed chunks and image files is checked without processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss

from dlcli import evaluate, train
from dlcli.commands.reports import read_run
from dlcli.engine.distributed import first_host, from_env
from dlcli.runs import read_metrics
from dlcli.runs.run import Run

pytestmark = pytest.mark.skipif(sys.platform == "win32" or not torch.distributed.is_available(),
                                reason="gloo processes and POSIX signals")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}

CONFIG = """\
seed: 3
data: {{train: train.npz, val: val.npz, target: y, features: [x]}}
model:
  layers:
    - {{type: dense, units: 8, activation: tanh}}
    - {{type: dense, units: 1, activation: sigmoid}}
loss: binary_crossentropy
optimizer: {{name: sgd, lr: 0.2}}
train: {{epochs: {epochs}, batch_size: 8, device: cpu, threads: 1}}
metrics: [accuracy]
distributed: {{timeout: 20}}
"""


def write_data(folder: Path, train_rows: int = 61) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("train", train_rows), ("val", 7)):
        x = rng.standard_normal((n, 5)).astype(np.float32)
        y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.standard_normal(n) > 0).astype(np.int64)
        w = rng.uniform(0.05, 3.0, n).astype(np.float32)  # event weights, for the weighted run
        np.savez(folder / f"{name}.npz", x=x, y=y, w=w)


def launch(folder: Path, *args, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlcli", "train", "cfg.yaml", "--nproc", "2", "--no-progress",
                             *map(str, args)], cwd=folder, env=ENV, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


def weights(run: Path, which: str = "last") -> dict:
    return torch.load(run / "checkpoints" / f"{which}.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    write_data(folder)
    (folder / "cfg.yaml").write_text(CONFIG.format(epochs=2))
    proc = launch(folder, "--run-dir", "two")
    out, err = proc.communicate(timeout=55)
    assert proc.returncode == 0, out + err
    one = train(folder / "cfg.yaml", run_dir=folder / "one", progress=False)  # 1 process, the same global batch
    return folder, out, err, one


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_two_ranks_train_as_one_and_validate_every_row_once(ddp):
    folder, out, err, one = ddp
    run = folder / "two"
    assert "completed 2 epochs" in out and "Traceback" not in out + err
    # Equivalence: 2 ranks with global batch 8 (4 rows each; the last batch of 5 rows split 3 + 2) give the
    # weights of 1 process with batch 8.
    two_w, one_w = weights(run), weights(Path(one.run_dir))
    assert two_w.keys() == one_w.keys()
    for key in one_w:
        assert torch.allclose(two_w[key], one_w[key], rtol=1e-5, atol=1e-7), key
    rows, single = read_metrics(run / "metrics.csv"), one.history
    assert [r["epoch"] for r in rows] == [1, 2]  # one row per epoch, written once
    for r, s in zip(rows, single):
        assert r["val_accuracy"] == s["val_accuracy"] and r["train_accuracy"] == s["train_accuracy"]
        assert r["val_loss"] == pytest.approx(s["val_loss"], rel=1e-5)
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-5)
    # Exact validation on 7 rows (4 + 3 over the ranks): scikit-learn on the checkpoint's predictions.
    model, _, _ = Run.open(run).network("last")
    val = np.load(folder / "val.npz")
    with torch.no_grad():
        p = model.predict(torch.from_numpy(val["x"])).numpy().ravel()
    assert rows[-1]["val_loss"] == pytest.approx(log_loss(val["y"], p, labels=[0, 1]), rel=1e-5)
    assert rows[-1]["val_accuracy"] == accuracy_score(val["y"], p > 0.5)
    # A single-process evaluate of the DDP checkpoint: the same numbers, on the same 7 rows.
    result = evaluate(run, split="val", checkpoint="last", plots=False, write=False)
    assert result["n_samples"] == 7
    assert result["metrics"]["accuracy"] == accuracy_score(val["y"], p > 0.5)
    # One run directory, written by rank 0; rank 1 only logs.
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["one", "two"]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["world_size"] == 2 and info["backend"] == "gloo"
    assert [p.name for p in (run / "logs").iterdir()] == ["rank1.log"]
    assert "epoch 2" in (run / "logs" / "rank1.log").read_text()
    assert not list(run.rglob("*.tmp")) and not (run / "run.lock").exists()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_weighted_training_on_two_ranks_is_one_global_weighted_mean(tmp_path):
    """Event weights and class weights: each rank's loss is its part's sum(w l) over the global batch's
    sum(w) / 2, so the gradient DDP averages is the global batch's weighted mean's, as on one process."""
    write_data(tmp_path)
    text = CONFIG.format(epochs=2).replace("features: [x]", "features: [x], weight: w")
    (tmp_path / "cfg.yaml").write_text(text.replace("threads: 1", "threads: 1, class_weight: {0: 1.0, 1: 2.5}"))
    proc = launch(tmp_path, "--run-dir", "two")
    out, err = proc.communicate(timeout=55)
    assert proc.returncode == 0, out + err
    one = train(tmp_path / "cfg.yaml", run_dir=tmp_path / "one", progress=False)
    two_w, one_w = weights(tmp_path / "two"), weights(Path(one.run_dir))
    for key in one_w:
        assert torch.allclose(two_w[key], one_w[key], rtol=1e-5, atol=1e-7), key
    rows = read_metrics(tmp_path / "two" / "metrics.csv")
    for r, s in zip(rows, one.history, strict=True):
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-5)
        assert r["train_accuracy"] == pytest.approx(s["train_accuracy"], rel=1e-6)
        assert r["val_loss"] == pytest.approx(s["val_loss"], rel=1e-5)
        assert r["val_accuracy"] == pytest.approx(s["val_accuracy"], rel=1e-6)
    # The weighted validation (7 rows: 4 + 3 over the ranks) against scikit-learn with sample_weight.
    model, _, _ = Run.open(tmp_path / "two").network("last")
    val = np.load(tmp_path / "val.npz")
    with torch.no_grad():
        p = model.predict(torch.from_numpy(val["x"])).numpy().ravel()
    assert rows[-1]["val_loss"] == pytest.approx(log_loss(val["y"], p, sample_weight=val["w"], labels=[0, 1]),
                                                 rel=1e-5)
    assert rows[-1]["val_accuracy"] == pytest.approx(accuracy_score(val["y"], p > 0.5, sample_weight=val["w"]))
    # and the weights matter: the unweighted accuracy of these predictions is another number
    assert accuracy_score(val["y"], p > 0.5) != pytest.approx(rows[-1]["val_accuracy"])


def wait_for_epochs(run: Path, proc: subprocess.Popen, n: int, timeout: float = 40) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if (run / "metrics.csv").exists() and len(read_metrics(run / "metrics.csv")) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {n} epochs in time: {proc.poll()}")


# Rank 0 by default: the rank that writes run.json dies, and rank 1 must mark the run failed. Rank 1's
# death (rank 0 writes) costs another 10 s: DLCLI_DDP_KILL_RANKS=0,1 runs both.
KILL_RANKS = [int(r) for r in os.environ.get("DLCLI_DDP_KILL_RANKS", "0").split(",")]


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("victim", KILL_RANKS)
def test_a_killed_rank_fails_the_run_without_hanging(tmp_path, victim):
    write_data(tmp_path, train_rows=400)
    (tmp_path / "cfg.yaml").write_text(CONFIG.format(epochs=2000))
    proc = launch(tmp_path, "--run-dir", "run")
    run = tmp_path / "run"
    wait_for_epochs(run, proc, 1)
    pid = (json.loads((run / "run.json").read_text())["pid"] if victim == 0 else
           int(re.search(r"\(pid (\d+)\)", (run / "logs" / "rank1.log").read_text()).group(1)))
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    out, err = proc.communicate(timeout=40)
    assert time.monotonic() - killed < 25  # within distributed.timeout (20 s), rather than never
    assert proc.returncode == 1, out + err
    assert "Traceback" not in out + err
    # the launcher names the killed rank and its signal; the survivor says why it stopped
    said = err if victim == 1 else err + (run / "logs" / "rank1.log").read_text()
    assert f"rank {victim} (pid {pid}) of 2 died" in said
    if victim == 0:
        assert "rank 0 of 2 was killed by SIGKILL" in err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and f"rank {victim} (pid {pid})" in info["message"]
    assert not (run / "run.lock").exists()
    assert read_run(run).status == "failed"  # as `dlcli runs` lists it (a run left `running` shows as killed)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sigterm_marks_the_run_interrupted_and_it_resumes_on_one_process(tmp_path):
    write_data(tmp_path, train_rows=400)
    (tmp_path / "cfg.yaml").write_text(CONFIG.format(epochs=2000))
    proc = launch(tmp_path, "--run-dir", "run")
    run = tmp_path / "run"
    wait_for_epochs(run, proc, 2)
    proc.send_signal(signal.SIGTERM)  # to the launcher, which passes it to every rank
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 143, out + err
    assert "dlcli train --resume" in err and "Traceback" not in out + err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and "SIGTERM" in info["message"]
    done = info["epochs_completed"]
    before = read_metrics(run / "metrics.csv")[:done]
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["state"]["epoch"] == done
    # Resumed with a different world size (1 process, the same global batch): it goes on from epoch done + 1.
    result = train(None, [f"train.epochs={done + 1}"], resume=run, progress=False)
    rows = read_metrics(run / "metrics.csv")
    assert result.epochs == done + 1 and [r["epoch"] for r in rows] == list(range(1, done + 2))
    assert [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows[:done]] == \
        [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in before]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["world_size"] == 1


def test_the_launchers_environment():
    assert from_env({}) is None
    assert from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}).rank == 3
    slurm = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    world = from_env(slurm)
    assert (world.rank, world.size, world.local_rank, world.launcher) == (5, 8, 1, "slurm")
    # a batch script of an 8-task job that runs dlcli without srun is one process
    assert from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) is None
    assert first_host("gpu[03-04,07],cpu1") == "gpu03" and first_host("node7") == "node7"


def test_a_stop_is_told_from_a_failure_only_by_notes_of_this_attempt(tmp_path, monkeypatch):
    """Without processes: rank 0 reads the run as stopped (a signal) only when every rank it saw go, and every
    rank on another host (which it cannot see), left a note; an earlier attempt's notes are cleared first."""
    import socket

    from dlcli.engine import distributed as d

    here = socket.gethostname()
    dead = 2**22 + 12345  # no such pid: pid_max is at most 2**22
    logs = tmp_path / d.LOGS
    logs.mkdir()

    def group(rank, peers):
        monkeypatch.setattr(d, "_group", d.Group(d.World(rank, len(peers), rank, "torchrun"), "gloo", 5.0, peers))

    group(0, [(here, os.getpid()), (here, dead), (here, os.getpid())])
    assert d.stopped_peers(tmp_path) is None  # rank 1 went without a word
    (logs / "rank1.stopped").write_text("15\n")
    assert d.stopped_peers(tmp_path) == 15
    (logs / "rank2.stopped").write_text("15\n")
    d.clear_notes(tmp_path)  # rank 0 starting an attempt: none of these notes is this attempt's
    assert not list(logs.glob("*.stopped")) and d.stopped_peers(tmp_path) is None

    group(0, [(here, os.getpid()), ("elsewhere", 42), (here, dead)])
    (logs / "rank2.stopped").write_text("15\n")
    assert d.stopped_peers(tmp_path) is None  # rank 1's host cannot be seen: it may have crashed
    (logs / "rank1.stopped").write_text("15\n")
    assert d.stopped_peers(tmp_path) == 15

    group(1, [(here, os.getpid()), (here, os.getpid())])
    d.clear_notes(tmp_path)  # only rank 0 clears
    assert len(list(logs.glob("*.stopped"))) == 2


def test_each_rank_reads_its_own_chunks_files_and_validation_rows(tmp_path):
    """Sharding without processes: the ranks' shares of a streamed table's chunks (train and val) and of an
    image folder's files (a map-style Dataset) are disjoint, cover the split, and give equal step counts."""
    import pandas as pd
    from torch.utils.data import TensorDataset

    from dlcli.config import DataConfig
    from dlcli.data import stream
    from dlcli.engine.batches import Batches

    rng = np.random.default_rng(0)
    n = 1030
    pd.DataFrame({"rowid": np.arange(n), "a": rng.normal(size=n), "y": rng.integers(0, 2, n)}).to_csv(
        tmp_path / "t.csv", index=False)
    splits = stream.load_streamed(DataConfig(path=str(tmp_path / "t.csv"), target="y", stream=True,
                                             split={"val": 0.2}), task="binary", seed=1, chunk_rows=100).splits
    train_split, val = splits["train"], splits["val"]
    assert train_split.chunks() == 11
    works = [train_split.sharded(r, 2).work(epoch=3) for r in (0, 1)]
    assert not set(works[0]) & set(works[1]) and sorted(works[0] + works[1]) == sorted(train_split.work(3))
    assert abs(len(works[0]) - len(works[1])) <= 1
    # validation: the ranks' parts, in rank order, are the split's rows, each once
    def rows(split):
        return np.concatenate([x[:, 0].numpy() for x, _ in split.batches(64)])
    parts = [rows(val.sharded(r, 2)) for r in (0, 1)]
    assert len(parts[0]) + len(parts[1]) == len(val)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.sort(rows(val)))
    # files (a map-style Dataset): each rank loads its own part of every global batch of one permutation
    files = TensorDataset(torch.arange(23, dtype=torch.float32).reshape(-1, 1), torch.zeros(23, dtype=torch.long))
    epochs = [list(Batches(files, "binary", torch.device("cpu"), 6, shuffle=True, seed=4, workers=0,
                           shard=(r, 2)).epoch(1)) for r in (0, 1)]
    assert len(epochs[0]) == len(epochs[1]) == 4  # 23 rows: three batches of 6, a last one of 5 split 3 + 2
    seen = [int(v) for xb0, xb1 in zip(*[[xb for xb, _ in e] for e in epochs]) for v in torch.cat([xb0, xb1])]
    assert sorted(seen) == list(range(23))
    assert [len(xb) for xb, _ in epochs[0]] == [3, 3, 3, 3] and [len(xb) for xb, _ in epochs[1]] == [3, 3, 3, 2]
