"""`evaluate`: a trained run's checkpoint on one split (or another file), with every metric of its task."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .. import runs
from ..data import load_rows
from ..engine.device import resolve_device
from ..engine.inference import evaluate_split
from ..engine.setup import prepare
from ..errors import DataError, RunError, SpecError
from ..nn.metrics import report
from ..runs.run import Run


def evaluate(run_dir: str | Path, *, split: str = "test", data: str | Path | None = None,
             checkpoint: str = "best", device: str | None = None, write: bool = True,
             plots: bool = True) -> dict:
    """Evaluate a run; returns (and writes to RUN_DIR/evaluation.json) the metrics.

    With `plots` (and `write`), the learning curves and this evaluation's plots go to RUN_DIR/plots/,
    listed under "plots" in the result.
    """
    run = Run.open(run_dir)
    cfg, fitted = run.config, run.fitted
    classes = fitted.classes
    setup = prepare(cfg, fitted=fitted)
    task = setup.task

    if data is not None:
        path = Path(data).resolve()
        with _data_file_errors(path):
            rows = load_rows(path, cfg.data, task=task, scaler=fitted.scaler, classes=classes,
                             feature_names=run.labels.get("feature_names"), fill=fitted.fill)
        split_name = str(path)
    else:
        if split not in setup.data.splits:
            have = ", ".join(setup.data.splits)
            raise RunError(f"{run.path}: the data has no {split} split (it has {have}); set data.split.{split} "
                           f"when training, pass --split with one of {have}, or --data FILE")
        rows = setup.data.splits[split]  # (x, y) arrays, or a torch Dataset (streamed tables, images)
        split_name = split

    dev = resolve_device(device or "auto")
    model = setup.model
    chosen, epoch = run.load_weights(model, checkpoint, dev)
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
            run.path, outputs, split if data is None else safe_stem(data), classes=classes,
            target_names=[target] if target else None, title=cfg.name or run.path.parent.name)
    if write:
        runs.write_json(run.path / runs.EVALUATION, result)
    return result


@contextmanager
def _data_file_errors(path: Path):
    """Problems in a --data file are the file's, not the run config's: name the file."""
    try:
        yield
    except SpecError as exc:
        raise DataError(f"{path}: {exc}") from None
