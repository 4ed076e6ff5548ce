"""A study in MLflow: a parent run for the study, a child run per trial tagged with its number, its
parameters and its state (complete, pruned, failed), when the base config tracks with mlflow
(`tracking: [{type: mlflow, ...}]`).

The parent run is made once, by the command that starts the study, and its id is kept in the study
folder (`mlflow.json`), so a rerun of the study (after a kill, or to raise n_trials) adds its trials to
the same parent; worker processes get it in their `Plan`. Tracking never stops a study: a store that
fails is one warning, and the trials go on (metrics.csv and the study's storage keep everything).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import runs
from ..engine.tracking import RUN_FILE, read_run_file  # mlflow.json, in the study folder: its parent run


def mlflow_entry(base: dict) -> dict | None:
    """The base config's first mlflow tracker ({uri, experiment, ...}), or None when it tracks with none."""
    for entry in base.get("tracking") or []:
        if isinstance(entry, dict) and entry.get("type") == "mlflow":
            return entry
    return None


def parent_run(base: dict, study_dir: Path, study: str, tags: dict[str, str], warn: Callable[[str], None]):
    """The study's ParentRun, made or (on a rerun, from mlflow.json) reopened; None when not tracked or when the
    store fails (one warning)."""
    entry = mlflow_entry(base)
    if entry is None:
        return None
    try:
        from ..engine import tracking

        uri = tracking.absolute_uri(entry.get("uri"))
        known = _read(study_dir)
        if known is not None and known["uri"] == uri:
            parent = tracking.ParentRun(uri, known["experiment"], known["experiment_id"], known["run_id"])
            tracking.client(uri).update_run(parent.run_id, status="RUNNING")
            return parent
        parent = tracking.start_parent_run(uri, entry.get("experiment") or study, entry.get("run_name") or study,
                                           tags={"dlcli.study_dir": str(study_dir), **tags,
                                                 **(entry.get("tags") or {})})
        runs.write_json(study_dir / RUN_FILE, {"uri": parent.uri, "experiment": parent.experiment,
                                               "experiment_id": parent.experiment_id, "run_id": parent.run_id})
        return parent
    except Exception as exc:  # noqa: BLE001 - a tracker never stops the study
        warn(f"tracking the study with mlflow failed and is off: {_reason(exc)}; the trials go on, and "
             "trials.csv and the study's storage keep every result")
        return None


def finish_parent(parent, status: str, warn: Callable[[str], None], best: dict | None = None) -> None:
    """The study's run ended (FINISHED, KILLED), tagged with its best trial so far."""
    if parent is None:
        return
    try:
        if best is not None:
            from ..engine.tracking import client

            c = client(parent.uri)
            c.set_tag(parent.run_id, "best_trial", str(best["number"]))
            c.log_metric(parent.run_id, "best_value", float(best["value"]))
        parent.finish(status)
    except Exception as exc:  # noqa: BLE001
        warn(f"could not mark the study's mlflow run {status.lower()}: {_reason(exc)}")


@contextlib.contextmanager
def child_of(parent: dict | None, number: int, params: dict) -> Iterator[Callable[[str], None]]:
    """Inside: a trial's training is a child run of `parent` (a ParentRun's fields). Yields `set_state(state)`,
    which tags the child run with the trial's final state (a trial that failed before training gets a bare
    child run, so that it shows too)."""
    if parent is None:
        yield lambda state: None
        return
    from ..engine.tracking import ParentRun, child_run

    parent = ParentRun(**parent) if isinstance(parent, dict) else parent

    # MLflow's keys take no brackets: model.layers[0].units as model.layers.0.units, as its params have it
    tags = {"trial": str(number), **{f"param.{k.replace('[', '.').replace(']', '')}"[:250]: str(v)[:5000]
                                     for k, v in params.items()}}
    with child_run(parent, tags) as child:
        def set_state(state: str) -> None:
            try:
                child.set_state(state)
                if not child.run_ids:  # no run was trained: the trial still shows in the study, failed
                    _bare_child(parent, {**tags, "state": state})
            except Exception as exc:  # noqa: BLE001 - a tracker never stops the study
                print(f"warning: could not tag trial {number}'s mlflow run: {_reason(exc)}", file=sys.stderr)

        yield set_state


def _bare_child(parent, tags: dict[str, str]) -> None:
    from ..engine.tracking import client

    c = client(parent.uri)
    run = c.create_run(parent.experiment_id, run_name=f"trial {tags['trial']}",
                       tags={"mlflow.parentRunId": parent.run_id, **tags})
    c.set_terminated(run.info.run_id, "FAILED")


def _read(study_dir: Path) -> dict | None:
    """The study folder's mlflow.json (the same file name and checks as a run directory's), or None."""
    known = read_run_file(study_dir)
    keys = ("experiment", "experiment_id")
    return known if known is not None and all(isinstance(known.get(k), str) for k in keys) else None


def _reason(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")
