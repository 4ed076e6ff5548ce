"""`evaluate`: a trained run's checkpoint on one split (or another file), with every metric of its task."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from . import runs
from .build import prepare, stored_fit
from .config import load_config
from .data import load_rows
from .errors import DataError, RunError, SpecError
from .metrics import report
from .trainer import evaluate_tensors, resolve_device, to_tensors


def evaluate(run_dir: str | Path, *, split: str = "test", data: str | Path | None = None,
             checkpoint: str = "best", device: str | None = None, write: bool = True) -> dict:
    """Evaluate a run; returns (and writes to RUN_DIR/evaluation.json) the metrics."""
    run = runs.open_run(run_dir)
    cfg = load_config(run / runs.CONFIG)
    scaler, labels = stored_fit(run)
    classes = labels.get("classes")
    setup = prepare(cfg, scaler=scaler, classes=classes)
    task = setup.task

    if data is not None:
        path = Path(data).resolve()
        with _data_file_errors(path):
            x, y = load_rows(path, cfg.data, task=task, scaler=scaler, classes=classes,
                             feature_names=labels.get("feature_names"))
        split_name = str(path)
    else:
        if split not in setup.data.splits:
            have = ", ".join(setup.data.splits)
            raise RunError(f"{run}: the data has no {split} split (it has {have}); set data.split.{split} when "
                           f"training, pass --split with one of {have}, or --data FILE")
        x, y = setup.data.splits[split]
        split_name = split

    chosen = checkpoint
    ckpt = run / runs.CHECKPOINTS / f"{checkpoint}.pt"
    if checkpoint == "best" and not ckpt.exists():
        ckpt, chosen = run / runs.CHECKPOINTS / "last.pt", "last"  # no validation data: best is last
    if not ckpt.exists():
        raise RunError(f"{run}: no {checkpoint} checkpoint ({ckpt} is missing)")
    dev = resolve_device(device or "auto")
    saved = torch.load(ckpt, map_location=dev, weights_only=False)
    model = setup.model.to(dev)
    model.load_state_dict(saved["model"])
    loss_fn = setup.loss.to(dev)

    loss, outputs = evaluate_tensors(model, loss_fn, to_tensors(x, y, task, dev), task, cfg.train.eval_batch_size)
    result = report(outputs)
    result = {
        "split": split_name,
        "checkpoint": chosen,
        "epoch": saved["state"]["epoch"],
        "task": task,
        "n_samples": int(len(x)),
        "metrics": {"loss": loss, **result["metrics"]},
        **({"confusion_matrix": result["confusion_matrix"], "classes": classes} if "confusion_matrix" in result
           else {}),
        "evaluated": runs.now(),
    }
    if write:
        runs.write_json(run / runs.EVALUATION, result)
    return result


@contextmanager
def _data_file_errors(path: Path):
    """Problems in a --data file are the file's, not the run config's: name the file."""
    try:
        yield
    except SpecError as exc:
        raise DataError(f"{path}: {exc}") from None
