"""`predict RUN_DIR --split test`: every event of one of the run's own splits, with its scores, predicted class,
true target and weight, and the input file's other columns passed through as the file holds them.

The split is re-made exactly as training made it (same config, seed and rows), so the scores can go
back into an analysis: as CSV, Parquet (`-o out.parquet`) or a ROOT TTree (`-o out.root`, the `hep`
extra). A csv file's passed-through columns are its text, byte for byte (an event ID 123456789012345
never goes through a float); other formats keep their columns' types.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..data import in_memory
from ..data.labels import class_names
from ..data.tables import Origin, open_table
from ..data.tables.columns import source_columns
from ..engine.device import resolve_device
from ..engine.inference import evaluate_split
from ..engine.setup import prepare
from ..errors import RunError
from ..runs.run import Run
from .outputs import write_table
from .predict import PREDICTED, Predictions, output_frame

SPLITS = ("train", "val", "test")


def predict_split(run_dir: str | Path, split: str, *, output: str | Path | None = None, checkpoint: str = "best",
                  device: str | None = None, batch_size: int | None = None,
                  threads: int | str | None = None) -> Predictions:
    """The per-event outputs of the run's `split` (train, val or test); with `output`, also written (csv,
    parquet or root, by its suffix)."""
    if split not in SPLITS:
        raise RunError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    if output is not None:
        runs.check_writable(Path(output))
    run = Run.open(run_dir)
    cfg, fitted = run.config, run.fitted
    run.checkpoint(checkpoint)
    setup = prepare(cfg, fitted=fitted, input_shape=run.input_shape or None)
    data, task = setup.data, setup.task
    if split not in data.splits:
        raise RunError(f"{run.path}: the data has no {split} split (it has {', '.join(data.splits)})")
    rows = data.served(split, events=True)  # the events' own weights, not times train.class_weight's factors
    if in_memory(rows) and data.index is not None:
        (file, index), y_true, served = (data.files[split], data.index[split]), rows[1], rows
    elif hasattr(rows, "file_rows"):  # a streamed table: its rows in file order, with their row numbers
        found = rows.file_rows()
        if len(found) != 1:
            raise RunError(f"{run.path}: the {split} split's rows come from {len(found)} files; predict --split "
                           "passes one file's columns through (predict on each file instead)")
        (file, index), = found.items()
        served = rows.in_file_order()
    else:
        raise RunError(f"{run.path}: predict --split needs a table split; the {split} split is images "
                       "(predict on the files instead)")
    dev = resolve_device(device or "auto")
    chosen, epoch = run.load_weights(setup.model, checkpoint, dev)
    weights = data.weight(split, events=True)
    notes: list[str] = []
    _, out = evaluate_split(setup.model, None, served, task, batch_size or cfg.train.eval_batch_size, dev,
                            threads=threads or cfg.train.threads, note=notes.append,
                            workers=cfg.data.workers if in_memory(rows) else 0)  # workers would interleave chunks
    if not in_memory(rows):
        y_true, weights = out.y_true, out.weight
        if len(y_true) != len(index):
            raise RunError(f"{file} changed since the run was trained: its {split} split now has {len(y_true)} "
                           f"rows, not {len(index)}")
    names = class_names(cfg.data.class_names, data.classes)
    target = cfg.data.target or "target"
    outputs = output_frame(out.y_prob, task, data.classes, target, names=names)
    if task != "regression":  # the predicted and true class as the data's labels
        labels = np.array(data.classes, dtype=object)
        outputs[PREDICTED] = labels[out.y_prob.argmax(axis=1)]
        outputs["true"] = labels[np.asarray(y_true).astype(np.int64).reshape(-1)]
    else:
        y = np.asarray(y_true).reshape(len(out.y_prob), -1)
        for j in range(y.shape[1]):
            outputs[f"true_{target}" if y.shape[1] == 1 else f"true_{j}"] = y[:, j]
    if weights is not None:
        outputs["weight"] = weights
    passthrough = _passthrough(file, index, cfg.data, run.labels.get("feature_names"))
    clashes = [c for c in outputs.columns if c in passthrough.columns]
    outputs = outputs.rename(columns={c: f"dlcli_{c}" for c in clashes})
    table = pd.concat([passthrough.reset_index(drop=True), outputs], axis=1)
    if output is not None:
        write_table(table, Path(output), notes)
    return Predictions(table, list(outputs.columns), task, chosen, epoch, notes)


def _passthrough(file: str, index: np.ndarray, data, feature_names: list[str] | None) -> pd.DataFrame:
    """The file's columns that are not features (target and weight included), rows `index`, as the file holds
    them; a `row` column (1 = the first data row) for data that is no file (a scikit-learn set)."""
    if not Path(file).is_file():
        return pd.DataFrame({"row": index + 1})
    origin = Origin(file, "path", data, main=False)
    features = set(source_columns(feature_names or []))
    with open_table(origin) as table:
        others = table.flat([n for n in table.names if n not in features])
        block = table.read_exact(others)  # csv: the text of each field, never parsed into a number
        frame = block if isinstance(block, pd.DataFrame) else pd.DataFrame({n: np.asarray(block[n]) for n in others})
    frame = frame[others].iloc[index].reset_index(drop=True)
    frame.insert(0, "file_row" if "row" in frame.columns else "row", index + 1)  # 1 = the file's first data row
    return frame
