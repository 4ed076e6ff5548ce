"""Event weights and the figures of merit, against independent computations: a weighted Mann-Whitney
statistic written here in numpy, scikit-learn with sample_weight, numpy interpolation of ROC points,
the AMS worked by hand, scipy.stats.ks_2samp. All in-process and fast (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.config import load_config
from dlcli.data.labels import class_names
from dlcli.data.tables import Origin, read_rows
from dlcli.data.tables.weights import class_factors
from dlcli.errors import SpecError
from dlcli.nn import physics
from dlcli.nn.losses import LossContext, build_loss
from dlcli.nn.metrics import METRICS, Outputs, compute, report


def events(n=400, seed=0, negative=0.0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.uint8)
    score = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).round(2)  # rounded: ties, as real scores have
    w = rng.exponential(1.0, n) + 0.05
    w[rng.random(n) < negative] *= -1
    return y, score, w


def mann_whitney(y, score, w):
    """sum over (signal, background) pairs of w_s w_b ([s_s > s_b] + [s_s == s_b] / 2), over W_s W_b."""
    s, b = score[y == 1], score[y == 0]
    ws, wb = w[y == 1], w[y == 0]
    wins = (s[:, None] > b[None, :]) + 0.5 * (s[:, None] == b[None, :])
    return float((ws[:, None] * wb[None, :] * wins).sum() / (ws.sum() * wb.sum()))


def test_weighted_auc_is_the_weighted_mann_whitney_statistic_even_with_negative_weights():
    y, score, w = events(negative=0.15)
    assert (w < 0).sum() > 20
    with pytest.raises(ValueError):  # what scikit-learn does with such a ROC, and the reason for our own
        skm.roc_auc_score(y, score, sample_weight=w)
    assert physics.weighted_auc(y, score, w) == pytest.approx(mann_whitney(y, score, w), abs=1e-12)
    y, score, w = events(seed=1)  # positive weights: scikit-learn agrees
    assert physics.weighted_auc(y, score, w) == pytest.approx(skm.roc_auc_score(y, score, sample_weight=w), abs=1e-12)
    assert physics.weighted_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)


def test_rejection_and_efficiency_from_the_roc_points_by_hand():
    y, score, w = events(n=2000, seed=2)
    score = score + np.random.default_rng(3).normal(0, 1e-3, len(score))  # distinct scores
    fpr, tpr, _ = skm.roc_curve(y, score, sample_weight=w, drop_intermediate=False)
    for eff in (0.3, 0.5, 0.77):
        assert physics.rejection_at(y, score, w, eff=eff) == pytest.approx(1 / np.interp(eff, tpr, fpr), rel=1e-9)
    for rej in (5.0, 20.0):
        assert physics.efficiency_at(y, score, w, rej=rej) == pytest.approx(np.interp(1 / rej, fpr, tpr), rel=1e-9)
    out = Outputs("binary", y, np.c_[1 - score, score], w)
    got = compute(["rejection@eff=0.5", "efficiency@rej=20"], out)
    assert got == {"rejection@eff=0.5": pytest.approx(1 / np.interp(0.5, tpr, fpr), rel=1e-9),
                   "efficiency@rej=20": pytest.approx(np.interp(0.05, fpr, tpr), rel=1e-9)}


def test_ams_worked_by_hand():
    # signal 0.9 (w 1), 0.8 (w 1); background 0.7 (w 2), 0.1 (w 3); b_reg = 1. The cuts score >= t give
    # t=0.9: s=1, b=0: sqrt(2 (2 ln 2 - 1))          = 0.878971
    # t=0.8: s=2, b=0: sqrt(2 (3 ln 3 - 2))          = 1.609868   <- the best
    # t=0.7: s=2, b=2: sqrt(2 (5 ln(5/3) - 2))       = 1.052738
    # t=0.1: s=2, b=5: sqrt(2 (8 ln(4/3) - 2))       = 0.776475
    y, score, w = np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.7, 0.1]), np.array([1.0, 1, 2, 3])
    assert physics.ams([1, 2, 2, 2], [0, 0, 2, 5], 1.0) == pytest.approx([0.878971, 1.609868, 1.052738, 0.776475],
                                                                      abs=1e-6)
    assert physics.best_ams(y, score, w, b_reg=1.0) == pytest.approx((1.609868, 0.8), abs=1e-6)
    out = Outputs("binary", y, np.c_[1 - score, score], w)
    assert compute(["ams@b_reg=1"], out)["ams@b_reg=1"] == pytest.approx(1.609868, abs=1e-6)
    # HiggsML's default b_reg = 10, at t = 0.8: sqrt(2 ((2 + 10) ln(1 + 2/10) - 2))
    assert compute(["ams"], out)["ams"] == pytest.approx(math.sqrt(2 * (12 * math.log(1.2) - 2)), abs=1e-9)


def test_metric_names_carry_their_parameters():
    assert METRICS.check("rejection@eff=0.3") == ({"name": "rejection@eff=0.3"}, [])
    assert METRICS.check({"name": "ams", "b_reg": 5}) == ({"name": "ams@b_reg=5"}, [])
    checked, problems = METRICS.check("rejection@eff=1.5")
    assert problems and "eff" in str(problems[0][0])
    cfg = load_config({"data": {"dataset": "breast_cancer"}, "model": [{"type": "dense", "units": 1,
                       "activation": "sigmoid"}], "loss": "bce", "metrics": ["auc", "rejection@eff=0.5"],
                       "train": {"early_stopping": {"monitor": "val_rejection@eff=0.5"}}})
    assert cfg.metrics == ["auc", "rejection@eff=0.5"]


def test_ks_p_value_is_scipys_unweighted_and_weights_count_as_copies():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 300), rng.normal(0.2, 1, 200)
    expected = stats.ks_2samp(a, b)
    assert physics.ks_test(a, b) == (pytest.approx(expected.statistic, abs=1e-15),
                                     pytest.approx(expected.pvalue, abs=1e-15))
    wa = rng.integers(1, 4, len(a)).astype(float)  # weight k = the event k times: the same distance D
    d, p = physics.ks_test(a, b, wa, None)
    assert d == pytest.approx(stats.ks_2samp(np.repeat(a, wa.astype(int)), b).statistic, abs=1e-12)
    assert 0 <= p <= 1


def test_weighted_metrics_equal_scikit_learns_with_sample_weight():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 300)
    p = rng.dirichlet([1, 1, 1], 300).astype(np.float32)
    w = rng.exponential(1.0, 300)
    got = report(Outputs("multiclass", y, p, w))
    pred = p.argmax(1)
    assert got["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w), abs=1e-12)
    assert got["metrics"]["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", sample_weight=w), abs=1e-12)
    assert np.allclose(got["confusion_matrix"], skm.confusion_matrix(y, pred, sample_weight=w))
    auc = skm.roc_auc_score(y, p, multi_class="ovr", average="macro", sample_weight=w)
    assert got["metrics"]["auc"] == pytest.approx(auc, abs=1e-9)
    t, v = rng.normal(size=(300, 1)), rng.normal(size=(300, 1))
    reg = report(Outputs("regression", t, v, w))["metrics"]
    assert reg["mse"] == pytest.approx(skm.mean_squared_error(t, v, sample_weight=w), abs=1e-12)
    assert reg["mae"] == pytest.approx(skm.mean_absolute_error(t, v, sample_weight=w), abs=1e-12)
    assert reg["r2"] == pytest.approx(skm.r2_score(t, v, sample_weight=w), abs=1e-12)


def binary_ctx(counts=None, sums=None):
    return LossContext(task="binary", output_activation="sigmoid", activation=None, class_counts=counts,
                       class_weight_sums=sums)


def test_the_weighted_loss_is_sum_w_l_over_sum_w_and_composes_with_focal_and_class_balanced():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(64, 1))
    y = (rng.random(64) < 0.3).astype(np.float64)
    w = rng.exponential(1.0, 64)
    zt, yt, wt = torch.tensor(z), torch.tensor(y).reshape(-1, 1), torch.tensor(w)
    p = 1 / (1 + np.exp(-z[:, 0]))
    bce = build_loss("bce", binary_ctx())(zt, yt, wt).item()
    assert bce == pytest.approx(skm.log_loss(y, p, sample_weight=w), abs=1e-9)
    # focal (Lin et al.): -alpha_t (1 - p_t)^gamma log p_t, by hand
    p_t = np.where(y == 1, p, 1 - p)
    alpha_t = np.where(y == 1, 0.25, 0.75)
    terms = -alpha_t * (1 - p_t) ** 2 * np.log(p_t)
    focal = build_loss({"name": "focal", "gamma": 2.0, "alpha": 0.25}, binary_ctx())(zt, yt, wt).item()
    assert focal == pytest.approx(np.sum(w * terms) / np.sum(w), abs=1e-9)
    # class_balanced with totals: weights: class totals are the weight sums; normalized to sum to 2
    sums = [float(w[y == 0].sum()), float(w[y == 1].sum())]
    cw = np.array([1 / sums[0], 1 / sums[1]])
    cw = cw * 2 / cw.sum()
    loss = build_loss({"name": "class_balanced", "totals": "weights"}, binary_ctx([10, 10], sums))
    per_event = -(y * np.log(p) + (1 - y) * np.log(1 - p)) * cw[y.astype(int)]
    assert loss(zt, yt, wt).item() == pytest.approx(np.sum(w * per_event) / np.sum(w), abs=1e-6)  # (class weights: a float32 buffer)
    with pytest.raises(SpecError, match="set data.weight"):
        build_loss({"name": "class_balanced", "totals": "weights"}, binary_ctx([10, 10]))


def test_class_weight_and_class_names():
    assert class_factors({0: 1.0, 1: 5.0}, [0, 1], np.array([90, 10])).tolist() == [1.0, 5.0]
    assert class_factors("balanced", ["b", "s"], np.array([90.0, 10.0])).tolist() == pytest.approx([100 / 180, 5.0])
    assert class_factors({"s": 3.0}, ["b", "s"], np.array([1, 1])).tolist() == [1.0, 3.0]
    with pytest.raises(SpecError, match="class_weight names class 7"):
        class_factors({7: 1.0}, [0, 1], np.array([1, 1]))
    assert class_names(["background", "signal"], [0, 1]) == ["background", "signal"]
    assert class_names({1: "signal"}, [0, 1]) == ["0", "signal"]
    with pytest.raises(SpecError, match="class_names has 3 names but there are 2 classes"):
        class_names(["a", "b", "c"], [0, 1])


def weighted_csv(tmp_path, weights, name="w.csv"):
    lines = ["a,b,label,w"] + [f"{i},{i % 3},{i % 2},{wt}" for i, wt in enumerate(weights)]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path / name


DONE = {"keep": "kept as they are", "zero": "set to 0 (negative_weights: zero)",
        "abs": "made positive (negative_weights: abs)"}


@pytest.mark.parametrize("policy, expected", [("keep", [1.5, -2.0, 0.25, -0.5]), ("zero", [1.5, 0.0, 0.25, 0.0]),
                                              ("abs", [1.5, 2.0, 0.25, 0.5])])
def test_negative_weight_policies(tmp_path, policy, expected):
    file = weighted_csv(tmp_path, [1.5, -2.0, 0.25, -0.5])
    cfg = load_config({"data": {"path": str(file), "target": "label", "weight": "w", "negative_weights": policy},
                       "model": [{"type": "dense", "units": 1, "activation": "sigmoid"}], "loss": "bce"})
    rows = read_rows(Origin(str(file), "path", cfg.data, main=True), "binary")
    assert rows.w.tolist() == expected and rows.names == ["a", "b"]  # the weight is no feature
    assert rows.notes == [f"data.weight: 2 of 4 events of w.csv have a negative weight, {DONE[policy]}"]


CONFIG = """\
data: {{path: {file}, target: label, weight: {weight}}}
model:
  - {{type: dense, units: 1, activation: sigmoid}}
