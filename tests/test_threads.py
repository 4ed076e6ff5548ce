"""train.threads: a count as given, the user's own setting kept, and `auto` choosing on (injected) timings."""

from __future__ import annotations

import json

import pytest
import torch

from dlcli.commands.train import train
from dlcli.config import load_config
from dlcli.engine import threads as th
from dlcli.errors import ConfigError

CONFIG = """\
data: {dataset: breast_cancer, split: {val: 0.2}}
model: {layers: [{type: dense, units: 4, activation: relu}, {type: dense, units: 1, activation: sigmoid}]}
loss: binary_crossentropy
train: {epochs: 1, device: cpu}
"""


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(th, "_set_by_us", before)  # the suite's own count is not a user's choice here
    yield
    torch.set_num_threads(before)


class FakeClock:
    """A timer whose every step takes `step_ms[threads]` milliseconds, threads being torch's count then."""

    def __init__(self, step_ms: dict[int, float]):
        self.step_ms, self.now = step_ms, 0.0

    def __call__(self) -> float:
        self.now += self.step_ms[torch.get_num_threads()] / 1e3
        return self.now


def run_steps(tuner: th.ThreadTuner, steps: int, epochs: int = 1) -> None:
    tuner.on_fit_start(None)
    for epoch in range(1, epochs + 1):
        tuner.on_epoch_start(None, epoch)
        for b in range(steps):
            tuner.on_train_batch_end(None, b)
        tuner.on_epoch_end(None, {})


@pytest.mark.parametrize("step_ms, chosen", [({1: 1.9, 4: 14.2}, 1), ({1: 3.0, 4: 1.1}, 4)])
def test_auto_keeps_the_count_whose_steps_were_faster(step_ms, chosen):
    said = []
    tuner = th.ThreadTuner([1, 4], FakeClock(step_ms), notify=said.append)
    run_steps(tuner, steps=200)  # each count is timed for 0.1 s at least: 53 steps at 1.9 ms
    assert tuner.decided and torch.get_num_threads() == chosen
    other = 4 if chosen == 1 else 1
    assert said == [f"threads: {chosen} ({step_ms[chosen]:.3g} ms/step vs {step_ms[other]:.3g} ms/step at {other})"]


def test_auto_times_again_when_the_steps_get_twice_as_slow():
    clock = FakeClock({1: 1.0, 4: 2.0})
    tuner = th.ThreadTuner([1, 4], clock, notify=lambda text: None)
    run_steps(tuner, steps=200)
    assert torch.get_num_threads() == 1
    clock.step_ms = {1: 5.0, 4: 3.0}  # another job took the core: one thread now runs 5x slower
    tuner.on_epoch_start(None, 2)
    for b in range(60):
        tuner.on_train_batch_end(None, b)
    # a window of 32 steps (0.16 s) at 5x the chosen 1 ms, inside the epoch: time both again
    assert tuner.rechecks == 1 and not tuner.decided
    run_steps(tuner, steps=200)
    assert tuner.decided and torch.get_num_threads() == 4


def test_a_count_is_applied_and_recorded_in_run_json(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    run = train(tmp_path / "c.yaml", ["train.threads=1"], run_dir=tmp_path / "r", progress=False).run_dir
    assert torch.get_num_threads() == 1
    assert json.loads((run / "run.json").read_text())["threads"] == {"count": 1, "why": "train.threads"}


def test_the_users_omp_num_threads_is_kept(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    chosen = th.choose_threads("auto", torch.device("cpu"))
    assert (chosen.count, chosen.why, chosen.tuner) == (1, "OMP_NUM_THREADS=1", None)


def test_the_users_set_num_threads_is_kept():
    torch.set_num_threads(3)  # not the core count, and not dlcli's doing
    chosen = th.choose_threads("auto", torch.device("cpu"))
    assert (chosen.count, chosen.why, chosen.tuner) == (3, "torch.set_num_threads(3)", None)
    assert torch.get_num_threads() == 3


def test_processes_share_the_cores(monkeypatch):
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert th.cores() == 8 and th.cores(processes=2) == 4 and th.cores(processes=16) == 1


@pytest.mark.parametrize("value, expected", [("0", "positive integer"), ("-1", "positive integer"),
                                             ("lots", "auto or")])
def test_bad_thread_counts_are_config_errors_at_the_key(tmp_path, value, expected):
    (tmp_path / "c.yaml").write_text(CONFIG)
    with pytest.raises(ConfigError, match=rf"train\.threads: .*{expected}"):
        load_config(tmp_path / "c.yaml", [f"train.threads={value}"])


class BurstyClock(FakeClock):
    """Every tenth step at `threads` waits a 4 ms time slice: what a descheduled thread costs a loaded machine."""

    def __init__(self, step_ms, threads):
        super().__init__(step_ms)
        self.threads, self.calls = threads, 0

    def __call__(self) -> float:
        self.calls += 1
        if torch.get_num_threads() == self.threads and self.calls % 10 == 0:
            self.now += 4e-3
        return super().__call__()


def test_auto_judges_by_the_mean_step_not_the_median():
    """Most steps at 4 threads are faster (0.35 ms against 0.45), but one in ten waits 4 ms: 0.75 ms a step
    on average, and the median would have picked 4."""
    tuner = th.ThreadTuner([1, 4], BurstyClock({1: 0.45, 4: 0.35}, threads=4), notify=lambda text: None)
    run_steps(tuner, steps=1000)
    assert tuner.decided and torch.get_num_threads() == 1
    assert tuner.why.startswith("0.45 ms/step vs 0.7")


def test_auto_times_inference_on_a_slice_of_a_large_first_batch(monkeypatch):
    # one 4096-row batch: timing it 8 times over (two thread counts, warm-up and 3 runs each) cost 10x
    # the prediction itself; the timing now runs on at most max(32, rows / 64) rows of it
    from dlcli.engine.inference import evaluate_split
    from dlcli.nn.network import build_model

    seen: list[int] = []
    model = build_model({"input_shape": [3], "layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]})
    model.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    monkeypatch.setattr(th, "cores", lambda processes=1: 2)  # a tuner, whatever this machine has
    x = torch.randn(4096, 3).numpy()
    y = (x[:, 0] > 0).astype("int64")
    _, out = evaluate_split(model, None, (x, y), "binary", 4096, torch.device("cpu"), workers=0)
    assert len(out.y_true) == 4096
    timed, work = seen[:-1], seen[-1:]
    assert len(timed) == 8 and set(timed) == {64} and work == [4096]
