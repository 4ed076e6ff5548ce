"""Experiment trackers: a run's params, metrics and files also sent to MLflow (TensorBoard is in callbacks.py).

    tracking: [{type: mlflow, uri: "sqlite:///runs/mlflow.db", experiment: higgs}]   # or dlcli train --track mlflow

`MLflowTracker` logs the flattened config as params (keys and values cut to MLflow's limits, sent
in batches of its size), every epoch's metrics.csv row with the epoch as the step, and at the end
config.yaml, summary.txt, metrics.csv and whatever plots/ and export/ hold. Metrics go in batches at most
every SEND_EVERY seconds (and at the end), each with its epoch's time stamp; `dlcli evaluate` and
`dlcli export` later add their plots and model file to the same MLflow run (`log_run_files`,
through RUN_DIR/mlflow.json).

metrics.csv stays the source of truth. The tracker talks to MLflow from a thread of its own, so a
slow server never slows an epoch (training waits up to START_SECONDS before epoch 1 for the run to be
set up: creating a new store's tables on that thread doubled the time of quickstart's epochs), and a
tracker that fails (a server down, a locked or damaged database) prints one warning and is switched
off; training goes on.

A study (`dlcli tune`) is a parent run with a child run per trial:

    parent = start_parent_run(uri, experiment, "study-name", tags={"sampler": "tpe"})
    for trial in trials:
        with child_run(parent, tags={"trial": str(trial.number)}) as child:
            try:
                train(cfg, ...)            # its tracker becomes a child of `parent` (mlflow.parentRunId)
                child.set_state("COMPLETE")
            except optuna.TrialPruned:
                child.set_state("PRUNED")  # the tag `state` on the trial's MLflow run
                raise
    parent.finish()

Inside `child_run` every run trains with an MLflow tracker at the parent's URI and experiment,
whether or not its config lists one.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import runs
from ..config import Config
from ..config.flat import flatten
from ..errors import RunError
from .callbacks import Callback

DEFAULT_URI = "sqlite:///runs/mlflow.db"
RUN_FILE = "mlflow.json"  # in the run directory: which MLflow run holds this run's record
STATE_TAG = "state"  # a trial's state on its child run (dlcli tune's: complete, pruned, failed)
EXTRA_HINT = "uv sync --extra mlflow (or pip install 'dlcli[mlflow]')"
SEND_EVERY = 5.0  # seconds between batches of epochs' metrics: one database write per epoch of a fast
#                  training would cost it a third of its time (benchmarks/RESULTS.md)
START_SECONDS = 15.0  # how long training waits, before epoch 1, for the tracker to set its run up (a new
# store's tables take 1-2 s to create, which alongside short epochs doubled their time); a slower store goes
# on in the background
FLUSH_SECONDS = 60.0  # how long the end of training waits for the tracker to send what is queued
ARTIFACT_FILES = (runs.CONFIG, runs.SUMMARY, runs.METRICS, runs.LABELS, runs.SCALER)
ARTIFACT_FOLDERS = (runs.PLOTS, "export")


def import_mlflow():
    """The mlflow module, quiet (its database migrations log at INFO), with a server that does not answer
    given up on in seconds rather than minutes of retries (unless the environment says otherwise)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import mlflow
    except ImportError:
        raise RunError(f"tracking with mlflow needs the mlflow package: {EXTRA_HINT}") from None
    for name in ("alembic", "mlflow"):  # again: mlflow sets its own logger to INFO as it is imported
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def absolute_uri(uri: str | None) -> str:
    """The tracking URI with a relative sqlite path made absolute (against the current folder), so that
    `dlcli evaluate` run from elsewhere finds the same database through RUN_DIR/mlflow.json."""
    uri = uri or DEFAULT_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/") and uri[len(prefix):] != ":memory:":
        return prefix + str(Path(uri[len(prefix):]).expanduser().resolve())
    return uri


def client(uri: str):
    return import_mlflow().tracking.MlflowClient(tracking_uri=uri)


def artifact_root(uri: str) -> str | None:
    """Where a sqlite store keeps its runs' files: beside the database (runs/mlruns for runs/mlflow.db),
    not in ./mlruns of whatever folder dlcli happens to run in. Other stores decide for themselves."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and uri[len(prefix):] not in ("", ":memory:"):
        return (Path(uri[len(prefix):]).expanduser().resolve().parent / "mlruns").as_uri()
    return None


def experiment_id(mlflow_client, name: str) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(found.experiment_id)
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_root(mlflow_client.tracking_uri))
    except Exception:  # noqa: BLE001  created by another process meanwhile
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def limits() -> tuple[int, int, int, int]:
    """MLflow's (key length, param value length, params per batch, metrics per batch)."""
    from mlflow.utils import validation as v

    return v.MAX_ENTITY_KEY_LENGTH, v.MAX_PARAM_VAL_LENGTH, v.MAX_PARAMS_TAGS_PER_BATCH, v.MAX_METRICS_PER_BATCH