loss: bce
train: {{device: cpu}}
"""


@pytest.mark.parametrize("weights, weight, message", [
    ([1.0, float("nan"), 2.0], "w", "the weight column 'w' is NaN or infinite in 1 row(s): 2; every event needs"),
    ([1.0, 2.0], "wt", "has no column 'wt' for the event weights (data.weight); did you mean 'w'?"),
])
def test_a_bad_weight_column_is_an_exit_2_error_naming_column_and_file(tmp_path, weights, weight, message):
    file = weighted_csv(tmp_path, weights)
    (tmp_path / "cfg.yaml").write_text(CONFIG.format(file=file, weight=weight))
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "cfg.yaml")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "line 1: data.weight:" in line and str(file) in line, line
    assert message in " ".join(result.output.split()), result.output


def test_a_figure_of_merit_is_one_name_from_metrics_csv_to_early_stopping_and_evaluate():
    """`ams` is logged as `val_ams@b_reg=10`: monitor: val_ams means that column, and evaluate names it so."""
    cfg = load_config({"data": {"dataset": "breast_cancer"}, "model": [{"type": "dense", "units": 1,
                                                                       "activation": "sigmoid"}],
                       "loss": "bce", "metrics": ["ams", "rejection"],
                       "train": {"early_stopping": {"monitor": "val_ams", "patience": 2}}})
    assert cfg.metric_names == ["ams@b_reg=10", "rejection@eff=0.5"]
    assert cfg.train.early_stopping.monitor == "val_ams@b_reg=10"
    assert METRICS.column("val_rejection") == "val_rejection@eff=0.5" and METRICS.column("val_auc") == "val_auc"
    assert METRICS.column("val_ams@b_reg=5") == "val_ams@b_reg=5" and METRICS.column("loss") == "loss"
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    out = Outputs("binary", y.astype(np.uint8), np.stack([1 - p, p], axis=1), rng.exponential(1.0, 200))
    names = report(out, ["efficiency@rej=5"])["metrics"]
    assert "ams@b_reg=10" in names and "ams" not in names and "efficiency@rej=5" in names


def test_a_shared_roc_is_sorted_once_and_never_confused_with_other_events(monkeypatch):
    """Within shared_roc() the same events' ROC is computed once (evaluate's metrics and plots), events that
    differ in one score, label or weight get their own, the shared arrays cannot be changed in place, and
    nothing is kept outside it."""
    rng = np.random.default_rng(4)
    y, score, w = rng.integers(0, 2, 500), rng.random(500), rng.normal(1.0, 0.5, 500)
    expected = physics.roc_points(y, score, w)
    sorts = []
    real = physics._roc
    monkeypatch.setattr(physics, "_roc", lambda *a: sorts.append(1) or real(*a))
    with physics.shared_roc():
        for _ in range(3):
            got = physics.roc_points(y, score.copy(), w)  # equal arrays, not the same objects
        assert len(sorts) == 1 and all(np.array_equal(a, b) for a, b in zip(got[:3], expected[:3], strict=True))
        with pytest.raises(ValueError):
            got[0][0] = 0.5
        other = score.copy()
        other[7] += 1e-9
        changed_y = y.copy()
        changed_y[3] = 1 - changed_y[3]
        for args in ((y, other, w), (changed_y, score, w), (y, score, None)):
            assert np.array_equal(physics.roc_points(*args)[0], real(*(np.asarray(a) for a in (
                args[0] == 1, args[1], np.ones(500) if args[2] is None else args[2])))[0])
        assert len(sorts) == 4 and len(physics._shared) == physics.SHARED_ROCS  # the newest only: bounded memory
    physics.roc_points(y, score, w)
    assert len(sorts) == 5 and physics._shared is None
    assert compute(["auc"], Outputs("binary", y.astype(np.uint8), np.stack([1 - score, score], 1), w))["auc"] == \
        pytest.approx(physics.trapezoid_auc(expected[0], expected[1]), abs=1e-15)


def test_the_weighted_ks_p_value_is_scipys_asymptotic_one_at_the_effective_sizes():
    """Equal weights leave the effective sizes at the counts: statistic and p-value are scipy's ks_2samp with
    method="asymp", whatever the weight. Integer weights give the statistic of the rows repeated that often."""
    rng = np.random.default_rng(9)
    a, b = rng.normal(0, 1, 700), rng.normal(0.1, 1, 900)
    reference = stats.ks_2samp(a, b, method="asymp")
    for c in (1.0, 2.5, 0.01):
        d, p = physics.ks_test(a, b, np.full(700, c), np.full(900, c))
        assert d == pytest.approx(reference.statistic, abs=1e-12) and p == pytest.approx(reference.pvalue, rel=1e-9)
    wa, wb = rng.integers(1, 4, 700), rng.integers(1, 4, 900)
    d, _ = physics.ks_test(a, b, wa.astype(float), wb.astype(float))
    assert d == pytest.approx(stats.ks_2samp(np.repeat(a, wa), np.repeat(b, wb)).statistic, abs=1e-12)


def test_the_hep_roc_draws_what_has_a_rejection_and_counts_what_it_leaves_out():
    from dlcli.commands.physics_plots import drawable_rejection

    # cuts tightest first: no background yet, a negative background sum, then positive ones with a gap
    fpr = np.array([0.0, 0.0, -0.01, 0.1, 0.2, -0.05, 0.0, 0.5, 1.0])
    tpr = np.linspace(0, 1, 9)
    eff, rej, hidden = drawable_rejection(fpr, tpr)
    np.testing.assert_array_equal(eff, tpr[3:])
    np.testing.assert_array_equal(rej, [10.0, 5.0, np.nan, np.nan, 2.0, 1.0])
    assert hidden == 3  # the negative sum before the first positive one, and the two gaps after it
    assert drawable_rejection(np.zeros(3), np.linspace(0, 1, 3))[2] == 0  # no background at all: nothing to count
