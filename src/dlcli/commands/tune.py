"""`tune`: a hyperparameter study over any config key, on Optuna, resumable and in parallel.

    result = tune("configs/quickstart.yaml", n_trials=8, workers=2)
    result.study_dir, result.best["value"], result.best["params"]

The study's MLflow parent run is made (or reopened) by `tune` before the workers start
(commands/tune_tracking.py), and `trial.run_trial` makes each trial a child of it. The study lives in `runs/tune/<study>/` (tune.yaml, the Optuna
journal, trials.csv, best.yaml, plots/, trials/<NNNN>/). Workers are processes that share the journal:
each asks Optuna for a trial under the study's lock (`study.lock`), so together they run exactly
`n_trials` complete or pruned trials, and each holds a lock of its own (`workers/<host>-<pid>/`) for as
long as it lives, which is how a later command tells a trial whose process was killed: it is marked
failed and its parameters are tried again, resuming its run from `last.pt`. The command's own process is
worker 0; `timeout` budgets the wall time of the study's commands, summed (`spent_seconds`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import runs
from ..config import Config
from ..config.space import ParamSpec
from ..errors import RunError, Stopped
from ..messages import key_path
from ..runs.layout import CHECKPOINTS
from ..runs.lock import RunLock, is_locked
from .tune_checks import (  # noqa: F401
    RAN,
    TUNE_YAML,
    WORKERS,
    Outcome,
    Plan,
    base_config,
    check_objective,
    check_space,
    objective_mode,
    open_storage,
    spent_seconds,
    tune_config,
)

TUNE_DIR = "tune"  # runs/tune/<study>/
JOURNAL = "journal.log"
MAX_FAILURES_IN_A_ROW = 3  # as keras-tuner's max_consecutive_failed_trials
# Settings a study may change between commands: how long it runs and how, not what it searches.
ADJUSTABLE = ("n_trials", "timeout", "workers", "sampler", "pruner", "study", "storage")


@dataclass
class TuneResult:
    study_dir: Path
    best: dict | None  # number, value, params, run_dir of the best trial
    trials: list[dict] = field(default_factory=list)  # trials.csv's rows
    counts: dict = field(default_factory=dict)  # state -> trials
    spent: float = 0.0  # seconds the study's commands have run it, in all (what `timeout` budgets)
    timeout: float | None = None  # tune.timeout in seconds
    n_trials: int = 0
    metric: str = ""  # the objective's metrics.csv column

    @property
    def timed_out(self) -> bool:
        done = self.counts.get("complete", 0) + self.counts.get("pruned", 0)
        return self.timeout is not None and done < self.n_trials and self.spent >= self.timeout


# ---- the study folder and its storage ----------------------------------------------------------------

def study_folder(cfg: Config, runs_root: str | Path, new: bool) -> Path:
    name = cfg.tune.study or cfg.name or (cfg.file.stem if cfg.file else "study")
    folder = Path(runs_root) / TUNE_DIR / name
    if new and folder.exists():
        n = 2
        while (folder.parent / f"{name}-{n}").exists():
            n += 1
        folder = folder.parent / f"{name}-{n}"
    return folder


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def storage_of(cfg: Config, folder: Path) -> str:
    spec = cfg.tune.storage
    if spec is None:
        return JOURNAL  # relative to the study folder, which may move (copied off a cluster)
    if "://" in spec:
        return spec
    return str((cfg.base_dir / spec).resolve())  # a journal file of one's own


def record(cfg: Config, folder: Path) -> dict:
    tc = cfg.tune
    space = {k: s.model_dump() for k, s in tc.space.items()}
    base = base_config(cfg)
    return {"study": folder.name, "config": str(cfg.file) if cfg.file else None, "storage": storage_of(cfg, folder),
            "objective": {"metric": tc.objective.metric, "mode": objective_mode(cfg)},
            "n_trials": tc.n_trials, "timeout": tc.timeout, "workers": tc.workers,
            "sampler": tc.sampler.model_dump(), "pruner": tc.pruner.model_dump(),
            "config_hash": digest(base), "space_hash": digest(space), "space": space, "base_config": base}


def check_unchanged(cfg: Config, folder: Path, new: dict) -> dict | None:
    """The stored tune.yaml, after refusing a study whose space, objective or base config changed."""
    path = folder / TUNE_YAML
    if not path.exists():
        return None
    try:
        import yaml

        old = yaml.safe_load(path.read_text())
        assert isinstance(old, dict) and "space" in old and "base_config" in old
    except (OSError, ValueError, AssertionError, yaml.YAMLError) as exc:
        raise RunError(f"{path}: cannot be read as a study's record ({type(exc).__name__}); the study folder is "
                       "damaged: use --new to start a fresh study") from None
    fresh = " (or use --new to start a fresh study in a new folder)"
    for what, key, prefix in (("search space", "space", "tune.space"), ("objective", "objective", "tune.objective"),
                              ("base config", "base_config", "")):
        diffs = differences(old.get(key), new[key], ())
        if diffs:
            first = diffs[0][0]
            shown = "; ".join(f"{p}: {_short(a)} -> {_short(b)}" for p, a, b in diffs[:4])
            more = f" and {len(diffs) - 4} more" if len(diffs) > 4 else ""
            at = f"{prefix}.{first}" if prefix and first else (prefix or first or "tune")
            raise cfg.error(at if key != "space" else prefix, f"the study in {folder} was made with another {what}; "
                            f"changed: {shown}{more}. Put it back to continue that study{fresh}")
    return old


def differences(old, new, path: tuple) -> list[tuple[str, object, object]]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in [*old, *(k for k in new if k not in old)]:
            out += differences(old.get(k), new.get(k), (*path, k))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in differences(a, b, (*path, i))]
    return [] if old == new else [(key_path(path), old, new)]


def _short(v) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def build_sampler(sampler: dict, space: dict, seed: int):
    import optuna

    name = sampler["name"]
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "grid":
        return _Grid(grid(space), seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _grid_sampler():
    import optuna

    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid, without its `study.stop()` once the grid is done: that only works inside
        `study.optimize`, and the study here counts its trials itself (n_trials is capped at the grid's size)."""

        def after_trial(self, study, trial, state, values):
            pass

    return Grid


