"""Output that cannot be written is an error, and nothing is half-written: `predict -o` and `evaluate` onto a
folder, a missing folder, a full disk or a read-only run; files keep the user's umask; a run's plots/ and
checkpoints/ linked out of it are not followed; `predict` never imports a custom loss, `evaluate` says it does.

Full disks and read-only folders are made by making the writes fail (tests may run as root, whom chmod
does not stop): os.fsync raises ENOSPC once the data is in the temporary file, so a leftover would show.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dlcli import evaluate, predict, train
from dlcli.cli.app import app
from dlcli.errors import RunError
from dlcli.runs import write_atomic

LOSS_FILE = '''\
from pathlib import Path

import torch

Path(__file__).with_name("IMPORTED").touch()  # shows each import of this file


def bce(prediction, target):
    return torch.nn.functional.binary_cross_entropy(prediction, target)
'''


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A run trained under umask 022 whose loss is custom, and a few rows of its data to predict on."""
    folder = tmp_path_factory.mktemp("outputs")
    (folder / "lossfile.py").write_text(LOSS_FILE)
    config = {"name": "o", "seed": 1, "data": {"dataset": "breast_cancer", "split": {"test": 0.2}, "scale": "standard"},
              "model": {"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                                   {"type": "dense", "units": 1, "activation": "sigmoid"}]},
              "loss": {"name": "custom", "function": "lossfile.py:bce"}, "train": {"epochs": 1}}
    (folder / "c.yaml").write_text(yaml.safe_dump(config))
    old = os.umask(0o022)
    try:
        run = train(folder / "c.yaml", run_dir=folder / "run", progress=False).run_dir
    finally:
        os.umask(old)
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.head(6).to_csv(folder / "rows.csv", index=False)
    frame.head(0).to_csv(folder / "header.csv", index=False)
    return Path(run), folder


def cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def full_disk(monkeypatch, above: int = 0) -> None:
    """Writes of files over `above` bytes fail as on a full disk, once their data is in the temporary file."""
    real = os.fsync

    def fsync(fd):
        if os.fstat(fd).st_size > above:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*.tmp")]


# ----------------------------------------------------------------------------------------------
# write_atomic


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_file_gets_the_users_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        write_atomic(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    (tmp_path / "f.txt").write_text("old")
    full_disk(monkeypatch)
    with pytest.raises(RunError, match=r"f\.txt: cannot be written \(no space left on device\)"):
        write_atomic(tmp_path / "f.txt", "new" * 1000)
    assert (tmp_path / "f.txt").read_text() == "old" and leftovers(tmp_path) == []
    with pytest.raises(RunError, match=r"its folder .*nope does not exist"):
        write_atomic(tmp_path / "nope" / "f.txt", "x")
    assert not (tmp_path / "nope").exists()  # no folder made for a mistyped path
    with pytest.raises(RunError, match="it is a folder"):
        write_atomic(tmp_path, "x")
    with pytest.raises(RunError, match=r"f\.txt is a file, not a folder"):
        write_atomic(tmp_path / "f.txt" / "g.txt", "x")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_a_pipe_is_written_to_not_replaced(tmp_path):
    """A device or pipe (/dev/null, /dev/full, /dev/stdout) gets the data; renaming over it would replace it."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()), daemon=True)
    reader.start()
    write_atomic(pipe, b"rows\n")
    reader.join(timeout=10)
    assert received == [b"rows\n"] and stat.S_ISFIFO(pipe.lstat().st_mode)


# ----------------------------------------------------------------------------------------------
# A run's files


def test_run_files_get_the_users_umask(made):
    run, _ = made
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"config.yaml", "run.json", "metrics.csv", "best.pt", "last.pt"} <= {p.name for p in files}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o644" for p in files}


def test_predict_never_imports_the_custom_loss_and_evaluate_says_it_does(made, tmp_path):
    run, folder = made
    marker = folder / "IMPORTED"
    marker.unlink(missing_ok=True)
    code, text = cli("predict", run, folder / "rows.csv", "-o", tmp_path / "p.csv")
    assert code == 0 and not marker.exists(), text
    assert len(pd.read_csv(tmp_path / "p.csv")) == 6
    code, text = cli("evaluate", run, "--no-plots")
    lines = text.splitlines()
    assert code == 0 and marker.exists(), text
    assert lines[0] == f"note: imports the custom loss {folder / 'lossfile.py'} (code from the run's config)"


def test_predict_output_that_cannot_be_written_is_an_error_and_no_file(made, tmp_path, monkeypatch):
    run, folder = made
    rows = folder / "rows.csv"
    cases = {"a folder": (tmp_path, "it is a folder; give a file name"),
             "a missing folder": (tmp_path / "no" / "p.csv", f"its folder {tmp_path / 'no'} does not exist")}
    for what, (output, message) in cases.items():
        code, text = cli("predict", run, rows, "-o", output)
        assert code == 2 and errors(text) == [f"error: {output}: cannot be written ({message})"], what
        assert "written to" not in text
    assert not (tmp_path / "no").exists()
    full_disk(monkeypatch)
    code, text = cli("predict", run, rows, "-o", tmp_path / "p.csv")
    assert code == 2 and errors(text) == [f"error: {tmp_path / 'p.csv'}: cannot be written (no space left on device)"]
    assert "written to" not in text and list(tmp_path.iterdir()) == []  # no partial file, no temporary one


def test_predict_on_a_header_only_file_says_no_rows(made):
    run, folder = made
    code, text = cli("predict", run, folder / "header.csv")
    assert code == 2 and errors(text) == [f"error: {folder / 'header.csv'} has no data rows (only a header): "
                                          "nothing to predict"], text


def copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to, symlinks=True)
    return to


def test_a_read_only_run_prints_its_metrics_then_says_they_were_not_saved(made, tmp_path, monkeypatch):
    import dlcli.commands.plots  # noqa: F401  (matplotlib sets itself up before the writes are denied)

    run = copy_run(made[0], tmp_path / "run")
    (run / "evaluation.json").unlink(missing_ok=True)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    expected = evaluate(made[0], write=False)["metrics"]
    monkeypatch.setattr("tempfile.mkstemp", denied)
    monkeypatch.setattr(Path, "mkdir", denied)
    result = evaluate(run)  # the Python API returns the metrics, and what was not saved
    assert result["metrics"] == expected
    assert result["not_saved"] == {"plots": f"{run / 'plots'}: cannot be written (permission denied); no plots saved",
                                   "evaluation.json": f"{run / 'evaluation.json'}: cannot be written (permission denied)"}
    code, text = cli("evaluate", run)
    assert code == 2 and errors(text) == [f"error: {m}" for m in result["not_saved"].values()], text
    assert text.index("accuracy") < text.index("error:") and "written to" not in text
    assert f"{expected['accuracy']:.4f}" in text
    assert not (run / "evaluation.json").exists() and not (run / "plots").exists()


def test_plots_on_a_full_disk_still_leave_evaluation_json(made, tmp_path, monkeypatch):
    run = copy_run(made[0], tmp_path / "run")
    full_disk(monkeypatch, above=8000)  # the PNGs (20 kB and more) fail, evaluation.json (1 kB) fits
    code, text = cli("evaluate", run, "--json")
    assert code == 2 and len(errors(text)) == 1, text
    assert "cannot be written (no space left on device); 6 of 6 plots not saved" in errors(text)[0]
    saved = json.loads((run / "evaluation.json").read_text())
    assert saved["plots"] == [] and saved["metrics"] == evaluate(made[0], write=False)["metrics"]
    assert list((run / "plots").iterdir()) == []


def test_plots_and_checkpoints_linked_out_of_the_run_are_not_followed(made, tmp_path):
    run, folder = made
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plotted = copy_run(run, tmp_path / "plotted")
    (plotted / "plots").symlink_to(elsewhere)
    code, text = cli("evaluate", plotted)
    assert code == 2 and errors(text) == [f"error: {plotted / 'plots'}: is a link to {elsewhere}, out of the run "
                                          "directory; refusing to follow it (put the folder or file itself in the "
                                          "run); no plots saved"], text
    assert list(elsewhere.iterdir()) == [] and (plotted / "evaluation.json").exists()

    linked = copy_run(run, tmp_path / "linked")
    (linked / "checkpoints").rename(elsewhere / "checkpoints")
    (linked / "checkpoints").symlink_to(elsewhere / "checkpoints")
    for args in (["predict", linked, folder / "rows.csv"], ["evaluate", linked, "--no-plots"],
                 ["train", "--resume", linked, "train.epochs=2", "--no-progress"]):
        code, text = cli(*args)
        assert code == 2 and len(errors(text)) == 1 and f"{linked / 'checkpoints'}: is a link" in text, text
    assert json.loads((linked / "run.json").read_text())["status"] == "completed"  # the resume changed nothing
    inside = copy_run(run, tmp_path / "inside")  # a link within the run is followed
    (inside / "checkpoints").rename(inside / "kept")
    (inside / "checkpoints").symlink_to("kept")
    assert len(predict(inside, folder / "rows.csv").table) == 6


def test_a_root_output_keeps_text_ids_and_dates_exactly(tmp_path):
    """A TTree holds numbers and std::string branches (uproot writes both); int64 IDs stay int64, text stays
    text, and dates, which a TTree has no type for, become ISO 8601 text that parses back to the same instant."""
    uproot = pytest.importorskip("uproot")
    import numpy as np

    from dlcli.commands.outputs import write_table

    table = pd.DataFrame({
        "event_id": np.array([123456789012345, 2**62 + 1]), "tag": ['run 1, "A"', "é"],
        "when": pd.to_datetime(["2024-01-01 00:00:00.123456789", "2024-03-02 03:04:00"], format="ISO8601"),
        "predicted": np.array(["background", 1], dtype=object), "prob": [0.25, 0.5], "flag": [True, False]})
    notes = []
    write_table(table, tmp_path / "out.root", notes)
    tree = uproot.open(tmp_path / "out.root")["predictions"]
    assert tree["event_id"].typename == "std::int64_t"
    assert tree["event_id"].array(library="np").tolist() == [123456789012345, 2**62 + 1]
    assert tree["tag"].typename == "std::string" and tree["tag"].array(library="np").tolist() == ['run 1, "A"', "é"]
    assert tree["predicted"].array(library="np").tolist() == ["background", "1"]
    when = pd.to_datetime(tree["when"].array(library="np"))
    assert when.equals(pd.DatetimeIndex(table["when"]))  # to the nanosecond
    assert notes == ["ROOT output: date column(s) when written as ISO 8601 text (a TTree has no date type)"]
