"""Resume takes what it is told or refuses it, and one run belongs to one process at a time.

In-process: a resume with `optimizer.lr` trains at that lr (checked against the value given and a
schedule worked by hand), is logged in run.json, and leaves `command` alone; an override that would
change what the checkpoint describes is refused and the run is left byte-for-byte as it was; the
lock refuses a second process and frees itself when its holder is SIGKILLed; `runs` tells a killed
run from a running one. The signal tests run dlcli as a batch system would, in their own process group.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlcli.commands.reports import runs_table
from dlcli.commands.train import train
from dlcli.errors import ConfigError, RunError
from dlcli.runs.lock import LOCK, RunLock, is_locked

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")

CONFIG = """\
name: tiny
seed: 5
data: {dataset: breast_cancer, split: {val: 0.2, test: 0.2}, scale: standard}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 64, device: cpu}
"""


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def info(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def trained(tmp_path):
    """A 3-epoch run, from a config with `extra` appended."""

    def make(extra: str = "", name: str = "run") -> Path:
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(CONFIG + extra)
        return train(cfg, run_dir=tmp_path / name, progress=False).run_dir

    return make


def test_an_lr_override_on_resume_is_applied_logged_and_shown(trained):
    run = trained()
    command = info(run)["command"]
    result = train(None, ["optimizer.lr=0.0001", "train.epochs=5"], resume=run, progress=False)
    assert result.epochs == 5
    assert [float(r["lr"]) for r in rows(run)] == [0.01, 0.01, 0.01, 0.0001, 0.0001]
    record = info(run)
    assert record["command"] == command  # the run's own command stays
    assert [r["overrides"] for r in record["resumed"]] == [["optimizer.lr=0.0001", "train.epochs=5"]]
    assert record["pid"] == os.getpid() and record["host"]


def test_a_schedule_goes_on_from_the_new_lr_at_the_epoch_it_reached(trained):
    run = trained("schedule: {name: exponential, gamma: 0.5}\n")
    train(None, ["optimizer.lr=0.004", "train.epochs=5"], resume=run, progress=False)
    # Worked by hand: lr_e = lr0 * gamma^e; epochs 1-3 at 0.01 * 0.5^(0, 1, 2), then 0.004 * 0.5^(3, 4).
    assert [float(r["lr"]) for r in rows(run)] == pytest.approx([0.01, 0.005, 0.0025, 0.0005, 0.00025])


@pytest.mark.parametrize("override", [
    "model.layers[0].units=10",   # another network: the checkpoint's weights do not fit
    "model.layers[0].activation=tanh",  # the same shapes, another network all the same
    "data.split.val=0.3",
    "data.dataset=wine",
    "seed=1",
    "train.batch_size=16",
    "loss=mse",
])
def test_an_override_that_changes_what_was_trained_is_refused_and_the_run_left_as_it_was(trained, override):
    run = trained()
    before = digest(run)
    with pytest.raises((ConfigError, RunError)) as caught:
        train(None, [override, "train.epochs=5"], resume=run, progress=False)
    assert override.partition("=")[0] in str(caught.value) or "metrics" in str(caught.value)
    assert digest(run) == before
    assert not (run / LOCK).exists()


def test_a_run_that_stopped_early_goes_on_only_when_told_how(tmp_path):
    cfg = tmp_path / "es.yaml"
    # min_delta 10: no epoch after the first counts as an improvement, so patience 0 stops at epoch 2.
    cfg.write_text(CONFIG.replace("epochs: 3", "epochs: 40").replace(
        "device: cpu}", "device: cpu, early_stopping: {patience: 0, min_delta: 10.0}}"))
    run = train(cfg, run_dir=tmp_path / "es", progress=False)
    assert run.stopped_early and run.epochs == 2
    with pytest.raises(RunError, match="stopped early at epoch 2.*patience"):
        train(None, [], resume=run.run_dir, progress=False)
    again = train(None, ["train.early_stopping.patience=2"], resume=run.run_dir, progress=False)
    assert again.epochs == 4 and again.stopped_early  # two more epochs without improvement, then stop


def test_a_second_process_is_refused_by_the_lock(trained):
    run = trained()
    before = digest(run)
    with RunLock(run):
        assert is_locked(run)
        with pytest.raises(RunError, match=rf"is in use by process {os.getpid()} on "):
            train(None, ["train.epochs=4"], resume=run, progress=False)
        assert runs_table(run.parent)[0]["status"] == "completed"
    assert digest(run) == before and not is_locked(run)


@posix_only
def test_the_lock_dies_with_its_process_and_runs_shows_the_run_killed(trained):
    run = trained()
    record = info(run)
    (run / "run.json").write_text(json.dumps({**record, "status": "running"}))
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from dlcli.runs.lock import RunLock
        RunLock({str(run)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert runs_table(run.parent)[0]["status"] == "running"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
    assert runs_table(run.parent)[0]["status"] == "killed"
    train(None, ["train.epochs=4"], resume=run, progress=False)  # the lock file left behind is no obstacle
    assert info(run)["status"] == "completed" and not (run / LOCK).exists()


def test_a_resume_removes_what_a_killed_write_left(trained):
    run = trained()
    left = [run / ".metrics.csv.x1.tmp", run / "checkpoints" / ".last.pt.x2.tmp"]
    for path in left:
        path.write_bytes(b"half a file")
    train(None, ["train.epochs=4"], resume=run, progress=False)
    assert not any(p.exists() for p in left)


def test_a_run_killed_before_its_first_checkpoint_says_start_again(trained):
    run = trained()
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    with pytest.raises(RunError, match="stopped before its first checkpoint.*start again"):
        train(None, [], resume=run, progress=False)


# ----------------------------------------------------------------------------------------------
# Signals as a batch system sends them: to the whole process group, sometimes twice

_SCRIPT = Path(sys.executable).with_name("dlcli")
DLCLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "dlcli.cli"]
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}


def start_in_group(args: list[str], cwd: Path, through_uv: bool = False) -> subprocess.Popen:
    command = [shutil.which("uv"), "run", "--no-sync", "--project", str(ROOT), "dlcli"] if through_uv else DLCLI
    return subprocess.Popen([*command, *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
@posix_only
@pytest.mark.parametrize("signum, code, through_uv", [
    (signal.SIGTERM, 143, False),  # SIGINT: test_cli.py's Ctrl-C test, which also resumes the run
    pytest.param(signal.SIGTERM, 143, True, marks=pytest.mark.skipif(not shutil.which("uv"), reason="needs uv")),
])
def test_a_signal_to_the_process_group_marks_the_run_interrupted(tmp_path, signum, code, through_uv):
    (tmp_path / "long.yaml").write_text(CONFIG.replace("epochs: 3", "epochs: 500"))
    proc = start_in_group(["train", "long.yaml", "--run-dir", "run", "--no-progress"], tmp_path, through_uv)
    try:
        wait_for(lambda: (tmp_path / "run" / "metrics.csv").exists(), proc)
        for _ in range(2):  # the group's signal, then the one `uv run` (or a batch system's second try) sends
            os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and "marked interrupted" in err
    assert info(tmp_path / "run")["status"] == "interrupted"


def test_a_resume_to_fewer_epochs_than_trained_is_refused(trained):
    run = trained()
    record = info(run)
    (run / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    with pytest.raises(RunError, match="already completed 3 epochs.*above 3"):
        train(None, ["train.epochs=2"], resume=run, progress=False)