def _Grid(search_space, seed):  # noqa: N802 - a class, made when first asked for (optuna loads lazily)
    return _grid_sampler()(search_space, seed=seed)


def grid(space: dict) -> dict:
    from ..config.space import encode

    out = {}
    for key, raw in space.items():
        spec = ParamSpec.model_validate(raw)
        if spec.type == "categorical":
            out[key] = [encode(c) for c in spec.choices]
        else:
            step = spec.step or 1
            n = int((spec.high - spec.low) / step + 1e-9)
            cast = int if spec.type == "int" else float
            out[key] = [cast(spec.low + i * step) for i in range(n + 1)]
    return out


def build_pruner(pruner: dict, epochs: int):
    import optuna

    if pruner["name"] == "none":
        return optuna.pruners.NopPruner()
    if pruner["name"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, pruner["warmup_epochs"]), max_resource=epochs,
                                              reduction_factor=pruner["reduction_factor"])
    # epochs 1..warmup are never pruned: Optuna's earliest prune is at step == n_warmup_steps
    return optuna.pruners.MedianPruner(n_startup_trials=pruner["startup_trials"],
                                       n_warmup_steps=pruner["warmup_epochs"] + 1)


def start_study(plan: Plan, worker: int = 0):
    """The Optuna study of a plan, made or loaded: where a study starts, in every worker process."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan.storage, plan.study_dir)
    study = optuna.create_study(study_name=plan.study_name, storage=storage, load_if_exists=True,
                                direction="maximize" if plan.mode == "max" else "minimize",
                                sampler=optuna.samplers.RandomSampler(), pruner=build_pruner(plan.pruner, plan.epochs))
    # A seed of its own per worker and per restart: the same seed again would draw the same values again.
    seed = (plan.sampler.get("seed") if plan.sampler.get("seed") is not None else plan.seed) \
        + 7919 * len(study.get_trials(deepcopy=False)) + 104729 * worker
    study.sampler = build_sampler(plan.sampler, plan.space, seed % 2**32)
    return study


# ---- workers -------------------------------------------------------------------------------------------

@contextlib.contextmanager
def study_lock(folder: Path):
    """The study's own lock: one worker at a time counts the trials, recovers killed ones and asks for one."""
    import fcntl

    fd = os.open(folder / "study.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def worker_name() -> str:
    return f"{platform.node()}-{os.getpid()}"


def recover(study, plan: Plan, say: Callable[[dict], None]) -> None:
    """Trials left running by a process that is gone: failed, and their parameters enqueued to resume."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if worker and is_locked(Path(plan.study_dir) / WORKERS / worker):
            continue
        run_dir = t.user_attrs.get("run_dir")
        optuna.trial.Trial(study, t._trial_id).set_user_attr("message", "killed: its process is gone; its "
                                                              "parameters are tried again, resuming its run")
        study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        attrs = {"resumes": t.number, **({"resume_from": run_dir} if run_dir else {})}
        study.enqueue_trial(t.params, user_attrs=attrs)
        resumable = run_dir and (Path(run_dir) / CHECKPOINTS / "last.pt").exists()  # else it starts afresh
        say({"event": "recovered", "number": t.number, "run_dir": run_dir if resumable else None})


def counts(study) -> dict[str, int]:
    found: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        found[t.state.name.lower()] = found.get(t.state.name.lower(), 0) + 1
    return found


def work(plan: Plan, worker: int, say: Callable[[dict], None]) -> None:
    """Run trials until the study has `n_trials` complete or pruned ones (or the deadline passes)."""
    from ..engine.datacache import reuse_data
    from .trial import run_trial  # torch: only in the processes that train

    study = start_study(plan, worker)
    me = worker_name()
    span = RAN + f"{me}@{plan.started:.3f}"  # one command: this process (Python may call tune() again in it)
    ran = (lambda: study.set_user_attr(span, [plan.started, time.time()])) if worker == 0 else (lambda: None)
    ran()  # this command's span of the study's time budget (`timeout`), which its worker 0 keeps up to date
    folder = Path(plan.study_dir) / WORKERS / me
    folder.mkdir(parents=True, exist_ok=True)
    failed_in_a_row = 0
    with RunLock(folder), (reuse_data() if plan.reuse_data else contextlib.nullcontext()):
        while True:
            trial = None
            with study_lock(Path(plan.study_dir)):
                recover(study, plan, say)
                n = counts(study)
                finished = n.get("complete", 0) + n.get("pruned", 0)
                if finished >= plan.n_trials or (plan.deadline is not None and time.time() > plan.deadline):
                    break
                if finished + n.get("running", 0) < plan.n_trials:
                    trial = study.ask()
                    trial.set_user_attr("worker", me)
            if trial is None:
                if worker == 0:
                    with contextlib.suppress(Exception):  # else `finish` says what failed, once the trials are done
                        warm_up_report()  # idle: import what the final plots need while the last trials run
                time.sleep(0.1)  # the last trials are running elsewhere: one may yet be killed and need us
                continue
            outcome = run_trial(study, trial, plan, lambda number, params, resumes: say(
                {"event": "start", "number": number, "params": params, "resumes": resumes, "worker": worker}))
            ran()
            say({"event": "end", "metric": plan.metric, **outcome_dict(outcome), **best_so_far(study)})
            write_trials(study, plan)
            failed_in_a_row = failed_in_a_row + 1 if outcome.state == "failed" else 0
            if failed_in_a_row >= MAX_FAILURES_IN_A_ROW:
                say({"event": "gave_up", "failures": failed_in_a_row, "message": outcome.message})
                break


def outcome_dict(o: Outcome) -> dict:
    return {"number": o.number, "state": o.state, "params": o.params, "value": o.value, "epochs": o.epochs,
            "seconds": o.seconds, "train_seconds": o.train_seconds, "run_dir": o.run_dir, "message": o.message,
            "resumes": o.resumed_from}


def best_so_far(study) -> dict:
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return {"best_value": None, "best_number": None}
    return {"best_value": best.value, "best_number": best.number}


def write_trials(study, plan: Plan) -> None:
    from .tune_report import trial_rows, write_trials_csv

    try:
        write_trials_csv(Path(plan.study_dir), trial_rows(study, plan.study_dir))
    except RunError:
        pass  # the study's storage has it all; the next trial writes it again


def _worker_main(worker: int, plans, queue) -> None:
    """A worker process: dies with the `dlcli tune` that started it (Linux), imports what training needs while
    the study is being checked, then takes its plan from `plans` (None: the study did not start) and reports
    through `queue`."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    code = 0
    try:
        warm_up()
        plan = plans.get()
        if plan is not None:
            work(plan, worker, queue.put)
    except Stopped:
        code = 130
    except Exception as exc:  # noqa: BLE001 - the parent says what stopped the worker
        queue.put({"event": "error", "message": f"{type(exc).__name__}: {exc}", "worker": worker})
        code = 1
    queue.close()
    queue.join_thread()  # every event delivered
    skip_teardown(code)


def warm_up() -> None:
    """Import what a first trial would: torch, the optimizers' torch._dynamo (~1 s) and scikit-learn's metrics."""
    import sklearn.metrics  # noqa: F401
    import torch._dynamo  # noqa: F401

    from . import train, trial  # noqa: F401


def warm_up_report() -> None:
    """Import what `finish` draws the plots with: matplotlib and Optuna's importances (which import scikit-learn's
    forests)."""
    import matplotlib.figure  # noqa: F401
    import optuna.importance  # noqa: F401

    from . import plots  # noqa: F401


class Spawned:
    """A study's workers beyond this process's own, started first so that their imports overlap the study's checks.
    spawn, not fork: forked workers trained ~2x slower here (benchmarks/RESULTS.md), and a fork after torch has
    started its OpenMP threads can hang."""

    def __init__(self, n: int):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.events, self.plans = ctx.Queue(), ctx.Queue()
        self.started = False
        self.ctx, self.procs = ctx, []
        self.grow(n)

    def grow(self, n: int) -> None:
        """Up to n workers (numbered 1 to n), before the study starts."""
        for i in range(len(self.procs) + 1, n + 1):
            p = self.ctx.Process(target=_worker_main, args=(i, self.plans, self.events), daemon=True)
            p.start()
            self.procs.append(p)

    def start(self, plan: Plan) -> None:
        self.started = True
        for _ in self.procs:
            self.plans.put(plan)

    def cancel(self) -> None:
        """The study did not start (bad input), or is over: the workers end. Before they have their plan they
        are only importing, and are stopped at once."""
        if not self.started:
            for p in self.procs:
                p.kill()
                p.join()
            return
        for _ in self.procs:
            self.plans.put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


def skip_teardown(code: int) -> None:
    """End the process without the interpreter's teardown: freeing torch's modules and objects takes 1-2.5 s
    on 2 cores (benchmarks/RESULTS.md), which the study would wait for. Only once all files are closed."""
    import sys

    with contextlib.suppress(Exception):
        import atexit

        atexit._run_exitfuncs()  # logging's flush, multiprocessing's clean-up
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _relay(procs, events, say: Callable[[dict], None]) -> None:
    import queue as queues

    while any(p.is_alive() for p in procs) or not events.empty():
        try:
            say(events.get(timeout=0.1))
        except queues.Empty:
            pass
        except (EOFError, OSError):
            return


def run_workers(plan: Plan, say: Callable[[dict], None], spawned: Spawned | None = None) -> None:
    """`plan.workers` workers: this process is worker 0 (it has the study open, and has imported what the final
    plots need), the others are `spawned` processes, whose events a thread passes on to `say`."""
    if plan.workers == 1 or spawned is None:
        work(plan, 0, say)
        return
    import threading

    spawned.start(plan)
    lock = threading.Lock()

    def said(event: dict) -> None:
        with lock:
            say(event)

    relay = threading.Thread(target=_relay, args=(spawned.procs, spawned.events, said), name="dlcli-tune-events",
                             daemon=True)
    relay.start()
    try:
        work(plan, 0, said)
        relay.join()
    except KeyboardInterrupt:
        for p in spawned.procs:
            p.join(timeout=30)  # they got the signal too, and mark their runs interrupted
        raise


# ---- the command -------------------------------------------------------------------------------------

def tune(config: str | Path | Config, overrides: list[str] | tuple[str, ...] = (), *, n_trials: int | None = None,
         workers: int | None = None, new: bool = False, runs_root: str | Path = "runs",
         progress: Callable[[dict], None] | None = None) -> TuneResult:
    """Run (or continue) the study of a config's `tune:` section; returns where it is and its best trial.

    n_trials, workers: in place of tune.n_trials, tune.workers. new: a fresh study in a new folder
    (runs/tune/<study>-2/) instead of continuing the one there. progress: called with a dict per event
    ({"event": "start"|"end"|"recovered"|"gave_up"|"error", ...}; "end" names the objective's "metric"), from
    the process that runs the study.
    A changed space, objective or base config of an existing study raises ConfigError (exit 2).
    """
    early = min(workers, os.cpu_count() or 1) if workers else early_workers(config, overrides)
    spawned = Spawned(early - 1) if early > 1 else None  # before the config's checks import torch (1-2 s)
    try:
        cfg = tune_config(config, overrides)
        tc = cfg.tune
        if n_trials is not None:
            tc.n_trials = n_trials
        if workers is not None:
            tc.workers = workers
        if tc.workers > early and spawned is not None:  # more than the cores, or than the file said
            spawned.grow(tc.workers - 1)
        elif tc.workers != early:  # the file said otherwise than its checked values do
            if spawned is not None:
                spawned.cancel()
            spawned = Spawned(tc.workers - 1) if tc.workers > 1 else None
        return _tune(cfg, runs_root, new, progress, spawned)
    except BaseException:
        if spawned is not None:
            spawned.cancel()
        raise


def early_workers(config: str | Path | Config, overrides=()) -> int:
    """The study's `tune.workers` from the config as read, before its checks (1 where it cannot be told, and
    at most the core count, so that a config about to be refused starts no crowd of processes; the rest are
    started once it is checked)."""
    if isinstance(config, Config):
        return config.tune.workers if config.tune is not None else 1
    from ..config.load import read_config
    from ..errors import ConfigError

    try:
        tc = read_config(config, overrides).get("tune")
    except ConfigError:
        return 1  # the checks say why
    n = tc.get("workers") if isinstance(tc, dict) else None
    return min(n, os.cpu_count() or 1) if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def _tune(cfg: Config, runs_root, new: bool, progress, spawned: Spawned | None) -> TuneResult:
    from ..engine.threads import cores  # torch: only once the workers are spawned, whose imports overlap ours
    from .tune_tracking import finish_parent, parent_run

    tc = cfg.tune
    check_objective(cfg)
    check_space(cfg)
    folder = study_folder(cfg, runs_root, new)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{folder}: cannot be created ({runs.os_reason(exc)})") from None
    now = record(cfg, folder)
    old = check_unchanged(cfg, folder, now)
    runs.write_yaml(folder / TUNE_YAML, {**now, "created": (old or {}).get("created", runs.now()),
                                         "updated": runs.now()})
    n_space = {k: s.model_dump() for k, s in tc.space.items()}
    if tc.sampler.name == "grid":
        size = 1
        for values in grid(n_space).values():
            size *= len(values)
        tc.n_trials = min(tc.n_trials, size)
    threads = cores(tc.workers) if tc.workers > 1 and cfg.train.threads == "auto" and \
        "train.threads" not in tc.space else None
    plan = Plan(folder.resolve(), folder.name, now["storage"], base_config(cfg), n_space, tc.objective.metric,
                objective_mode(cfg), tc.n_trials, None,
                tc.workers, threads, tc.sampler.model_dump(), tc.pruner.model_dump(), cfg.train.epochs,
                not any(k == "data" or k.startswith(("data.", "data[")) or k == "seed" for k in tc.space), cfg.seed)
    plan.started = time.time()
    plan.extra["timeout"] = tc.timeout_seconds
    if tc.timeout:
        spent = spent_seconds(start_study(plan))
        plan.deadline = plan.started + tc.timeout_seconds - spent
    say = progress or (lambda event: None)
    warn = lambda text: say({"event": "warning", "message": text})  # noqa: E731
    parent = parent_run(plan.base, plan.study_dir, plan.study_name, {
        "dlcli.kind": "study", "objective": f"{plan.metric} ({plan.mode})", "sampler": plan.sampler["name"],
        "pruner": plan.pruner["name"], "n_trials": str(plan.n_trials)}, warn)
    plan.parent_run = asdict(parent) if parent is not None else None
    try:
        run_workers(plan, say, spawned)
    except KeyboardInterrupt as exc:
        finish_parent(parent, "KILLED", warn)
        exc.study_dir = plan.study_dir  # the trials had begun: the same command continues the study
        raise
    result = finish(plan)
    finish_parent(parent, "FINISHED", warn, result.best)
    return result


def finish(plan: Plan) -> TuneResult:
    """trials.csv, best.yaml and the plots, from the study as it stands."""
    from .tune_report import best_trial, config_values, trial_rows, write_best, write_plots, write_trials_csv

    study = start_study(plan)
    study.set_user_attr(RAN + f"{worker_name()}@{plan.started:.3f}", [plan.started, time.time()])
    rows = trial_rows(study, plan.study_dir)
    write_trials_csv(plan.study_dir, rows)
    best = best_trial(study)
    if best is not None:
        write_best(plan.study_dir / "best.yaml", plan.base, config_values(plan.space, best["params"]))
    write_plots(plan.study_dir, study, plan.metric)
    n = counts(study)
    return TuneResult(plan.study_dir, best, rows, n, spent_seconds(study), plan.extra.get("timeout"), plan.n_trials,
                      plan.metric)
