"""What a study shows: its trials (`dlcli tune status`, trials.csv), the winning config (`dlcli tune best`,
best.yaml) and its plots (optimisation history, parameter importances, a slice plot per parameter)."""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path

from .. import runs
from ..errors import RunError
from ..runs.lock import is_locked

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def open_study(study_dir: str | Path):
    """The Optuna study of a study folder (its tune.yaml names the storage)."""
    import yaml

    from .tune_checks import TUNE_YAML, open_storage

    folder = Path(study_dir)
    path = folder / TUNE_YAML
    if not path.is_file():
        raise RunError(f"{folder}: is not a study folder ({TUNE_YAML} is missing); a study is made by dlcli tune "
                       "CONFIG, in runs/tune/<study>/")
    try:
        record = yaml.safe_load(path.read_text())
        storage, name = record["storage"], record["study"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise RunError(f"{path}: cannot be read as a study's record ({type(exc).__name__})") from None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage, folder)), record
    except (KeyError, ValueError, OSError) as exc:
        raise RunError(f"{folder}: its storage {storage} holds no study '{name}' ({type(exc).__name__}: {exc})") from None


def trial_rows(study, study_dir: Path) -> list[dict]:
    from .tune_checks import WORKERS

    rows = []
    for t in study.get_trials(deepcopy=False):
        state = STATES.get(t.state.name, t.state.name.lower())
        worker = t.user_attrs.get("worker")
        if state == "running" and not (worker and is_locked(Path(study_dir) / WORKERS / worker)):
            state = "killed"
        run_dir = t.user_attrs.get("run_dir")
        rows.append({"number": t.number, "state": state, "value": t.value if t.state.name == "COMPLETE" else
                     (_last(t) if state == "pruned" else None), "params": dict(t.params),
                     "epochs": t.user_attrs.get("epochs", len(t.intermediate_values) or None),
                     "seconds": t.user_attrs.get("seconds") or _seconds(t),
                     "run_dir": _relative(run_dir, study_dir), "resumes": t.user_attrs.get("resumes"),
                     "message": t.user_attrs.get("message", "")})
    return rows


def _last(t):
    return t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None


def _seconds(t):
    if t.datetime_start and t.datetime_complete:
        return round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    return None


def _relative(path, study_dir) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path(study_dir).resolve()))
    except ValueError:
        return str(path)


def write_trials_csv(study_dir: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "state", "value", *keys, "epochs", "seconds", "run_dir", "resumes", "message"])
    for r in rows:
        writer.writerow([r["number"], r["state"], _cell(r["value"]), *(_cell(r["params"].get(k)) for k in keys),
                         _cell(r["epochs"]), _cell(r["seconds"]), r["run_dir"] or "", _cell(r["resumes"]),
                         r["message"]])
    runs.write_atomic(Path(study_dir) / "trials.csv", out.getvalue())


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def best_trial(study) -> dict | None:
    try:
        t = study.best_trial
    except ValueError:
        return None
    return {"number": t.number, "value": t.value, "params": dict(t.params), "run_dir": t.user_attrs.get("run_dir")}


def best_config(base: dict, params: dict) -> dict:
    """The base training config with the winning values, checked, as plain data (no tune: section)."""
    from ..config import load_config
    from ..config.space import overrides_of

    cfg = load_config(base, overrides_of(params))
    resolved = cfg.resolved()
    resolved.pop("tune", None)
    return resolved


def write_best(path: Path, base: dict, params: dict) -> Path:
    from ..config.space import override

    header = "# the best trial's config, written by dlcli tune: train it with dlcli train best.yaml\n# " + \
        "  ".join(override(k, v) for k, v in params.items()) + "\n"
    import yaml

    runs.write_atomic(Path(path), header + yaml.safe_dump(best_config(base, params), sort_keys=False))
    return Path(path)


def status(study_dir: str | Path) -> dict:
    """Every trial of a study folder (number, state, params, value, epochs, seconds) and its best."""
    study, record = open_study(study_dir)
    rows = trial_rows(study, Path(study_dir))
    return {"study": record["study"], "study_dir": str(study_dir), "objective": record["objective"],
            "n_trials": record["n_trials"], "trials": rows, "best": best_trial(study)}


