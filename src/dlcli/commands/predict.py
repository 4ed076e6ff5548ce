"""`predict`: a trained run's outputs for every row (or image) of a new input.

The input is prepared exactly as the run prepared its training rows (its stored scaler, fill values,
feature columns picked by name) and needs no target. The result is a table: the input's identifying
columns first (every column that is not a feature, the target included when present), then

    classification  prob_<class> for every class (in class-id order; data.class_names names them), then `predicted`: the
                    original label of the most probable class (for binary, p > 0.5 is the
                    positive class, as in `evaluate`)
    regression      pred_<target> (one target value), or pred_0 ... pred_<k-1> (k values)

"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..config import Config
from ..data import load_inputs
from ..data.labels import class_names
from ..engine.device import resolve_device
from ..engine.inference import evaluate_split
from ..errors import DataError, SpecError
from ..runs.run import Run
from .outputs import write_table

PREDICTED = "predicted"
IMAGE_NAME = "file"  # the column naming each image


@dataclass
class Predictions:
    table: pd.DataFrame  # one row per input row: identifying columns, then `outputs`
    outputs: list[str]  # the output columns
    task: str
    checkpoint: str  # best | last: the one used
    epoch: int  # the checkpoint's epoch
    notes: list[str] = field(default_factory=list)  # what preparing the input did (rows dropped, ...)


def predict(run_dir: str | Path, input: str | Path, *, output: str | Path | None = None,
            checkpoint: str = "best", device: str | None = None, batch_size: int | None = None,
            threads: int | str | None = None) -> Predictions:
    """Predict every row or image of `input` with a trained run; with `output`, also write the table (csv;
    .parquet and .root by the suffix).

    The run's loss is never built: a custom loss file is not imported (predicting runs no code of the
    config's). The output's folder must exist; a file that cannot be written whole is not written at all.
    """
    if output is not None:
        runs.check_writable(Path(output))  # before the work: a mistyped -o fails at once
    run = Run.open(run_dir)
    task = run.task
    path = Path(input).expanduser().resolve()

    dev = resolve_device(device or "auto")
    model, chosen, epoch = run.network(checkpoint, dev)  # a broken run fails before a big input is read
    table, outputs, notes = predict_file(run, model, path, dev, batch_size=batch_size, threads=threads)
    if output is not None:
        write_table(table, Path(output), notes)  # csv (a csv input's columns as their text), parquet or root
    return Predictions(table, outputs, task, chosen, epoch, notes)


def predict_file(run: Run, model, path: Path, dev, *, batch_size: int | None = None,
                 threads: int | str | None = None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """A run's network (loaded on `dev`) over every row of the file `path`, prepared as the run prepared its
    training rows: (the table, its output columns, notes). What `predict` and `load_run(...).predict` share."""
    cfg, task = run.config, run.task
    with _input_errors(path):
        x, passthrough, notes = _read_input(path, cfg, run.labels, run.scaler, run.input_shape)
    _, out = evaluate_split(model, None, (x, None), task, batch_size or cfg.train.eval_batch_size, dev,
                            threads=threads or cfg.train.threads, note=notes.append)
    classes = run.labels.get("classes")
    names = class_names(cfg.data.class_names, classes) if cfg.data is not None and classes else None
    outputs = output_frame(out.y_prob, task, classes, _target_name(cfg), names=names)

    clashes = [c for c in outputs.columns if c in passthrough.columns]
    if clashes:  # e.g. predicting on an earlier prediction file: the new outputs replace the old
        passthrough = passthrough.drop(columns=clashes)
        notes.append(f"input column(s) {', '.join(clashes)} replaced by this prediction")
    table = pd.concat([passthrough.reset_index(drop=True), outputs], axis=1)
    return table, list(outputs.columns), notes


def output_frame(probs: np.ndarray, task: str, classes: list | None, target: str | None, *,
                 names: list[str] | None = None) -> pd.DataFrame:
    """Model outputs (`Outputs.y_prob`: probabilities per class, or the values) -> the output columns (see
    the module docstring); `names` (data.class_names) name the prob_ columns, `predicted` is the label."""
    probs = probs.reshape(len(probs), -1)
    if task == "regression":
        names = [f"pred_{target}"] if probs.shape[1] == 1 and target else [f"pred_{j}" for j in range(probs.shape[1])]
        return pd.DataFrame(probs, columns=names)
    if classes is None or len(classes) != probs.shape[1]:
        classes = list(range(probs.shape[1]))  # a run without stored labels: class ids
    if names is None or len(names) != len(classes):
        names = classes
    frame = pd.DataFrame(probs, columns=[f"prob_{c}" for c in names])
    frame[PREDICTED] = np.array(classes, dtype=object)[probs.argmax(axis=1)]
    return frame


def _target_name(cfg: Config) -> str | None:
    if cfg.data is None:
        return None
    return cfg.data.target or ("target" if cfg.data.dataset else None)  # scikit-learn's data sets call it so


def _read_input(path: Path, cfg: Config, labels: dict, scaler, input_shape: tuple[int, ...]):
    """(x scaled and shaped for the model, the identifying columns, notes)."""
    if not path.exists():
        raise SpecError(f"input not found: {path}")
    from ..data.images import IMAGE_EXTENSIONS

    feature_names = labels.get("feature_names")
    takes_images = feature_names is None and len(input_shape) > 1
    if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS:  # a folder is read as images
        if not takes_images:
            shown = ", ".join(feature_names[:8]) + (", ..." if len(feature_names or []) > 8 else "") \
                if feature_names else f"{math.prod(input_shape)} values a row"
            raise SpecError(f"the model takes table rows ({shown}), not images; give a table file (csv, ...)")
        from ..data.images import load_image_inputs

        x, names = load_image_inputs(path, cfg.data, input_shape=input_shape, scaler=scaler)
        return x, pd.DataFrame({IMAGE_NAME: [str(n) for n in names]}), []

    # Scaled here, after the shape is known to fit: an image model's per-channel scaler
    # would fail on table rows with a less helpful message.
    inputs = load_inputs(path, cfg.data, feature_names=feature_names, scaler=None, fill=labels.get("fill"))
    x = inputs.x
    if tuple(x.shape[1:]) != input_shape:
        what = "images shaped" if takes_images else "rows of"
        hint = "; give an image file or a folder of images" if takes_images else ""
        raise SpecError(f"the model takes {what} {list(input_shape)} but the input gives {list(x.shape[1:])}{hint}")
    x = scaler.transform(x) if scaler is not None else x
    passthrough = inputs.passthrough if inputs.passthrough is not None else pd.DataFrame(index=range(len(x)))
    notes = list(inputs.notes)
    if len(passthrough) != len(x):  # rows were dropped (missing: drop): keep those that were predicted
        passthrough = passthrough.iloc[inputs.rows]
    if len(inputs.rows) and not np.array_equal(inputs.rows, np.arange(len(inputs.rows))):
        # Some rows were left out: say which file row each prediction belongs to (1 = first data row).
        passthrough = passthrough.reset_index(drop=True)
        passthrough.insert(0, "row" if "row" not in passthrough else "file_row", inputs.rows + 1)
    return x, passthrough, notes


@contextmanager
def _input_errors(path: Path):
    """Problems with the input are the input's, not the run config's: name the input file."""
    try:
        yield
    except SpecError as exc:
        message = str(exc)
        raise DataError(message if str(path) in message else f"{path}: {message}") from None
