"""What `dlcli tune` and `dlcli validate` check before any trial runs: the objective is a column the config
logs, and every config the space can make passes the schema (each entry's ends and middle, every choice,
and a few seeded random draws of the whole space). Light: no torch, so validate answers fast."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, load_config
from ..config.space import overrides_of
from ..errors import ConfigError
from ..messages import did_you_mean

TUNE_YAML = "tune.yaml"  # in the study folder: its config, with hashes of the base config and the space
WORKERS = "workers"  # in the study folder: a lock folder per live worker process


def open_storage(spec: str, study_dir: Path):
    """Optuna's storage: a database URL, or a journal file (relative to the study folder)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if "://" in spec:
        return optuna.storages.RDBStorage(spec) if not spec.startswith("redis") else spec
    return JournalStorage(JournalFileBackend(str(Path(study_dir) / spec)))

SPACE_SAMPLES = 8  # random draws checked, beyond each entry's ends and middle


def tune_config(config: str | Path | Config, overrides=()) -> Config:
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    if cfg.tune is None:
        raise cfg.error("tune", "is missing: dlcli tune needs a tune: section with a space, e.g. tune: {objective: "
                        "{metric: val_loss}, space: {optimizer.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}}}")
    return cfg


def logged_columns(cfg: Config) -> list[str]:
    """metrics.csv's columns for this config (as engine/loop.py writes them)."""
    names = [n for n in cfg.metric_names]
    cols = ["lr", "train_loss"] + ([f"train_{n}" for n in names] if cfg.train.train_metrics else [])
    data = cfg.data
    if data is not None and (data.val or data.split.val > 0):
        cols += ["val_loss", *(f"val_{n}" for n in names)]
    return cols + ["epoch_seconds"]


def objective_mode(cfg: Config) -> str:
    from ..nn.schedules import monitor_mode  # max for accuracy-like names, as early stopping's monitor

    return monitor_mode(cfg.tune.objective.metric, cfg.tune.objective.mode)


def check_objective(cfg: Config) -> None:
    metric, cols = cfg.tune.objective.metric, logged_columns(cfg)
    if metric not in cols:
        from ..nn.metrics import METRICS

        if METRICS.column(metric) in cols:  # val_ams: val_ams@b_reg=10, as metrics.csv names it
            cfg.tune.objective.metric = metric = METRICS.column(metric)
    if metric not in cols:
        why = " (there is no validation data: set data.split.val)" if metric.startswith("val_") and \
            "val_loss" not in cols else ""
        raise cfg.error("tune.objective.metric", f"'{metric}' is not a column this config logs{why}"
                        f"{did_you_mean(metric, cols)}; metrics.csv will have {', '.join(cols)}")


def base_config(cfg: Config) -> dict:
    """The training config a trial starts from: resolved (defaults in, paths absolute), without tune:."""
    base = cfg.resolved()
    base.pop("tune", None)
    base["name"] = cfg.name or (cfg.file.stem if cfg.file else "tune")
    return base


def space_samples(cfg: Config, n: int = SPACE_SAMPLES) -> list[dict]:
    """Values to check the space with: every entry at its low end, its high end, every choice, and n seeded
    random draws of the whole space."""
    import random

    specs = cfg.tune.space
    spans = {k: s.values() for k, s in specs.items()}
    longest = max(len(v) for v in spans.values())
    samples = [{k: v[min(i, len(v) - 1)] for k, v in spans.items()} for i in range(longest)]
    rng = random.Random(cfg.seed)
    for _ in range(n):
        samples.append({k: rng.choice(v) for k, v in spans.items()})
    return samples


def check_space(cfg: Config) -> None:
    """Every sampled config passes the schema, or a ConfigError at the space entry that broke it."""
    base = base_config(cfg)
    for sample in space_samples(cfg):
        try:
            load_config(base, overrides_of(sample))
        except ConfigError as exc:
            problem = exc.problems[0]
            detail, _, source = problem.message.partition(" (from the command-line override '")
            named = re.search(r"override '([^=']+)=", problem.message)
            key = source.split("=", 1)[0] if source else named.group(1) if named and named.group(1) in sample \
                else next((k for k in sample if problem.path.startswith(k) or k.startswith(problem.path + ".")
                           or k.startswith(problem.path + "[")), next(iter(sample)))
            detail = re.sub(r"override '[^']*': ", "", detail) if named else detail
            where = "" if problem.path in ("", key) else f"{problem.path}: "
            raise cfg.error(f"tune.space.{key}", f"the sampled value {sample[key]!r} makes an invalid config: "
                            f"{where}{detail}") from None


@dataclass
class Plan:
    """What every worker of one `dlcli tune` command needs, picklable for worker processes."""

    study_dir: Path
    study_name: str
    storage: str  # a journal file's path or a database URL
    base: dict  # the resolved training config, without tune:
    space: dict  # key path -> ParamSpec's dict
    metric: str
    mode: str  # min | max
    n_trials: int
    deadline: float | None  # time.time() after which no trial starts: the timeout's budget, less what was spent
    workers: int
    threads: int | None  # train.threads each trial gets (cores // workers), None: the config's
    sampler: dict
    pruner: dict
    epochs: int
    reuse_data: bool
    seed: int
    extra: dict = field(default_factory=dict)
    started: float = 0.0  # time.time() when this command started the study
    parent_run: dict | None = None  # the study's MLflow run (uri, experiment, experiment_id, run_id), if tracked


@dataclass
class Outcome:
    number: int
    state: str  # complete | pruned | failed
    params: dict
    value: float | None
    epochs: int
    seconds: float
    run_dir: str
    message: str = ""
    resumed_from: int | None = None
    train_seconds: float = 0.0  # inside train(): the trial's own set-up and training


RAN = "ran:"  # a study's user attribute per command that ran it: [start, end], time.time()


def spent_seconds(study) -> float:
    """The wall time the study's commands have run it, in all: the union of their [start, end] spans, so that
    commands running at once (cluster nodes sharing a storage) count once, and reruns add up."""
    spans = sorted(tuple(v) for k, v in study.user_attrs.items() if k.startswith(RAN) and isinstance(v, list)
                   and len(v) == 2)
    total, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return total
