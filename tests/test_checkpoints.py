"""Checkpoints are data, never code: they load with torch's weights_only reader, and a file that would run
code when unpickled is refused by evaluate, predict and resume, without running it."""

import pickle
import random
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dlcli import evaluate, predict, train
from dlcli.cli.app import app
from dlcli.errors import RunError
from dlcli.runs.checkpoint import REFUSED

CFG = """\
name: c
seed: 1
data: {dataset: breast_cancer, split: {val: 0.2, test: 0.2}, scale: standard}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
train: {epochs: 2}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("c")
    (folder / "c.yaml").write_text(CFG)
    return train(folder / "c.yaml", run_dir=folder / "run", progress=False).run_dir


class Payload:
    """Unpickling this creates the marker file: what a shared checkpoint could do with any code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_checkpoint_holds_data_only(run):
    from dlcli.runs import read_metrics
    from dlcli.runs.checkpoint import load_checkpoint

    for name in ("best.pt", "last.pt"):
        saved = torch.load(run / "checkpoints" / name, weights_only=True)  # torch's own data-only reader
        assert saved["state"]["epoch"] in (1, 2) and isinstance(saved["rng"]["numpy"]["keys"], torch.Tensor)
        assert isinstance(saved["state"]["history"]["values"], torch.Tensor)  # the rows as tensors, not pickled
    history = load_checkpoint(run / "checkpoints" / "last.pt", torch.device("cpu"))["state"]["history"]
    assert history == read_metrics(run / "metrics.csv")  # as metrics.csv has them (written with repr)
    assert [type(r["epoch"]) for r in history] == [int, int] and isinstance(history[0]["train_loss"], float)


def test_a_history_packs_exactly_and_only_its_new_rows():
    from dlcli.runs.checkpoint import HistoryPack, unpack_history

    rows = [{"epoch": 1, "lr": 0.1, "train_loss": 0.6931471805599453, "val_loss": float("nan")},
            {"epoch": 2, "lr": 1e-300, "train_loss": float("inf"), "val_loss": None},
            {"epoch": 3, "lr": 0.1, "train_loss": -0.0, "val_loss": 0.5, "extra": 2**52}]
    pack = HistoryPack()
    for n in (1, 2, 3, 3, 2):  # grows, a row with a new column, the same again, then fewer (a resume)
        packed = pack.pack(rows[:n])
        fresh = HistoryPack().pack(rows[:n])
        assert packed["columns"] == fresh["columns"] and torch.equal(packed["kinds"], fresh["kinds"])
        assert torch.equal(packed["values"].nan_to_num(7.0), fresh["values"].nan_to_num(7.0))
        back = unpack_history(packed)
        assert [set(r) for r in back] == [set(r) for r in rows[:n]]
        for got, want in zip(back, rows[:n]):
            for k, v in want.items():
                assert type(got[k]) is type(v) and (got[k] == v or (v != v and got[k] != got[k])), (k, v, got[k])
        assert str(back[-1].get("train_loss")) == str(rows[n - 1]["train_loss"])  # -0.0 stays -0.0
    assert pack.pack([{"epoch": 1, "note": "text"}]) == [{"epoch": 1, "note": "text"}]  # not numbers: as they are
    assert isinstance(pack.pack([{"epoch": 1, "big": 2**60}]), list) and isinstance(pack.pack(rows), dict)
    assert isinstance(pack.pack([{"epoch": True}]), list)  # a bool is not packed as an int


def test_a_damaged_history_is_one_clear_error(run, tmp_path):
    from dlcli.runs.checkpoint import load_checkpoint

    last = tmp_path / "last.pt"
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    saved["state"]["history"]["kinds"] = saved["state"]["history"]["kinds"][:1]
    torch.save(saved, last)
    with pytest.raises(RunError, match="its history is damaged"):
        load_checkpoint(last, torch.device("cpu"))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs(run, tmp_path, zipped):
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copytree(run, shared / "run")
    marker = tmp_path / "marker"
    good = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    for name in ("best.pt", "last.pt"):
        torch.save({**good, "model": Payload(marker)}, shared / "run" / "checkpoints" / name,
                   _use_new_zipfile_serialization=zipped)
    rows = shared / "rows.csv"
    rows.write_text("a\n1\n")
    for attempt in (lambda: evaluate(shared / "run"), lambda: predict(shared / "run", rows),
                    lambda: train(None, ["train.epochs=3"], resume=shared / "run", progress=False)):
        with pytest.raises(RunError, match=REFUSED):
            attempt()
    result = CliRunner().invoke(app, ["evaluate", str(shared / "run")])
    assert result.exit_code == 2 and REFUSED in result.output
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # and a plain weights_only load says the same
        torch.load(shared / "run" / "checkpoints" / "last.pt", weights_only=True)


def test_a_checkpoint_from_before_resumes(run, tmp_path):
    # Checkpoints written before 2026-12-02 held numpy's RNG state as its own tuple of an array, and before
    # 2026-12-03 Python's as random.getstate()'s tuple of 625 ints.
    shutil.copytree(run, tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    saved = torch.load(last, weights_only=True)
    saved["rng"]["numpy"] = np.random.get_state()
    saved["rng"]["python"] = random.getstate()
    from dlcli.runs import read_metrics
    from dlcli.runs.checkpoint import unpack_history

    saved["state"]["history"] = unpack_history(saved["state"]["history"])  # before 12-03 (later): a list of dicts
    torch.save(saved, last)
    before = read_metrics(tmp_path / "run" / "metrics.csv")
    assert train(None, ["train.epochs=3"], resume=tmp_path / "run", progress=False).epochs == 3
    after = read_metrics(tmp_path / "run" / "metrics.csv")
    assert after[:2] == before and after[2]["epoch"] == 3


def test_the_python_rng_comes_back_exactly():
    from dlcli.runs.checkpoint import restore_rng, rng_state

    random.seed(11)
    random.random()
    generator = torch.Generator()
    state = rng_state(generator)
    assert isinstance(state["python"]["state"], torch.Tensor)  # one tensor, not 625 pickled ints
    want = [random.random() for _ in range(5)]
    restore_rng(state, generator)
    assert [random.random() for _ in range(5)] == want


def test_a_garbage_checkpoint_is_one_clear_error_naming_it(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match=f"best.pt: {REFUSED}"):
        evaluate(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(RunError, match="best.pt: is truncated or damaged, .*; `--checkpoint last` may work"):
        evaluate(tmp_path / "run")
