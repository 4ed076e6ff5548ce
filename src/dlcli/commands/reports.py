"""What `dlcli runs` and `dlcli compare` show: run directories read back as plain data, no rendering.

A run is any folder holding run.json (`runs/<name>/<stamp>/`). Its metrics.csv gives the learning
curves; run.json the status and best epoch; evaluation.json, when `dlcli evaluate` wrote one, the
metrics on the evaluated split. Nothing here imports torch or matplotlib, so listing runs is instant.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from .. import runs
from ..config.flat import changed_keys, flatten
from ..errors import RunError
from ..runs.lock import is_locked

CURVE_PREFIXES = ("train_", "val_")


@dataclass
class RunRecord:
    """One run directory read back: run.json, evaluation.json (or None) and, on demand, metrics.csv."""

    path: Path
    info: dict
    evaluation: dict | None
    label: str = ""  # the name legends and table headers use: unique among the runs shown together
    problem: str | None = None  # "unreadable" when run.json could not be read (the status listings show)
    reason: str | None = None  # and why

    @cached_property
    def rows(self) -> list[dict]:
        """metrics.csv, a dict per epoch; empty before the first epoch ends."""
        path = self.path / runs.METRICS
        if not path.exists():
            return []
        try:
            return runs.read_metrics(path)
        except (OSError, ValueError):
            return []

    @property
    def name(self) -> str:
        return self.info.get("name") or self.path.parent.name

    @property
    def started(self) -> datetime:
        """run.json's start time; the file's modification time when it has none (sorting needs one)."""
        try:
            stamp = datetime.fromisoformat(self.info["started"])
        except (KeyError, TypeError, ValueError):
            stamp = datetime.fromtimestamp((self.path / runs.RUN_INFO).stat().st_mtime)
        return stamp if stamp.tzinfo else stamp.astimezone()

    @property
    def status(self) -> str:
        """run.json's status; `killed` for a run still `running` whose process is gone (its lock is free)."""
        status = self.info.get("status", "unknown")
        return "killed" if status == "running" and not is_locked(self.path) else status

    @cached_property
    def flat_config(self) -> dict:
        """config.yaml as flat key.path -> value pairs; {} when it cannot be read."""
        import yaml

        try:
            loaded = yaml.safe_load((self.path / runs.CONFIG).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return {}
        return flatten(loaded) if isinstance(loaded, dict) else {}

    def best_row(self) -> dict | None:
        epoch = self.info.get("best_epoch")
        return next((r for r in self.rows if r.get("epoch") == epoch), None) if epoch is not None else None

    def summary(self) -> dict:
        """The run as `dlcli runs --json` prints it."""
        ev = self.evaluation
        return {
            "path": str(self.path),
            "name": self.name,
            "started": self.info.get("started"),
            "status": self.problem or self.status,
            "epochs": self.info.get("epochs_completed"),
            "monitor": self.info.get("monitor"),
            "best_value": _clean(self.info.get("best_value")),
            "best_epoch": self.info.get("best_epoch"),
            "evaluation": None if ev is None else {
                "split": ev.get("split"), "checkpoint": ev.get("checkpoint"), "epoch": ev.get("epoch"),
                "metrics": {k: _clean(v) for k, v in ev.get("metrics", {}).items()},
            },
        }


def read_run(path: Path) -> RunRecord:
    """A run directory as a record; an unreadable run.json or evaluation.json does not stop a listing."""
    path = Path(path)
    problem = reason = None
    try:
        info = runs.read_json(path / runs.RUN_INFO)
    except RunError as exc:
        info, problem, reason = {}, "unreadable", str(exc)
    evaluation = None
    if (path / runs.EVALUATION).exists():
        try:
            evaluation = runs.read_json(path / runs.EVALUATION)
        except RunError:
            evaluation = None
    return RunRecord(path, info, evaluation if isinstance(evaluation, dict) else None, problem=problem,
                     reason=reason)


# ----------------------------------------------------------------------------------------------
# dlcli runs


def find_runs(root: str | Path = "runs", max_depth: int | None = None) -> list[RunRecord]:
    """Every run under `root` (a folder holding run.json, at any depth, or at most `max_depth` folders
    down), newest first."""
    root = Path(root)
    if not root.exists():
        raise RunError(f"{root}: no such folder; give the folder runs are written to (default: runs)")
    if not root.is_dir():
        raise RunError(f"{root}: not a folder; give the folder runs are written to (default: runs)")
    infos = root.rglob(runs.RUN_INFO) if max_depth is None else (
        p for depth in range(1, max_depth + 1) for p in root.glob("/".join(["*"] * depth + [runs.RUN_INFO])))
    records = [read_run(p.parent) for p in infos if p.is_file()]
    # Newest first; runs started in the same second fall back to the folder name (stamp, stamp-2, ...).
    records.sort(key=lambda r: (r.started, r.path.name), reverse=True)
    _label(records)
    return records


def newest_run(folder: str | Path) -> tuple[Path, str | None]:
    """`folder` itself when it is a run directory (or no folder of runs); in a folder of runs, runs/NAME
    (or runs: two levels down at most, so a mistyped home folder is not searched whole), its newest
    completed run, else its newest run: (the run directory, a note that says which, or None)."""
    folder = Path(folder)
    if not folder.is_dir() or any((folder / name).exists() for name in (runs.CONFIG, runs.RUN_INFO)):
        return folder, None
    found = [r for r in find_runs(folder, max_depth=2) if not r.problem]
    if not found:
        return folder, None  # the run-directory check says what the folder is not
    if len(found) == 1:
        return found[0].path, f"{folder} holds one run, {found[0].path}"
    done = [r for r in found if r.status == "completed"]
    chosen = (done or found)[0]
    which = "the newest completed one" if done else f"the newest ({chosen.status}: none completed)"
    return chosen.path, f"{folder} holds {len(found)} runs: using {which}, {chosen.path}"


def runs_table(root: str | Path = "runs") -> list[dict]:
    """`dlcli runs --json`: the runs under root, newest first, as dicts. Each has "changed": the config keys
    whose values differ between runs of the same name (optimizer.lr, ...), with this run's value."""
    records = find_runs(root)
    keys = changed_config_keys(records)
    return [{**r.summary(), "changed": {k: r.flat_config.get(k) for k in keys}} for r in records]


def changed_config_keys(records: list[RunRecord]) -> list[str]:
    """The flat config keys that tell runs of one name apart (a config trained with other overrides)."""
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        if not r.problem:
            groups.setdefault(r.name, []).append(r)
    keys: list[str] = []
    for group in groups.values():
        if len(group) > 1:
            keys += [k for k in changed_keys([r.flat_config for r in group]) if k not in keys]
    return keys


# ----------------------------------------------------------------------------------------------
# dlcli compare


def load_runs(run_dirs: list[str | Path], skipped: list[str] | None = None) -> list[RunRecord]:
    """The run directories given to `compare`, each checked, with unique labels for legends.

    A folder of runs (runs/<name>, as evaluate and predict take one) stands for every run in it, oldest
    first. A run whose run.json is damaged is left out, and why goes to `skipped` (RunError when none is
    left); a folder that is not a run at all is an error.
    """
    if not run_dirs:
        raise RunError("give one or more run directories to compare")
    records, problems = [], []
    for d in list(dict.fromkeys(run for given in run_dirs for run in _runs_in(Path(given)))):
        try:
            path = runs.check_run_dir(d)
        except RunError as exc:  # a run missing one of its files is damaged; a folder with neither is no run
            if not _has_run_files(Path(d)):
                raise
            problems.append(str(exc))
            continue
        record = read_run(path)
        if record.problem:
            problems.append(record.reason)
            continue
        records.append(record)
    if not records:
        raise RunError(f"no run to compare: {'; '.join(problems)}")
    if skipped is not None:
        skipped += [f"left out {p}" for p in problems]
    _label(records)
    return records


def _has_run_files(path: Path) -> bool:
    return any((path / name).exists() for name in (runs.CONFIG, runs.RUN_INFO))


def _runs_in(folder: Path) -> list[Path]:
    """`folder` itself, or, when it is a folder of runs (it has no run files), the runs one level inside it,
    damaged ones too (load_runs says why it leaves them out), oldest first as run.json's start says."""
    def start(record: RunRecord) -> float:
        try:
            return record.started.timestamp()
        except OSError:  # no run.json: first
            return 0.0

    if not folder.is_dir() or _has_run_files(folder):
        return [folder]
    inside = [read_run(p) for p in folder.iterdir() if p.is_dir() and _has_run_files(p)]
    inside.sort(key=lambda r: (start(r), r.path.name))
    return [r.path for r in inside] or [folder]


def quantities(rows: list[dict]) -> list[str]:
    """The quantities with a train_ or val_ column, loss first: `loss`, `accuracy`, ..."""
    found: list[str] = []
    for row in rows:
        for column in row:
            for prefix in CURVE_PREFIXES:
                if column.startswith(prefix) and column[len(prefix):] not in found:
                    found.append(column[len(prefix):])
    return sorted(found, key=lambda q: q != "loss")  # stable: the rest keep metrics.csv's order


def curve(rows: list[dict], column: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one metrics.csv column; missing or non-numeric values become NaN (a gap)."""
    epochs, values = [], []
    for row in rows:
        if column not in row:
            continue
        epochs.append(row["epoch"])
        v = row[column]
        values.append(float(v) if isinstance(v, (int, float)) else math.nan)
    return epochs, values


def compare(records: list[RunRecord]) -> dict:
    """`dlcli compare --json`: per run, the final and best-epoch values and the evaluation metrics."""
    out = []
    for r in records:
        columns = [c for c in (r.rows[0] if r.rows else {}) if c.startswith(CURVE_PREFIXES)]
        final = r.rows[-1] if r.rows else {}
        best = r.best_row() or {}
        s = r.summary()
        out.append({
            "label": r.label,
            **{k: s[k] for k in ("path", "name", "status", "epochs", "monitor", "best_epoch", "best_value")},
            "final": {c: _clean(final.get(c)) for c in columns if c in final},
            "best": {c: _clean(best.get(c)) for c in columns if c in best},
            "evaluation": s["evaluation"],
        })
    return {"runs": out}


def compare_table(data: dict) -> tuple[list[str], list[tuple[str, list[tuple[str, list]]]]]:
    """`compare`'s side-by-side table: the run labels, then sections of rows (what, a value per run).

    Sections: the run (status, epochs, best epoch), the values at the final epoch, those at the best
    epoch, and the evaluation metrics when any run has an evaluation.json. A missing value is None.
    """
    items = data["runs"]
    sections = [("run", [
        ("status", [r["status"] for r in items]),
        ("epochs", [r["epochs"] for r in items]),
        ("best epoch", [r["best_epoch"] for r in items]),
        ("monitor", [r["monitor"] for r in items]),
    ])]
    for part, title in (("final", "at the final epoch"), ("best", "at the best epoch")):
        columns = _union(r[part] for r in items)
        if columns:
            sections.append((title, [(c, [r[part].get(c) for r in items]) for c in columns]))
    evaluated = [r["evaluation"] for r in items]
    if any(evaluated):
        rows = [("data", [None if e is None else Path(str(e["split"])).name for e in evaluated]),
                ("checkpoint", [None if e is None else f"{e['checkpoint']} (epoch {e['epoch']})" for e in evaluated])]
        for name in _union((e or {}).get("metrics", {}) for e in evaluated):
            rows.append((name, [None if e is None else e["metrics"].get(name) for e in evaluated]))
        sections.append(("evaluation", rows))
    return [r["label"] for r in items], sections


# ----------------------------------------------------------------------------------------------


def _label(records: list[RunRecord]) -> None:
    """Labels: the run's name; name/stamp where two runs share a name; #k where even that repeats."""
    names = Counter(r.name for r in records)
    labels = [r.name if names[r.name] == 1 else f"{r.name}/{r.path.name}" for r in records]
    seen: Counter = Counter()
    totals = Counter(labels)
    for r, label in zip(records, labels):
        seen[label] += 1
        r.label = label if totals[label] == 1 else f"{label} #{seen[label]}"


def _union(dicts) -> list[str]:
    keys: list[str] = []
    for d in dicts:
        keys += [k for k in d if k not in keys]
    return keys


def _clean(v):
    """NaN and infinities are not JSON: None instead."""
    return None if isinstance(v, float) and not math.isfinite(v) else v

