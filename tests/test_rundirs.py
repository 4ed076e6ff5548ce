"""A broken run directory gets one line that names the file, never a traceback: every file of a run, damaged
every way, through every command that reads runs. A refused resume leaves the run as it was."""

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlcli import train
from dlcli.cli.app import app

CFG = """\
name: d
seed: 2
data: {dataset: breast_cancer, split: {val: 0.2, test: 0.2}, scale: standard}
model:
  layers:
    - {type: dense, units: UNITS, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
train: {epochs: 2}
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, units in (("base", 6), ("other", 9)):  # other: a network of another shape
        (folder / f"{name}.yaml").write_text(CFG.replace("UNITS", str(units)))
        runs[name] = train(folder / f"{name}.yaml", run_dir=folder / name, progress=False).run_dir
    rows = folder / "rows.csv"
    from sklearn.datasets import load_breast_cancer

    load_breast_cancer(as_frame=True).frame.head(5).to_csv(rows, index=False)
    return runs, rows


@dataclass
class Damage:
    file: str  # relative to the run
    how: str


def damage(run: Path, other: Path, d: Damage) -> None:
    path = run / d.file
    if d.how == "missing":
        path.unlink()
    elif d.how == "empty":
        path.write_bytes(b"")
    elif d.how == "garbage":
        path.write_bytes(b"\x00\x01 this is not that kind of file \x7f" * 3)
    elif d.how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif d.how == "non-utf8":
        path.write_bytes(b"\xff\xfe\xfa{")
    elif d.how == "wrong-shape":
        path.write_text("- a\n- b\n" if path.suffix == ".yaml" else "[1, 2]")
    elif d.how == "folder":
        path.unlink()
        path.mkdir()
    elif d.how == "other-network":
        shutil.copy(other / d.file, path)
    elif d.how == "missing-keys":
        saved = torch.load(path, weights_only=True)
        del saved["rng"]
        torch.save(saved, path)
    elif d.how == "bad-values":  # labels.json whose values are of the wrong kind
        path.write_text('{"task": "binary", "classes": 3, "input_shape": [30]}')
    else:
        raise ValueError(d.how)


CHECKPOINT = ["truncated", "empty", "garbage", "folder", "other-network", "missing-keys"]
JSON = ["missing", "empty", "garbage", "non-utf8", "wrong-shape"]
CASES = ([Damage(f"checkpoints/{n}", how) for n in ("best.pt", "last.pt") for how in CHECKPOINT]
         + [Damage(f, how) for f in ("run.json", "labels.json", "scaler.json") for how in JSON]
         + [Damage("labels.json", "bad-values")]
         + [Damage("config.yaml", how) for how in JSON])
QUICK = {"checkpoints/best.pt-garbage", "scaler.json-missing", "config.yaml-non-utf8"}


def commands(run: Path, good: Path, rows: Path) -> dict[str, list[str]]:
    return {"evaluate": ["evaluate", str(run), "--no-plots"], "predict": ["predict", str(run), str(rows)],
            "resume": ["train", "--resume", str(run), "train.epochs=3", "--no-progress"],
            "summarize": ["summarize", str(run)], "runs": ["runs", str(run.parent)],
            "compare": ["compare", str(run), str(good), "-o", str(run.parent / "c.png")]}


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.file}-{c.how}",
                                               marks=() if f"{c.file}-{c.how}" in QUICK else pytest.mark.slow)
                                  for c in CASES])
def test_a_damaged_run_gets_one_line_naming_the_file(made, tmp_path, case):
    runs, rows = made
    run = tmp_path / "run"
    shutil.copytree(runs["base"], run)
    damage(run, runs["other"], case)
    name = Path(case.file).name
    failed = []
    for command, args in commands(run, runs["base"], rows).items():
        before = fingerprint(run)
        result = CliRunner().invoke(app, args)
        text = result.output
        assert result.exit_code in (0, 2), f"{command}: exit {result.exit_code}\n{text}\n{result.exception!r}"
        assert "Traceback" not in text, f"{command}:\n{text}"
        if result.exit_code == 2:
            failed.append(command)
            errors = [line for line in text.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and name in errors[0], f"{command}:\n{text}"
            if command == "resume":
                assert fingerprint(run) == before, "a refused resume must leave the run as it was"
        if command in ("runs", "compare"):  # they skip a broken run, with a warning, rather than fail
            assert result.exit_code == 0, f"{command}:\n{text}"
    # The damage matters to someone: every case is refused by the commands that read that file.
    readers = {"run.json": {"resume"}, "labels.json": {"evaluate", "predict", "resume"},
               "scaler.json": {"evaluate", "predict", "resume"}, "config.yaml": {"evaluate", "predict", "resume"},
               "best.pt": {"evaluate", "predict"}, "last.pt": {"resume"}}[name]
    assert readers <= set(failed), failed


def test_metrics_csv_formats_only_new_rows_and_matches_a_whole_write(tmp_path):
    """metrics.csv written as rows come (a new column, the same rows again, fewer after a resume) is what csv's
    DictWriter makes of all the rows at once, each float as repr."""
    import csv
    import io

    from dlcli.runs import MetricsFile, read_metrics

    def whole(rows) -> str:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: repr(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
        return out.getvalue()

    rows = [{"epoch": 1, "lr": 0.1, "train_loss": 0.6931471805599453},
            {"epoch": 2, "lr": 0.05, "train_loss": 0.5},
            {"epoch": 3, "lr": 0.05, "train_loss": float("nan"), "val_loss": 0.25},
            {"epoch": 4, "lr": 1e-300, "train_loss": 0.125, "val_loss": 0.2}]
    file = MetricsFile(tmp_path / "metrics.csv")
    for n in (1, 2, 2, 3, 4, 2, 3):
        file.write(rows[:n])
        assert (tmp_path / "metrics.csv").read_text() == whole(rows[:n]), n
    replaced = [*rows[:1], {"epoch": 2, "lr": 0.01, "train_loss": 0.75}]  # another row object at the same place
    file.write(replaced)
    assert (tmp_path / "metrics.csv").read_text() == whole(replaced)
    assert read_metrics(tmp_path / "metrics.csv")[1] == {"epoch": 2, "lr": 0.01, "train_loss": 0.75}
