"""The plots a physicist checks a classifier by, drawn by `evaluate` next to plots.py's: the ROC in HEP
convention (signal efficiency against background rejection 1/eps_B on a log axis, working points
marked), TMVA's overtraining check (train and test score distributions per class, with the
Kolmogorov-Smirnov p-value), and for regression the residual (resolution) histogram. Every one is
weighted by the events' weights (data.weight) when the evaluation has them.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..nn import physics
from ..nn.metrics import Outputs
from .plots import DPI, MAX_PANELS, SCORE_PANEL, SCORES_SIZE, log_y, panel_grid, score_bins, to_png

HEP_ROC_SIZE = (6.0, 5.0)
RESIDUAL_BINS = 40
WORKING_POINTS = (0.3, 0.5, 0.7, 0.9)  # signal efficiencies marked on the HEP ROC
ROC_POINTS_DRAWN = 1500  # a curve of a million points is drawn from this many of them


def names_of(outputs: Outputs, classes: list | None) -> list[str]:
    n = outputs.y_prob.shape[1]
    return [str(c) for c in classes] if classes and len(classes) == n else [str(i) for i in range(n)]


def hep_roc_plot(outputs: Outputs, classes: list | None = None, title: str = "") -> bytes | None:
    """Binary only: background rejection 1/eps_B (log) against signal efficiency eps_S."""
    if outputs.task != "binary" or len(np.unique(outputs.y_true)) < 2:
        return None
    names = names_of(outputs, classes)
    fpr, tpr, _, _, _ = physics.roc_points(outputs.y_true, outputs.y_prob[:, 1], outputs.weight)
    auc = physics.trapezoid_auc(fpr, tpr)
    eff, rej, hidden = drawable_rejection(fpr, tpr)
    if len(eff) > ROC_POINTS_DRAWN:
        pick = np.unique(np.linspace(0, len(eff) - 1, ROC_POINTS_DRAWN).astype(int))
        eff, rej = eff[pick], rej[pick]
    fig = Figure(figsize=HEP_ROC_SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(eff, rej, color="C0", label=f"{names[1]} vs {names[0]} (AUC {auc:.3f})")
    grid = np.linspace(0.01, 1, 100)
    ax.plot(grid, 1 / grid, linestyle=":", color="0.5", label="random guess (1/ε)")
    for point in WORKING_POINTS:  # as physics.rejection_at, on the points already computed
        eps_b = physics.crossing(tpr, fpr, point)
        r = np.inf if eps_b <= 0 else 1 / eps_b
        if np.isfinite(r) and r > 0:
            ax.plot([point], [r], "o", color="C3", markersize=5)
            ax.annotate(f"{r:.3g}", (point, r), textcoords="offset points", xytext=(4, 6), fontsize="small")
    ax.plot([], [], "o", color="C3", markersize=5, label="working points: 1/ε_B at ε_S")
    log_y(ax)
    if hidden:
        ax.text(0.02, 0.02, f"{hidden} cut{'s' if hidden > 1 else ''} with ε_B ≤ 0 (negative weights) not drawn",
                transform=ax.transAxes, fontsize="x-small", color="0.3")
    ax.set(xlim=(0, 1), xlabel=f"signal efficiency ε_S ({names[1]})",
           ylabel=f"background rejection 1/ε_B ({names[0]})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    heading = "ROC, HEP convention" + (" (weighted)" if outputs.weight is not None else "")
    ax.set_title(f"{heading}\n{title}" if title else heading, fontsize="medium")
    return to_png(fig)


def drawable_rejection(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(eps_S, 1/eps_B, cuts not drawn) of ROC points: from the first cut with a background weight sum above
    0; a later cut whose sum is at or below 0 (negative weights) is a gap (NaN). Not drawn and counted: those
    gaps, and cuts before the first whose sum is below 0; the cuts that let no background through at all
    (a sum of exactly 0: rejection without bound) are not counted."""
    keep = fpr > 0
    first = int(np.argmax(keep)) if keep.any() else len(fpr)
    hidden = int(np.sum(fpr[:first] < 0) + np.sum(~keep[first:]))
    with np.errstate(divide="ignore"):
        return tpr[first:], np.where(keep[first:], 1 / fpr[first:], np.nan), hidden


def _class_scores(outputs: Outputs, c: int, score_of: int) -> tuple[np.ndarray, np.ndarray | None]:
    rows = outputs.y_true == c
    return outputs.y_prob[rows, score_of], None if outputs.weight is None else outputs.weight[rows]


def ks_summary(train: Outputs, test: Outputs, classes: list | None = None) -> dict:
    """Per class: the KS statistic and p-value of its train against its test score distribution
    (p(signal) for binary, p(class) for multi-class): TMVA's overtraining test."""
    names = names_of(test, classes)
    result = {}
    for c, score_of in _panels(test):
        a, wa = _class_scores(train, c, score_of)
        b, wb = _class_scores(test, c, score_of)
        d, p = physics.ks_test(a, b, wa, wb)
        result[names[c]] = {"ks": d, "p_value": p}
    return result