def best(study_dir: str | Path, output: str | Path | None = None) -> tuple[Path, dict]:
    """Write the winning config of a study folder to `output` (default STUDY_DIR/best.yaml)."""
    study, record = open_study(study_dir)
    found = best_trial(study)
    if found is None:
        raise RunError(f"{study_dir}: no trial has completed yet, so there is no best config; run dlcli tune "
                       "CONFIG to continue the study")
    path = Path(output) if output is not None else Path(study_dir) / "best.yaml"
    if path.is_dir():
        raise RunError(f"{path}: is a folder; give a file name such as best.yaml")
    return write_best(path, record["base_config"], config_values(record["space"], found["params"])), found


def config_values(space: dict, params: dict) -> dict:
    """Optuna's values back to the config's (a list choice travels as its JSON text)."""
    from ..config.space import ParamSpec, decode

    return {k: decode(ParamSpec.model_validate(space[k]), v) if k in space else v
            for k, v in params.items()}


# ---- plots ---------------------------------------------------------------------------------------------

def write_plots(study_dir: Path, study, metric: str) -> list[Path]:
    """plots/history.png, importance.png and slice.png (each where the trials allow it)."""
    from .plots import to_png

    done = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    if not done:
        return []
    folder = runs.run_folder(Path(study_dir), runs.PLOTS)
    written = []
    for name, figure in (("history.png", _history(study, done, metric)), ("importance.png", _importance(study)),
                         ("slice.png", _slice(study, metric))):
        if figure is not None:
            runs.write_atomic(folder / name, to_png(figure))
            written.append(folder / name)
    return written


def _history(study, done, metric: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    maximize = study.direction.name == "MAXIMIZE"
    complete = [t for t in done if t.state.name == "COMPLETE" and t.value is not None]
    pruned = [(t.number, _last(t)) for t in done if t.state.name == "PRUNED" and _last(t) is not None]
    ax.scatter([t.number for t in complete], [t.value for t in complete], s=18, label="complete", zorder=3)
    if pruned:
        ax.scatter(*zip(*pruned), s=18, marker="x", color="grey", label="pruned (last epoch)", zorder=2)
    best, line = None, []
    for t in sorted(complete, key=lambda t: t.number):
        if best is None or (t.value > best if maximize else t.value < best):
            best = t.value
        line.append((t.number, best))
    if line:
        ax.step(*zip(*line), where="post", color="C3", label="best so far")
    ax.set(xlabel="trial", ylabel=metric, title=f"optimisation history ({'max' if maximize else 'min'})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _importance(study):
    import optuna
    from matplotlib.figure import Figure

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2 or not complete[0].params:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # named, not Optuna's default (fANOVA before 5.0, PED-ANOVA since), so the label says which
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (RuntimeError, ValueError, ZeroDivisionError):
        return None  # too few trials, or no parameter varied
    if not found:
        return None
    names = list(found)[::-1]
    fig = Figure(figsize=(6.0, max(2.0, 0.5 * len(names) + 1.2)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, [found[n] for n in names], color="C0")
    ax.set(xlabel="importance (PED-ANOVA, sums to 1)", title=f"parameter importances ({len(complete)} complete trials)")
    ax.set_xlim(0, 1)
    return fig


def _slice(study, metric: str):
    from matplotlib.figure import Figure

    from .plots import COLUMNS, grid_size

    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    if not keys:
        return None
    fig = Figure(figsize=grid_size(len(keys), (4.0, 3.0)), dpi=100, layout="constrained")
    rows, cols = math.ceil(len(keys) / COLUMNS), min(len(keys), COLUMNS)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        points = [(t.params[key], t.value, t.number) for t in trials if key in t.params]
        dist = trials[0].distributions.get(key) if trials else None
        xs = [p[0] for p in points]
        if any(isinstance(x, str) for x in xs):
            labels = sorted({str(x) for x in xs})
            xs = [labels.index(str(x)) for x in xs]
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
        art = ax.scatter(xs, [p[1] for p in points], c=[p[2] for p in points], cmap="viridis", s=16)
        if getattr(dist, "log", False):
            log_x(ax, xs)
        ax.set(xlabel=key, ylabel=metric if i % cols == 0 else None)
        ax.grid(alpha=0.3)
    fig.colorbar(art, ax=fig.axes, label="trial", shrink=0.8)
    return fig


def log_x(ax, xs) -> None:
    """A log x axis labelled 1, 2 and 5 of each decade when it spans under two (matplotlib's default labels
    the minor ticks of a short log axis as 3x10^1, 4x10^1, ..., which collide)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    ax.set_xscale("log")
    low, high = min(xs), max(xs)
    if low > 0 and high / low < 100:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