def config_params(cfg: dict) -> dict[str, str]:
    """The resolved config as MLflow params: flat keys, values as text, both cut to MLflow's limits."""
    key_length, value_length, _, _ = limits()
    params = {}
    for key, value in flatten(cfg).items():
        text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        if len(text) > value_length:
            text = text[:value_length - 3] + "..."
        params[key[:key_length]] = text
    return params


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ----------------------------------------------------------------------------------------------
# Parent and child runs (a tuning study and its trials)


@dataclass
class ParentRun:
    uri: str
    experiment: str
    experiment_id: str
    run_id: str

    def finish(self, status: str = "FINISHED") -> None:
        """Mark the study's run ended: FINISHED, FAILED or KILLED."""
        client(self.uri).set_terminated(self.run_id, status)


def start_parent_run(uri: str | None, experiment: str, name: str, tags: dict[str, str] | None = None) -> ParentRun:
    """An MLflow run for a study, whose trials' runs (inside `child_run`) become its children."""
    uri = absolute_uri(uri)
    c = client(uri)
    exp = experiment_id(c, experiment)
    run = c.create_run(exp, run_name=name, tags={"dlcli.kind": "study", **(tags or {})})
    return ParentRun(uri, experiment, exp, run.info.run_id)


@dataclass
class ChildRun:
    parent: ParentRun
    tags: dict[str, str] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)  # the MLflow runs of the trainings inside, once started
    trackers: list[MLflowTracker] = field(default_factory=list)

    def set_state(self, state: str) -> None:
        """Tag the trial's run(s) with its state (dlcli tune's: complete, pruned, failed) and the child's tags
        (again, for a run resumed from a killed trial's). Waits for the trackers to have sent
        what they hold; a tracker that failed is not asked again."""
        for tracker in self.trackers:
            tracker.sender.wait(FLUSH_SECONDS)
        self.run_ids = [t.run_id for t in self.trackers if t.run_id]
        if not self.run_ids:
            return
        from mlflow.entities import RunTag

        c = client(self.parent.uri)
        tags = [RunTag(k, v) for k, v in {**self.tags, STATE_TAG: state}.items()]  # again: a resumed run has old ones
        for run_id in self.run_ids:
            c.log_batch(run_id, tags=tags)


_CHILD: contextvars.ContextVar[ChildRun | None] = contextvars.ContextVar("dlcli_child_run", default=None)


@contextlib.contextmanager
def child_run(parent: ParentRun, tags: dict[str, str] | None = None) -> Iterator[ChildRun]:
    """Runs trained inside are MLflow children of `parent`, with `tags` (see the module docstring)."""
    child = ChildRun(parent, dict(tags or {}))
    token = _CHILD.set(child)
    try:
        yield child
    finally:
        _CHILD.reset(token)


def current_child() -> ChildRun | None:
    return _CHILD.get()


# ----------------------------------------------------------------------------------------------
# The tracker


class Sender:
    """Work for the tracker, done in order on a thread of its own. The first failure is kept and the rest of
    the work dropped: a tracker that failed once is off."""

    def __init__(self):
        self.tasks: queue.Queue = queue.Queue()
        self.failure: str | None = None
        self.thread = threading.Thread(target=self._work, name="dlcli-mlflow", daemon=True)
        self.thread.start()

    def put(self, task: Callable[[], None]) -> None:
        if self.failure is None:
            self.tasks.put(task)

    def _work(self) -> None:
        while True:
            task = self.tasks.get()
            try:
                if task is None:
                    return
                if self.failure is None:
                    task()
            except Exception as exc:  # noqa: BLE001  any failure of the tracker's, never training's
                lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
                self.failure = f"{type(exc).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")
            finally:
                self.tasks.task_done()

    def wait(self, seconds: float) -> bool:
        """Whether everything queued was done (or dropped) within `seconds`."""
        deadline = time.monotonic() + seconds
        while self.tasks.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.tasks.unfinished_tasks

    def close(self) -> None:
        self.tasks.put(None)