def _panels(outputs: Outputs) -> list[tuple[int, int]]:
    """(class, the score column drawn for it): both classes on p(signal) for binary, p(c) for class c."""
    if outputs.task == "binary":
        return [(0, 1), (1, 1)]
    return [(c, c) for c in range(min(outputs.y_prob.shape[1], MAX_PANELS))]


def _density(values: np.ndarray, weights: np.ndarray | None, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A histogram normalised to unit area, and each bin's statistical error sqrt(sum w^2), likewise scaled."""
    w = np.ones(len(values)) if weights is None else weights
    counts, _ = np.histogram(values, bins=bins, weights=w)
    squares, _ = np.histogram(values, bins=bins, weights=w * w)
    scale = 1 / (w.sum() * np.diff(bins)) if w.sum() else np.zeros(len(bins) - 1)
    return counts * scale, np.sqrt(squares) * scale


def overtraining_plot(train: Outputs, test: Outputs, classes: list | None = None, title: str = "",
                      ks: dict | None = None) -> bytes | None:
    """Train (filled histograms) against test (points with error bars) score distributions per class,
    KS p-values (`ks`: ks_summary's, computed when not given) in the legend; binary: both classes in one
    panel of p(signal)."""
    if len(test.y_true) == 0 or len(train.y_true) == 0:
        return None
    names = names_of(test, classes)
    ks = ks if ks is not None else ks_summary(train, test, classes)
    panels = _panels(test)
    if test.task == "binary":
        fig = Figure(figsize=SCORES_SIZE, dpi=DPI, layout="constrained")
        axes = [fig.add_subplot()] * 2
    else:
        fig, axes = panel_grid(len(panels), SCORE_PANEL)
    for i, ((c, score_of), ax) in enumerate(zip(panels, axes)):
        colour = f"C{i if test.task == 'binary' else 0}"
        a, wa = _class_scores(train, c, score_of)
        b, wb = _class_scores(test, c, score_of)
        if i == 0 or test.task != "binary":  # binary: both classes on one axis, binned alike
            bins = score_bins(train.y_prob[:, score_of], test.y_prob[:, score_of])
            centres = (bins[1:] + bins[:-1]) / 2
        train_density, _ = _density(a, wa, bins)
        test_density, errors = _density(b, wb, bins)
        ax.stairs(train_density, bins, fill=True, alpha=0.3, color=colour, label=f"{names[c]} (train)")
        p = ks[names[c]]["p_value"]
        ax.errorbar(centres, test_density, yerr=errors, fmt="o", markersize=3, color=colour, elinewidth=1,
                    label=f"{names[c]} (test), KS p = {p:.3g}")
        ax.set(xlim=(bins[0], bins[-1]), xlabel=f"classifier output p({names[score_of]})",
               ylabel="normalised to unit area (log)")
        log_y(ax)  # the tails, where a cut is made, are where overtraining shows
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    heading = "overtraining check: train vs test" + (" (weighted)" if test.weight is not None else "")
    fig.suptitle(f"{heading}: {title}" if title else heading)
    return to_png(fig)


def residual_plot(outputs: Outputs, names: list[str] | None = None, title: str = "") -> bytes:
    """Regression: the histogram of predicted minus true per target, with its mean and standard deviation."""
    y_true = outputs.y_true.reshape(len(outputs.y_true), -1).astype(np.float64)
    residual = outputs.y_prob.reshape(len(y_true), -1).astype(np.float64) - y_true
    k = residual.shape[1]
    if not names or len(names) != k:
        names = ["target"] if k == 1 else [f"target {j}" for j in range(k)]
    shown = min(k, MAX_PANELS)
    fig, axes = panel_grid(shown, SCORE_PANEL)
    w = outputs.weight
    for j, ax in enumerate(axes):
        r = residual[:, j]
        mean = np.average(r, weights=w) if len(r) else np.nan
        std = np.sqrt(np.average((r - mean) ** 2, weights=w)) if len(r) else np.nan
        ax.hist(r, bins=RESIDUAL_BINS, weights=w, histtype="stepfilled", alpha=0.4, color="C0",
                label=f"mean {mean:.3g}\nstd {std:.3g}")
        ax.axvline(0, color="0.4", linewidth=1, linestyle=":")
        ax.set(xlabel=f"predicted - true {names[j]}", ylabel="events" + (" (weighted)" if w is not None else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    heading = "residuals (resolution)"
    fig.suptitle(f"{heading}\n{title}" if title else heading, fontsize="medium")
    return to_png(fig)
