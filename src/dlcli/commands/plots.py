"""Every figure dlcli draws, rendered to PNG bytes: learning curves, ROC, confusion matrix, score
distributions and predicted-vs-true.

matplotlib is used through its object API (`Figure`, drawn by the Agg canvas that `savefig` picks for
PNG), never through pyplot: no global backend is set, no window opens, and it works without a display.
Import this module lazily; `dlcli --help` never loads matplotlib.

Sizes are fixed, at DPI dots per inch, so a figure's pixel size is known in advance. Figures with one
panel per quantity, class or target lay their panels out COLUMNS to a row, each panel the given size:
n panels make a figure of min(n, COLUMNS) * width by ceil(n / COLUMNS) * height.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import runs
from ..errors import RunError
from ..registry import CLASSIFICATION
from .reports import CURVE_PREFIXES, curve, quantities

if TYPE_CHECKING:  # scikit-learn loads only for evaluation plots: `compare` starts faster without it
    from ..nn.metrics import Outputs

DPI = 100
COLUMNS = 3  # panels per row
CURVE_PANEL = (4.0, 3.0)  # inches, a learning-curve panel (400 x 300 px)
ROC_SIZE = (5.0, 5.0)  # 500 x 500 px
CONFUSION_SIZE = (6.0, 5.0)  # 600 x 500 px
SCORES_SIZE = (6.0, 4.0)  # binary, or pooled multi-class: 600 x 400 px
SCORE_PANEL = (4.0, 3.0)  # multi-class, a panel per class
PRED_PANEL = (4.0, 4.0)  # regression, a panel per target
MAX_PANELS = 12  # more classes than this: one pooled score panel; more targets: the first 12 drawn
SCATTER_MAX = 20_000  # points drawn in a scatter plot (a seeded random subset beyond that)
ANNOTATE_MAX = 20  # classes up to which the confusion matrix cells show their counts


def grid_size(n: int, panel: tuple[float, float]) -> tuple[float, float]:
    """Figure size in inches of n panels laid out COLUMNS to a row."""
    return min(n, COLUMNS) * panel[0], math.ceil(n / COLUMNS) * panel[1]


def to_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)  # no bbox_inches="tight": it would change the size
    return buffer.getvalue()


def _grid(n: int, panel: tuple[float, float]):
    fig = Figure(figsize=grid_size(n, panel), dpi=DPI, layout="constrained")
    rows, cols = math.ceil(n / COLUMNS), min(n, COLUMNS)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


SCORE_BINS = 40


def score_bins(*scores: np.ndarray) -> np.ndarray:
    """Bin edges for classifier outputs: [0, 1], or the outputs' own range when they fill less than half of
    it (a weighted training's probabilities can all lie below 0.1, as TMVA bins a response by its range)."""
    values = [v for v in scores if len(v)]
    low = min(float(v.min()) for v in values) if values else 0.0
    high = max(float(v.max()) for v in values) if values else 1.0
    if high - low >= 0.5 or high <= low:
        return np.linspace(0, 1, SCORE_BINS + 1)
    pad = 0.02 * (high - low)
    return np.linspace(max(0.0, low - pad), min(1.0, high + pad), SCORE_BINS + 1)


def log_y(ax) -> None:
    """A log y axis with ticks at the decades only: matplotlib's minor ticks on a log axis (eight a decade,
    each a text object) cost more to draw than the rest of a plot."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    low, high = ax.dataLim.intervaly  # call it once the data are drawn
    ax.set_yscale("log")
    if low > 0 and high / low < 100:  # under two decades: 1, 2 and 5 of each, else a single labelled tick
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def panel_grid(n: int, panel: tuple[float, float]):
    """(figure, n axes) laid out COLUMNS to a row, each panel `panel` inches."""
    return _grid(n, panel)


# ----------------------------------------------------------------------------------------------
# Learning curves: one run (evaluate) or several overlaid (compare)


def learning_curves(histories: list[tuple[str, list[dict]]], title: str | None = None, *,
                    best_epoch: int | None = None, losses: list[str | None] | None = None) -> bytes | None:
    """A panel per quantity (loss, each metric), train dashed and validation solid, a colour per run.

    `histories` is [(label, metrics.csv rows)]; None when no run has a train_ or val_ column yet.
    `losses` names each run's loss: runs with different losses get a loss panel each (a 5e-5 mse next
    to a 0.6 cross-entropy would be a flat line), and a loss panel spanning over a decade (another positive
    quantity: two decades, e.g. the mae of targets in GeV and in TeV) is drawn on a log axis. `best_epoch`
    (one run) is marked on every panel.
    """
    losses = losses or [None] * len(histories)
    names: list = []
    for _, rows in histories:
        names += [q for q in quantities(rows) if q not in names]
    loss_names = list(dict.fromkeys(losses))
    panels: list[tuple[str, str | None]] = []  # (quantity, the loss it shows, when the runs' losses differ)
    for q in sorted(names, key=lambda q: q != "loss"):
        panels += [(q, loss) for loss in loss_names] if q == "loss" and len(loss_names) > 1 else [(q, None)]
    if not panels:
        return None
    fig, axes = _grid(len(panels), CURVE_PANEL)
    colours = [f"C{i % 10}" for i in range(len(histories))]
    for ax, (quantity, only) in zip(axes, panels):
        drawn: list[float] = []
        for colour, (_, rows), loss in zip(colours, histories, losses):
            if only is not None and loss != only:
                continue
            for prefix, style in zip(CURVE_PREFIXES, ("--", "-")):
                epochs, values = curve(rows, prefix + quantity)
                if epochs:
                    ax.plot(epochs, values, linestyle=style, color=colour, marker="." if len(epochs) < 40 else None)
                    drawn += [v for v in values if v == v]
        if quantity == "loss":
            named = only or (losses[0] if len(loss_names) == 1 else None)
            ax.set_ylabel(f"loss ({named})" if named else "loss")
            if drawn and min(drawn) > 0 and max(drawn) / min(drawn) > 10:
                log_y(ax)
        else:
            ax.set_ylabel(quantity)
            if drawn and min(drawn) > 0 and max(drawn) / min(drawn) > 100:  # an error of runs on different scales
                log_y(ax)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="C3", linewidth=1, linestyle=":")
        ax.set_title(quantity if only is None else f"loss: {only}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color="0.3", linestyle="--", label="train"),
               Line2D([], [], color="0.3", linestyle="-", label="validation")]
    if len(histories) > 1:
        handles = [Line2D([], [], color=c, label=label) for c, (label, _) in zip(colours, histories)] + handles
    if best_epoch is not None:
        handles.append(Line2D([], [], color="C3", linestyle=":", label=f"best epoch {best_epoch}"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize="small")
    if title:
        fig.suptitle(title)
    return to_png(fig)


# ----------------------------------------------------------------------------------------------
# Classification


@dataclass
class RocCurve:
    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


def class_names(outputs: Outputs, classes: list | None) -> list[str]:
    n = outputs.y_prob.shape[1]
    return [str(c) for c in classes] if classes and len(classes) == n else [str(i) for i in range(n)]


def roc_curves(outputs: Outputs, classes: list | None = None) -> list[RocCurve]:
    """The positive class against the other for binary; each class against the rest for multi-class.

    A class that is absent from the split (or the only one present) has no curve: its ROC is undefined.
    """
    from ..nn.physics import roc_points, weighted_auc

    names = class_names(outputs, classes)
    targets = [1] if outputs.task == "binary" else range(len(names))
    curves = []
    for c in targets:
        positive = outputs.y_true == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _, _, _ = roc_points(positive, outputs.y_prob[:, c], outputs.weight)  # weighted, if weights
        label = f"{names[1]} vs {names[0]}" if outputs.task == "binary" else names[c]
        curves.append(RocCurve(label, fpr, tpr, weighted_auc(positive, outputs.y_prob[:, c], outputs.weight)))
    return curves


def roc_plot(outputs: Outputs, classes: list | None = None, title: str = "") -> bytes | None:
    curves = roc_curves(outputs, classes)
    if not curves:
        return None
    fig = Figure(figsize=ROC_SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for c in curves:
        ax.plot(c.fpr, c.tpr, label=f"{c.label} (AUC {c.auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="0.5", label="chance (AUC 0.5)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", aspect="equal")
    ax.grid(alpha=0.3)
    if outputs.task == "binary":
        heading = f"ROC curve, AUC {curves[0].auc:.3f}"
    else:
        heading = f"ROC one-vs-rest, mean AUC {np.mean([c.auc for c in curves]):.3f}"
    ax.set_title(f"{heading}\n{title}" if title else heading, fontsize="medium")
    if len(curves) <= MAX_PANELS:
        ax.legend(loc="lower right", fontsize="small")
    return to_png(fig)


def confusion_plot(outputs: Outputs, classes: list | None = None, title: str = "") -> bytes:
    from sklearn import metrics as skm

    names = class_names(outputs, classes)
    matrix = skm.confusion_matrix(outputs.y_true, outputs.y_pred, labels=list(range(len(names))),
                                  sample_weight=outputs.weight)
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(totals != 0, matrix / np.where(totals == 0, 1, totals), 0.0)
    fig = Figure(figsize=(CONFUSION_SIZE[0] * 2, CONFUSION_SIZE[1]), dpi=DPI, layout="constrained")
    weighted = outputs.weight is not None
    for k, (values, what) in enumerate([(matrix, "sum of weights" if weighted else "count"),
                                        (normalised, "share of the true class (row-normalised)")]):
        ax = fig.add_subplot(1, 2, k + 1)
        image = ax.imshow(values, cmap="Blues", vmin=0 if k else None, vmax=1 if k else None)
        fig.colorbar(image, ax=ax, label=what)
        ticks = range(len(names))
        long_names = max(map(len, names)) > 3
        ax.set_xticks(ticks, names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
        ax.set_yticks(ticks, names)
        ax.set(xlabel="predicted class", ylabel="true class")
        if len(names) <= ANNOTATE_MAX:
            # Dark text on light cells, white on dark ones, so every count stays readable.
            threshold = values.max() / 2 if values.max() else 1
            size = "medium" if len(names) <= 8 else "x-small"
            for (i, j), n in np.ndenumerate(values):
                text = f"{n:.2f}" if k else (f"{n:.4g}" if weighted else str(n))
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if n > threshold else "black")
        ax.set_title(what, fontsize="medium")
    heading = f"confusion matrix, {len(outputs.y_true)} rows" + (" (weighted)" if weighted else "")
    fig.suptitle(f"{heading}: {title}" if title else heading)
    return to_png(fig)


def scores_plot(outputs: Outputs, classes: list | None = None, title: str = "") -> bytes:
    """The classifier output per true class, density-normalised: the lecture's signal/background plot.

    Binary: p(positive class) for the rows of each true class. Multi-class: a panel per class c with
    p(c) for the rows of class c against the rows of every other class (one-vs-rest, as the ROC);
    above MAX_PANELS classes, one panel pooling all classes: the probability a row's true class got
    against the probabilities its other classes got.
    """
    names = class_names(outputs, classes)
    y, p, w = outputs.y_true, outputs.y_prob, outputs.weight
    bins = np.linspace(0, 1, SCORE_BINS + 1)
    if outputs.task == "binary":
        bins = score_bins(p[:, 1])
        fig = Figure(figsize=SCORES_SIZE, dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        _histograms(ax, bins, [(p[y == c, 1], names[c], None if w is None else w[y == c]) for c in (0, 1)])
        ax.set_xlabel(f"classifier output p({names[1]})")
        axes = [ax]
    elif len(names) <= MAX_PANELS:
        fig, axes = _grid(len(names), SCORE_PANEL)
        for c, ax in enumerate(axes):
            _histograms(ax, bins, [(p[y == c, c], names[c], None if w is None else w[y == c]),
                                   (p[y != c, c], "other classes", None if w is None else w[y != c])])
            ax.set_xlabel(f"p({names[c]})")
    else:
        fig = Figure(figsize=SCORES_SIZE, dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        own = np.zeros_like(p, dtype=bool)
        own[np.arange(len(y)), y] = True
        wide = None if w is None else np.broadcast_to(w[:, None], p.shape)
        _histograms(ax, bins, [(p[own], "p(true class)", None if wide is None else wide[own]),
                               (p[~own], "p(other classes)", None if wide is None else wide[~own])])
        ax.set_xlabel(f"classifier output, all {len(names)} classes pooled")
        axes = [ax]
    for ax in axes:
        ax.set_ylabel("density (log)")
        log_y(ax)  # the tails, where a cut is made, are invisible on a linear axis
        ax.legend(fontsize="small")
    heading = "classifier output by true class" + (" (weighted)" if w is not None else "")
    fig.suptitle(f"{heading}: {title}" if title else heading)
    return to_png(fig)


def _histograms(ax, bins, samples) -> None:
    for i, sample in enumerate(samples):
        values, label = sample[:2]
        weights = sample[2] if len(sample) > 2 else None
        if len(values) == 0:
            continue
        label = f"{label} ({len(values)} events" + (f", Σw {weights.sum():.4g})" if weights is not None else ")")
        ax.hist(values, bins=bins, weights=weights, density=True, histtype="stepfilled", alpha=0.3, color=f"C{i}")
        ax.hist(values, bins=bins, weights=weights, density=True, histtype="step", linewidth=1.5, color=f"C{i}",
                label=label)
    ax.set_xlim(bins[0], bins[-1])
    ax.grid(alpha=0.3)


# ----------------------------------------------------------------------------------------------
# Regression


def pred_vs_true_plot(outputs: Outputs, names: list[str] | None = None, title: str = "") -> bytes:
    """Predicted against true value, a panel per target (the first MAX_PANELS), with the line y = x."""
    from sklearn import metrics as skm

    y_true = outputs.y_true.reshape(len(outputs.y_true), -1)
    y_pred = outputs.y_prob.reshape(len(y_true), -1)
    k = y_true.shape[1]
    if not names or len(names) != k:
        names = ["target"] if k == 1 else [f"target {j}" for j in range(k)]
    rows = np.arange(len(y_true))
    if len(rows) > SCATTER_MAX:  # a scatter of millions of points is a blot and slow: draw a seeded sample
        rows = np.sort(np.random.default_rng(0).choice(rows, SCATTER_MAX, replace=False))
    shown = min(k, MAX_PANELS)
    fig, axes = _grid(shown, PRED_PANEL)
    for j, ax in enumerate(axes):
        t, p = y_true[:, j], y_pred[:, j]
        ax.scatter(t[rows], p[rows], s=8, alpha=0.5, edgecolors="none")
        low, high = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([low, high], [low, high], color="C3", linewidth=1, label="y = x")
        ax.set(xlabel=f"true {names[j]}", ylabel=f"predicted {names[j]}")
        ax.set_title(f"{names[j]}: R² {skm.r2_score(t, p):.3f}", fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    heading = "predicted vs true" + (f" (first {shown} of {k} targets)" if shown < k else "")
    fig.suptitle(f"{heading}: {title}" if title else heading)
    return to_png(fig)


# ----------------------------------------------------------------------------------------------
# What `evaluate` writes


def safe_stem(path: str | Path) -> str:
    """A --data file's stem as a file-name prefix: letters, digits, '.', '-', '_' kept, the rest '_'.

    A stem that is a split's name gets "-file" so the file's plots never overwrite that split's.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("._") or "data"
    return f"{stem}-file" if stem in ("train", "val", "test") else stem