class MLflowTracker(Callback):
    """A run's params, metrics and files to an MLflow run (see the module docstring)."""

    def __init__(self, run_dir: Path, cfg: Config, *, uri: str | None = None, experiment: str | None = None,
                 run_name: str | None = None, tags: dict[str, str] | None = None, parent_run_id: str | None = None,
                 warn: Callable[[str], None] | None = None):
        import_mlflow()  # a missing package fails before training starts
        self.run_dir, self.cfg = Path(run_dir), cfg
        name = cfg.name or (cfg.file.stem if cfg.file else "run")
        self.uri = absolute_uri(uri)
        self.experiment = experiment or name
        self.run_name = run_name or f"{name}/{self.run_dir.name}"
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.warn = warn or (lambda text: print(f"warning: {text}", flush=True))
        self.warned = False
        self.run_id: str | None = None
        self.pending: list[tuple[dict, int]] = []  # epochs' rows (and when they ended) not yet handed to the sender
        self.sent = time.monotonic()
        self.sender = Sender()

    def _check(self) -> None:
        if self.sender.failure and not self.warned:
            self.warned = True
            self.warn(f"tracking with mlflow ({self.uri}) failed and is off for this run: {self.sender.failure}; "
                      f"training goes on, and {runs.METRICS} keeps every epoch")

    def on_fit_start(self, training):
        self.sender.put(lambda: self._start(training.resumed))
        self.sender.wait(START_SECONDS)

    def on_epoch_end(self, training, row):
        self._check()
        self.pending.append((dict(row), int(time.time() * 1000)))
        if time.monotonic() - self.sent >= SEND_EVERY:
            self._send()

    def _send(self) -> None:
        rows, self.pending, self.sent = self.pending, [], time.monotonic()
        if rows:
            self.sender.put(lambda: self._log_metrics(rows))

    def on_fit_end(self, training):
        state = training.state
        done = state.stopped_early or state.epoch >= self.cfg.train.epochs
        self._send()
        self.sender.put(lambda: self._finish("FINISHED" if done else "FAILED"))
        if not self.sender.wait(FLUSH_SECONDS):
            self.sender.failure = self.sender.failure or f"it did not answer within {FLUSH_SECONDS:g} s"
        self.sender.close()
        self._check()

    # On the sender's thread:
    def _start(self, resumed: bool) -> None:
        self.client = client(self.uri)
        known = read_run_file(self.run_dir) if resumed else None
        if known is not None and known.get("uri") == self.uri:
            self.run_id = known["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, "dlcli.resumed", runs.now())
            return
        exp = experiment_id(self.client, self.experiment)
        tags = {"dlcli.run_dir": str(self.run_dir.resolve()), **self.tags}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        self.run_id = self.client.create_run(exp, run_name=self.run_name, tags=tags).info.run_id
        runs.write_json(self.run_dir / RUN_FILE, {"uri": self.uri, "experiment": self.experiment,
                                                  "experiment_id": exp, "run_id": self.run_id})
        from mlflow.entities import Param

        _, _, per_batch, _ = limits()
        params = [Param(k, v) for k, v in config_params(self.cfg.resolved()).items()]
        for part in chunks(params, per_batch):
            self.client.log_batch(self.run_id, params=part)

    def _log_metrics(self, rows: list[tuple[dict, int]]) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(k, float(v), stamp, int(row["epoch"])) for row, stamp in rows
                   for k, v in row.items()
                   if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)]
        for part in chunks(metrics, limits()[3]):
            self.client.log_batch(self.run_id, metrics=part)

    def _finish(self, status: str) -> None:
        upload(self.client, self.run_id, self.run_dir, ARTIFACT_FILES, ARTIFACT_FOLDERS)
        self.client.set_terminated(self.run_id, status)


def upload(mlflow_client, run_id: str, run_dir: Path, files=(), folders=()) -> None:
    """A run directory's files (and folders, each under its own name) as artifacts of an MLflow run."""
    for name in files:
        if (run_dir / name).is_file():
            mlflow_client.log_artifact(run_id, str(run_dir / name))
    for name in folders:
        if (run_dir / name).is_dir() and any((run_dir / name).iterdir()):
            mlflow_client.log_artifacts(run_id, str(run_dir / name), artifact_path=name)


def read_run_file(run_dir: Path) -> dict | None:
    """RUN_DIR/mlflow.json, or None when the run was not tracked with MLflow (or the file is unusable)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        known = runs.read_json(path)
    except RunError:
        return None
    return known if isinstance(known.get("run_id"), str) and isinstance(known.get("uri"), str) else None


def log_run_files(run_dir: str | Path, files=(), folders=(), warn: Callable[[str], None] | None = None) -> bool:
    """Add files of a tracked run (evaluate's plots, export's model) to its MLflow run; False (and one warning)
    when that fails, True when done, and nothing for a run not tracked with MLflow."""
    known = read_run_file(Path(run_dir))
    if known is None:
        return False
    try:
        upload(client(known["uri"]), known["run_id"], Path(run_dir), files, folders)
    except Exception as exc:  # noqa: BLE001  the files are written; only their copy in the tracker is missing
        (warn or print)(f"could not add {', '.join([*files, *folders])} to the run's mlflow record "
                        f"({known['uri']}): {type(exc).__name__}: {str(exc).strip()[:200]}")
        return False
    return True


def tracking_callbacks(cfg: Config, run_dir: Path, warn: Callable[[str], None] | None = None) -> list[Callback]:
    """The MLflow trackers a run's config asks for (`tracking:`), or the one a study's `child_run` implies."""
    child = current_child()
    trackers = []
    for entry in cfg.tracking or []:
        if entry.type == "mlflow":
            trackers.append(MLflowTracker(run_dir, cfg, uri=entry.uri, experiment=entry.experiment,
                                          run_name=entry.run_name, tags=entry.tags, warn=warn))
    if child is not None:
        parent = child.parent
        mine = [t for t in trackers if t.uri == parent.uri]
        if not mine:
            mine = [MLflowTracker(run_dir, cfg, uri=parent.uri, experiment=parent.experiment, warn=warn)]
            trackers += mine
        for tracker in mine:
            tracker.parent_run_id, tracker.experiment = parent.run_id, parent.experiment
            tracker.tags.update(child.tags)
            child.trackers.append(tracker)
    return trackers
