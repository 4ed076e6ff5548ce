"""`evaluate`: a trained run's checkpoint on one split (or another file), with every metric of its task."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .. import runs
from ..data import in_memory, load_rows
from ..data.labels import class_names
from ..engine.device import resolve_device
from ..engine.inference import evaluate_split
from ..engine.setup import prepare
from ..engine.tracking import log_run_files
from ..errors import DataError, RunError, SpecError
from ..nn.losses import counts_classes
from ..nn.metrics import report
from ..nn.physics import shared_roc
from ..registry import CLASSIFICATION
from ..runs.run import Run


def evaluate(run_dir: str | Path, *, split: str = "test", data: str | Path | None = None,
             checkpoint: str = "best", device: str | None = None, write: bool = True,
             plots: bool = True, note: Callable[[str], None] | None = None, threads: int | str | None = None) -> dict:
    """Evaluate a run; returns (and writes to RUN_DIR/evaluation.json) the metrics.

    With `plots` (and `write`), the learning curves and this evaluation's plots go to RUN_DIR/plots/,
    listed under "plots" in the result. What could not be saved (a full disk, a read-only run) does
    not lose the metrics: the result still comes back, with "not_saved": {file or folder: why}, and
    the CLI prints the metrics before it fails. `note` hears, before it happens, that a custom loss
    file is about to be imported (code that comes with the run's config), and the thread count chosen
    (`threads`, default the run's train.threads).
    """
    with shared_roc():  # the metrics and both ROC plots sort the split's scores once
        return _evaluate(run_dir, split, data, checkpoint, device, write, plots, note, threads)


def _evaluate(run_dir, split, data, checkpoint, device, write, plots, note, threads) -> dict:
    run = Run.open(run_dir)
    cfg, fitted = run.config, run.fitted
    classes = fitted.classes
    run.checkpoint(checkpoint)  # a missing or refused checkpoint fails before any code of the config runs
    source = custom_loss_source(cfg.loss)
    if source is not None and note is not None:
        note(f"imports the custom loss {source} (code from the run's config)")
    # On another file (--data) the training data is needed only where the loss weighs classes by its counts:
    # evaluating works after the training file, or its folder, has gone, as predicting does.
    need_data = data is None or counts_classes(cfg.loss)
    setup = prepare(cfg, need_data=need_data, fitted=fitted, input_shape=run.input_shape or None)
    task = setup.task

    weights = None
    if data is not None:
        path = Path(data).resolve()
        with _data_file_errors(path):
            rows, weights = load_rows(path, cfg.data, task=task, scaler=fitted.scaler, classes=classes,
                                      feature_names=run.labels.get("feature_names"), fill=fitted.fill,
                                      with_weights=True)
        split_name = str(path)
    else:
        if split not in setup.data.splits:
            have = ", ".join(setup.data.splits)
            raise RunError(f"{run.path}: the data has no {split} split (it has {have}); set data.split.{split} "
                           f"when training, pass --split with one of {have}, or --data FILE")
        # (x, y) arrays, or a torch Dataset (streamed tables, images); train.class_weight weighs the loss only:
        # the events' own weights here
        rows = setup.data.served(split, events=True)
        weights = setup.data.weight(split, events=True)
        split_name = split

    dev = resolve_device(device or "auto")
    model = setup.model
    chosen, epoch = run.load_weights(model, checkpoint, dev)
    loss_fn = setup.loss.to(dev)

    loss, outputs = evaluate_split(model, loss_fn, rows, task, cfg.train.eval_batch_size, dev,
                                   workers=cfg.data.workers, threads=threads or cfg.train.threads, note=note,
                                   weights=weights)
    if weights is not None:
        outputs.weight = weights  # the float64 weights, not the float32 copy the batches carried
    weights = outputs.weight  # a streamed split's come with its batches
    names = class_names(cfg.data.class_names, classes) if cfg.data is not None else None
    result = report(outputs, cfg.metric_names)
    result = {
        "split": split_name,
        "checkpoint": chosen,
        "epoch": epoch,
        "task": task,
        "n_samples": int(len(outputs.y_true)),
        "metrics": {"loss": loss, **result["metrics"]},
        **({"confusion_matrix": result["confusion_matrix"], "classes": classes} if "confusion_matrix" in result
           else {}),
        **({"class_names": names} if names and "confusion_matrix" in result else {}),
        **({"weighted": True, "sum_of_weights": float(weights.sum())} if weights is not None else {}),
        "evaluated": runs.now(),
    }
    not_saved = {}
    if write and plots:
        from . import physics_plots
        from .plots import safe_stem, write_evaluation_plots  # matplotlib only when plots are drawn

        target = cfg.data.target if isinstance(cfg.data.target, str) else None
        prefix = split if data is None else safe_stem(data)
        title = cfg.name or run.path.parent.name
        heading, shown = f"{title}, {prefix}", names or classes
        if task in CLASSIFICATION:
            extra = {"roc_rejection.png": physics_plots.hep_roc_plot(outputs, shown, heading)}
            if data is None and split != "train" and "train" in setup.data.splits:
                train_outputs = overtraining_sample(model, setup.data, cfg, dev)
                if train_outputs is not None:
                    result["overtraining"] = ks = physics_plots.ks_summary(train_outputs, outputs, shown)
                    extra["overtraining.png"] = physics_plots.overtraining_plot(train_outputs, outputs, shown, heading,
                                                                               ks)
        else:
            extra = {"residuals.png": physics_plots.residual_plot(outputs, [target] if target else None, heading)}
        result["plots"], problem = write_evaluation_plots(
            run.path, outputs, prefix, classes=shown, target_names=[target] if target else None, title=title,
            loss_name=loss_label(cfg.loss), best_epoch=run.info.get("best_epoch"), extra=extra)
        if problem:
            not_saved[runs.PLOTS] = problem
    if write:
        try:
            runs.write_json(run.path / runs.EVALUATION, result)
        except RunError as exc:
            not_saved[runs.EVALUATION] = str(exc)
        if not not_saved:  # a run tracked with MLflow gets this evaluation's files too
            log_run_files(run.path, [runs.EVALUATION], [runs.PLOTS] if plots else [], warn=note)
    return {**result, "not_saved": not_saved} if not_saved else result


OVERTRAINING_ROWS = 100_000  # train events the overtraining check draws at most (a seeded sample beyond)


def overtraining_sample(model, data, cfg, device):
    """The model's outputs on the train split (a seeded sample of OVERTRAINING_ROWS beyond that), with its
    event weights: the train side of the overtraining check. A streamed train split gives its first
    OVERTRAINING_ROWS rows in file order (a sample without a pass over the table); other splits that are
    not in memory (images) give None."""
    import numpy as np

    train = data.served("train", events=True)  # the events' own weights, not times train.class_weight's factors
    if in_memory(train):
        (x, y), w = train, data.weight("train", events=True)
    elif hasattr(train, "head"):
        x, y, w = train.head(OVERTRAINING_ROWS)
    else:
        return None
    if len(x) > OVERTRAINING_ROWS:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(len(x), OVERTRAINING_ROWS, replace=False))
        x, y, w = x[rows], y[rows], None if w is None else w[rows]
    _, out = evaluate_split(model, None, (x, y), data.task, cfg.train.eval_batch_size, device,
                            threads=cfg.train.threads, weights=w)
    if w is not None:
        out.weight = w
    return out


def loss_label(loss) -> str:
    """The loss's name for an axis label: `binary_crossentropy`, `focal`, ..."""
    return str(loss.get("name") if isinstance(loss, dict) else loss)


def custom_loss_source(loss) -> str | None:
    """The file (or module) a custom loss imports, as the run's config names it; None for a built-in loss."""
    if not (isinstance(loss, dict) and loss.get("name") == "custom"):
        return None
    where = str(loss.get("function", "")).rpartition(":")[0]
    return where if where.endswith(".py") else f"module {where}"


@contextmanager
def _data_file_errors(path: Path):
    """Problems in a --data file are the file's, not the run config's: name the file."""
    try:
        yield
    except SpecError as exc:
        message = str(exc)
        raise DataError(message if str(path) in message else f"{path}: {message}") from None