def run_loss(run: Path) -> str | None:
    """The loss a run trained with, from its config.yaml (None when unreadable)."""
    import yaml

    try:
        loss = yaml.safe_load((Path(run) / runs.CONFIG).read_text()).get("loss")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return str(loss.get("name") if isinstance(loss, dict) else loss) if loss else None


def write_comparison(records: list, output: str | Path) -> bool:
    """`dlcli compare`: the runs' learning curves overlaid in one PNG; False when no run has a curve yet."""
    png = learning_curves([(r.label, r.rows) for r in records], f"learning curves of {len(records)} runs",
                          losses=[run_loss(r.path) for r in records])
    if png is None:
        return False
    runs.write_atomic(Path(output), png, make_folders=True)  # -o plots/x.png makes plots/, as it always did
    return True


def write_evaluation_plots(run: Path, outputs: Outputs, prefix: str, *, classes: list | None = None,
                           target_names: list[str] | None = None, title: str = "",
                           loss_name: str | None = None, best_epoch: int | None = None,
                           extra: dict[str, bytes | None] | None = None) -> tuple[list[str], str | None]:
    """Write the run's learning curves and the plots of one evaluation into RUN_DIR/plots/.

    `prefix` names the evaluated data (a split, or safe_stem of a file); `extra` holds more figures by name
    (physics_plots.py's), written as `<prefix>_<name>`. Returns the written paths,
    relative to the run directory, in the order written, and why the rest were not (a full disk, a
    read-only run, plots/ linked out of the run), or None: a plot that cannot be written stops the
    plots, not the evaluation, whose metrics are still saved.
    """
    run = Path(run)
    try:
        folder = runs.run_folder(run, runs.PLOTS)  # refused (a link out of the run) before anything is drawn
    except RunError as exc:
        return [], f"{exc}; no plots saved"
    figures: dict[str, bytes | None] = {}
    rows = runs.read_metrics(run / runs.METRICS) if (run / runs.METRICS).exists() else []
    figures["learning_curves.png"] = learning_curves([("", rows)], f"learning curves: {title}" if title else None,
                                                     best_epoch=best_epoch, losses=[loss_name])
    heading = f"{title}, {prefix}" if title else prefix
    if outputs.task in CLASSIFICATION:
        figures[f"{prefix}_roc.png"] = roc_plot(outputs, classes, heading)
        figures[f"{prefix}_confusion_matrix.png"] = confusion_plot(outputs, classes, heading)
        figures[f"{prefix}_scores.png"] = scores_plot(outputs, classes, heading)
    else:
        figures[f"{prefix}_pred_vs_true.png"] = pred_vs_true_plot(outputs, target_names, heading)
    figures.update({f"{prefix}_{name}": png for name, png in (extra or {}).items()})  # physics_plots.py's
    drawn = {name: data for name, data in figures.items() if data is not None}
    written: list[str] = []
    for name, data in drawn.items():
        try:
            runs.write_atomic(folder / name, data)
        except RunError as exc:
            return written, f"{exc}; {len(drawn) - len(written)} of {len(drawn)} plots not saved"
        written.append(f"{runs.PLOTS}/{name}")
    return written, None
