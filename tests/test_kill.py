"""A run killed at any moment resumes to the same numbers as a run never stopped.

`dlcli train` is SIGKILLed at seeded random moments, from start-up through setup, checkpoint and
metrics.csv writes to the end; each time `dlcli train --resume` continues it (or says it cannot:
killed before the first checkpoint, and then training starts again), and the finished metrics.csv
must equal an uninterrupted run's, value for value. The suite kills twice; DLCLI_KILLS=20 kills 20.
A full disk mid-training (writes failing with ENOSPC) is a one-line error, and the run resumes.
"""

from __future__ import annotations

import csv
import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlcli.commands.train import train
from dlcli.errors import RunError

KILLS = int(os.environ.get("DLCLI_KILLS", "2"))
_SCRIPT = Path(sys.executable).with_name("dlcli")
DLCLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "dlcli.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}

CONFIG = """\
name: killed
seed: 11
data: {dataset: breast_cancer, split: {val: 0.2, test: 0.2}, scale: standard}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dropout, rate: 0.2}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, lr: 0.003}
schedule: {name: cosine}
train: {epochs: 30, batch_size: 16, device: cpu, early_stopping: {patience: 20}}
metrics: [accuracy, auc]
"""


def dlcli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*DLCLI, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in csv.DictReader(f)]


def leftovers(run: Path) -> list[Path]:
    return [p for p in run.rglob("*.tmp")] + ([run / "run.lock"] if (run / "run.lock").exists() else [])


def start(run: str, cwd: Path, until: str = "run.json") -> tuple[subprocess.Popen, float]:
    """A training started, and the seconds until its run folder held `until` (run.json: setup done;
    metrics.csv: the first epoch done)."""
    began = time.monotonic()
    proc = subprocess.Popen([*DLCLI, "train", "cfg.yaml", "--run-dir", run, "--no-progress"], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (cwd / run / until).exists() and proc.poll() is None:
        time.sleep(0.005)
    return proc, time.monotonic() - began


@pytest.mark.slow
@pytest.mark.timeout(60 + 60 * KILLS)
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    proc, setup = start("reference", tmp_path)  # start-up and setup: until run.json
    while not (tmp_path / "reference" / "metrics.csv").exists() and proc.poll() is None:
        time.sleep(0.005)
    first = time.monotonic()
    while len(metrics(tmp_path / "reference")) < 30 and proc.poll() is None:
        time.sleep(0.005)
    epochs = time.monotonic() - first  # epochs 2 to 30, their checkpoint and metrics.csv writes
    assert proc.wait(timeout=300) == 0
    reference = metrics(tmp_path / "reference")
    assert len(reference) == 30

    rng = random.Random(2026)
    outcomes = []
    for k in range(KILLS):
        run = tmp_path / f"run{k}"
        if k % 5 == 4:  # one kill in five during start-up and setup (before the first checkpoint)
            proc = subprocess.Popen([*DLCLI, "train", "cfg.yaml", "--run-dir", run.name], cwd=tmp_path, env=ENV,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, setup))
        else:  # the rest while it trains: inside an epoch, or while it writes a checkpoint or metrics.csv
            proc, _ = start(run.name, tmp_path, until="metrics.csv")
            time.sleep(rng.uniform(0, epochs))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed_at = f"{len(metrics(run)) if (run / 'metrics.csv').exists() else 0} epochs in metrics.csv"
        resumed = dlcli("train", "--resume", run.name, "--no-progress", cwd=tmp_path)
        output = resumed.stdout + resumed.stderr
        assert "Traceback" not in output, output
        if resumed.returncode == 2 and ("before its first checkpoint" in output or "no such run directory" in output
                                        or "nothing to resume" in output):
            outcome = "before the first checkpoint"  # as it says: start again
            again = dlcli("train", "cfg.yaml", "--run-dir", f"again{k}", "--no-progress", cwd=tmp_path)
            assert again.returncode == 0, again.stderr
            run = tmp_path / f"again{k}"
        elif resumed.returncode == 2 and "already completed" in output:
            outcome = "after the end"
        else:
            assert resumed.returncode == 0, output
            outcome = f"mid-run ({killed_at})"
        assert metrics(run) == reference, (k, outcome)
        assert leftovers(run) == [], (k, outcome)
        outcomes.append(outcome)
    print(f"\n{KILLS} kills, each resumed to metrics equal to the uninterrupted run's:")
    for outcome in outcomes:
        print("  killed", outcome)


def test_a_full_disk_mid_training_is_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    (tmp_path / "cfg.yaml").write_text(CONFIG.replace("epochs: 30", "epochs: 4"))
    reference = train(tmp_path / "cfg.yaml", run_dir=tmp_path / "reference", progress=False).run_dir

    import dlcli.runs.files as files

    real_fsync, writes = os.fsync, []

    def fsync(fd):  # the disk fills up at the 12th file written: epoch 2's last.pt
        writes.append(fd)
        if len(writes) >= 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(RunError, match=r"no space left on device.*dlcli train --resume"):
        train(tmp_path / "cfg.yaml", run_dir=tmp_path / "full", progress=False)
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert [p for p in (tmp_path / "full").rglob("*.tmp")] == []
    train(None, resume=tmp_path / "full", progress=False)
    assert metrics(tmp_path / "full") == metrics(reference)
