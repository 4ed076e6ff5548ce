"""Signal/background figures of merit, on weighted events: the ROC, its area, rejection and efficiency at a
working point, the HiggsML AMS, and the Kolmogorov-Smirnov overtraining test.

Event weights may be negative (NLO generators), which makes the ROC non-monotonic: scikit-learn's
`roc_auc_score` refuses that, so the ROC here is built from cumulative weight sums, and its
trapezoidal area equals the weighted Mann-Whitney statistic (pairs of a signal and a background
event, weighted w_s w_b, counted 1 when the signal scores higher and 1/2 on a tie) for any weights.
A working point is the first crossing of the curve, linearly interpolated between ROC points.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

SHARED_ROCS = 1  # ROCs shared_roc() keeps: a binary evaluation's one (each is ~5 arrays of the split's length)
_shared: list | None = None  # while shared_roc() is on: [(y, score, weight, roc points)], newest last


@contextmanager
def shared_roc():
    """Within it, roc_points of the same events (equal arrays, compared in full) is sorted once: evaluate's
    AUC, rejection, efficiency, AMS and both ROC plots are one sort of the split instead of six (each
    ~1.5 s at 10^7 rows). Outside it nothing is kept."""
    global _shared
    outer = _shared is not None
    if not outer:
        _shared = []
    try:
        yield
    finally:
        if not outer:
            _shared = None


def roc_points(y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(eps_B, eps_S, thresholds, total signal weight, total background weight): one point per distinct score,
    cutting `score >= threshold`, from (0, 0) (threshold +inf) to (1, 1). `y` 1 = signal."""
    y = np.asarray(y).reshape(-1) == 1
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    w = np.ones(len(score)) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    if _shared is not None:
        for seen_y, seen_score, seen_w, points in _shared:
            if len(seen_score) == len(score) and np.array_equal(seen_score, score) and \
                    np.array_equal(seen_y, y) and np.array_equal(seen_w, w):
                return points
    points = _roc(y, score, w)
    if _shared is not None:
        for array in points[:3]:
            array.setflags(write=False)  # shared by every caller: changing one in place would change the others'
        _shared[:] = [*_shared, (y, score, w, points)][-SHARED_ROCS:]
    return points


def _roc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    order = np.argsort(-score, kind="mergesort")
    score, y, w = score[order], y[order], w[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # the last event of each distinct score
    s = np.r_[0.0, np.cumsum(w * y)[last]]
    b = np.r_[0.0, np.cumsum(w * ~y)[last]]
    total_s, total_b = s[-1], b[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return b / total_b, s / total_s, np.r_[np.inf, score[last]], float(total_s), float(total_b)


def weighted_auc(y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """The ROC's area (trapezoids): the weighted Mann-Whitney statistic; NaN without both classes."""
    fpr, tpr, _, total_s, total_b = roc_points(y, score, weight)
    if not (total_s and total_b):
        return math.nan
    return trapezoid_auc(fpr, tpr)


def trapezoid_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The area under ROC points (eps_B, eps_S), by trapezoids."""
    if len(fpr) < 2 or not (np.isfinite(fpr).all() and np.isfinite(tpr).all()):
        return math.nan
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def crossing(along: np.ndarray, other: np.ndarray, level: float) -> float:
    """`other` where `along` first reaches `level`, linearly interpolated; NaN when it never does."""
    reached = np.flatnonzero(along >= level)
    if not len(reached) or not np.isfinite(level):
        return math.nan
    i = int(reached[0])
    if i == 0:
        return float(other[0])
    a0, a1, o0, o1 = along[i - 1], along[i], other[i - 1], other[i]
    return float(o1 if a1 == a0 else o0 + (o1 - o0) * (level - a0) / (a1 - a0))


def background_efficiency(y, score, weight=None, *, signal_efficiency: float) -> float:
    fpr, tpr, _, total_s, total_b = roc_points(y, score, weight)
    return crossing(tpr, fpr, signal_efficiency) if total_s and total_b else math.nan


def rejection_at(y, score, weight=None, *, eff: float = 0.5) -> float:
    """1/eps_B at signal efficiency `eff` (inf when no background passes)."""
    eps_b = background_efficiency(y, score, weight, signal_efficiency=eff)
    if math.isnan(eps_b):
        return math.nan
    return math.inf if eps_b <= 0 else 1.0 / eps_b


def efficiency_at(y, score, weight=None, *, rej: float = 100.0) -> float:
    """The signal efficiency where the background rejection 1/eps_B falls to `rej` (eps_B = 1/rej)."""
    fpr, tpr, _, total_s, total_b = roc_points(y, score, weight)
    return crossing(fpr, tpr, 1.0 / rej) if total_s and total_b else math.nan


def ams(s, b, b_reg: float = 10.0):
    """The HiggsML approximate median significance sqrt(2((s + b + b_r) ln(1 + s/(b + b_r)) - s))."""
    s, b = np.asarray(s, dtype=np.float64), np.asarray(b, dtype=np.float64) + b_reg
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = 2 * ((s + b) * np.log1p(s / b) - s)
        return np.sqrt(np.where(b > 0, inside, np.nan))


def best_ams(y, score, weight=None, *, b_reg: float = 10.0) -> tuple[float, float]:
    """(the largest AMS over the cuts score >= t, that threshold); s and b are weight sums (physical units)."""
    fpr, tpr, thresholds, total_s, total_b = roc_points(y, score, weight)
    values = ams(tpr * total_s if total_s else np.zeros_like(tpr), fpr * total_b if total_b else np.zeros_like(fpr),
                 b_reg)
    if not np.isfinite(values).any():
        return math.nan, math.nan
    i = int(np.nanargmax(values))
    return float(values[i]), float(thresholds[i])


def ks_test(a: np.ndarray, b: np.ndarray, wa: np.ndarray | None = None, wb: np.ndarray | None = None,
            ) -> tuple[float, float]:
    """(KS statistic, p-value) of two samples: scipy.stats.ks_2samp unweighted; with weights, the largest gap
    of the weighted distribution functions, its p-value from Kolmogorov's distribution at the effective
    sample sizes (sum w)^2 / sum w^2, as ks_2samp's asymptotic method does with counts."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    if wa is None and wb is None:
        result = stats.ks_2samp(a, b)
        return float(result.statistic), float(result.pvalue)
    wa = np.ones(len(a)) if wa is None else np.asarray(wa, dtype=np.float64).reshape(-1)
    wb = np.ones(len(b)) if wb is None else np.asarray(wb, dtype=np.float64).reshape(-1)
    values = np.concatenate([a, b])
    order = np.argsort(values, kind="mergesort")
    step_a = np.concatenate([wa / wa.sum(), np.zeros(len(b))])[order]
    step_b = np.concatenate([np.zeros(len(a)), wb / wb.sum()])[order]
    last = np.r_[np.flatnonzero(np.diff(values[order])), len(values) - 1]  # ties step together
    d = float(np.max(np.abs(np.cumsum(step_a)[last] - np.cumsum(step_b)[last])))
    n_a, n_b = wa.sum() ** 2 / np.sum(wa**2), wb.sum() ** 2 / np.sum(wb**2)
    en = max(1, round(n_a * n_b / (n_a + n_b)))
    return d, float(np.clip(stats.kstwo.sf(d, en), 0, 1))
