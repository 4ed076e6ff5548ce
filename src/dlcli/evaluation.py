"""`evaluate`: a trained run's checkpoint on one split (or another file), with every metric of its task."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from . import runs
from .batches import evaluate_split, resolve_device
from .build import prepare, stored_fit
from .config import load_config
from .data import load_rows
from .errors import DataError, RunError, SpecError
from .metrics import report


def evaluate(run_dir: str | Path, *, split: str = "test", data: str | Path | None = None,
             checkpoint: str = "best", device: str | None = None, write: bool = True,
             plots: bool = True) -> dict:
    """Evaluate a run; returns (and writes to RUN_DIR/evaluation.json) the metrics.

    With `plots` (and `write`), the learning curves and this evaluation's plots go to RUN_DIR/plots/,
    listed under "plots" in the result.
    """
    run = runs.open_run(run_dir)
    cfg = load_config(run / runs.CONFIG)
    scaler, labels = stored_fit(run)
    classes = labels.get("classes")
    setup = prepare(cfg, scaler=scaler, classes=classes, fill=labels.get("fill"))
    task = setup.task

    if data is not None:
        path = Path(data).resolve()
        with _data_file_errors(path):
            rows = load_rows(path, cfg.data, task=task, scaler=scaler, classes=classes,
                             feature_names=labels.get("feature_names"), fill=labels.get("fill"))
        split_name = str(path)
    else:
        if split not in setup.data.splits:
            have = ", ".join(setup.data.splits)
            raise RunError(f"{run}: the data has no {split} split (it has {have}); set data.split.{split} when "
                           f"training, pass --split with one of {have}, or --data FILE")
        rows = setup.data.splits[split]  # (x, y) arrays, or a torch Dataset (streamed tables, images)
        split_name = split

    dev = resolve_device(device or "auto")
    model = setup.model
    chosen, epoch = load_checkpoint(run, model, checkpoint, dev)
    loss_fn = setup.loss.to(dev)

    loss, outputs = evaluate_split(model, loss_fn, rows, task, cfg.train.eval_batch_size, dev,
                                   workers=cfg.data.workers)
    result = report(outputs)
    result = {
        "split": split_name,
        "checkpoint": chosen,
        "epoch": epoch,
        "task": task,
        "n_samples": int(len(outputs.y_true)),
        "metrics": {"loss": loss, **result["metrics"]},
        **({"confusion_matrix": result["confusion_matrix"], "classes": classes} if "confusion_matrix" in result
           else {}),
        "evaluated": runs.now(),
    }
    if write and plots:
        from .plots import safe_stem, write_evaluation_plots  # matplotlib only when plots are drawn

        target = cfg.data.target if isinstance(cfg.data.target, str) else None
        result["plots"] = write_evaluation_plots(
            run, outputs, split if data is None else safe_stem(data), classes=classes,
            target_names=[target] if target else None, title=cfg.name or run.parent.name)
    if write:
        runs.write_json(run / runs.EVALUATION, result)
    return result


def load_checkpoint(run: Path, model: torch.nn.Module, checkpoint: str, device: torch.device) -> tuple[str, int]:
    """Load RUN/checkpoints/<checkpoint>.pt into `model`, moved to `device`: (the checkpoint used, its epoch).

    `best` falls back to `last` for a run without validation data, which never saves a best.
    """
    chosen = checkpoint
    ckpt = run / runs.CHECKPOINTS / f"{checkpoint}.pt"
    if checkpoint == "best" and not ckpt.exists():
        ckpt, chosen = run / runs.CHECKPOINTS / "last.pt", "last"
    if not ckpt.exists():
        raise RunError(f"{run}: no {checkpoint} checkpoint ({ckpt} is missing)")
    saved = torch.load(ckpt, map_location=device, weights_only=False)
    model.to(device).load_state_dict(saved["model"])
    return chosen, saved["state"]["epoch"]


@contextmanager
def _data_file_errors(path: Path):
    """Problems in a --data file are the file's, not the run config's: name the file."""
    try:
        yield
    except SpecError as exc:
        raise DataError(f"{path}: {exc}") from None
