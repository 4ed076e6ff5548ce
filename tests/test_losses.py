"""Losses against independent references: torchvision, sklearn, torch's probability form, numpy by hand."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcli.errors import SpecError
from dlcli.nn.losses import LOSSES, LossContext, build_loss, loss_task


def binary_ctx(counts=(30, 10), activation="sigmoid"):
    module = {"sigmoid": nn.Sigmoid(), "softmax": nn.Softmax(-1), "linear": None}[activation]
    return LossContext("binary", activation, module, list(counts) if counts else None)


def multi_ctx(counts=(5, 20, 50, 25), activation="softmax"):
    module = {"sigmoid": nn.Sigmoid(), "softmax": nn.Softmax(-1), "linear": None}[activation]
    return LossContext("multiclass", activation, module, list(counts) if counts else None)


def regression_ctx(activation="linear"):
    module = {"sigmoid": nn.Sigmoid(), "linear": None}[activation]
    return LossContext("regression", activation, module)


def binary_batch(n=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    raw = (torch.randn(n, 1, generator=g) * 2).to(dtype)
    y = (torch.rand(n, 1, generator=g) > 0.6).to(dtype)
    return raw, y


def multi_batch(n=12, c=4, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    raw = (torch.randn(n, c, generator=g) * 2).to(dtype)
    y = torch.randint(0, c, (n,), generator=g)
    return raw, y


def assert_close(actual, expected):
    # Not torch.testing.assert_close: its first call imports torch.distributed, seconds on a small machine.
    assert torch.allclose(actual, expected, rtol=1e-5, atol=1e-7), (actual, expected)


def np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


# ----------------------------------------------------------------------------------------------
# Binary cross-entropy


def test_bce_equals_probability_form_for_moderate_logits():
    raw, y = binary_batch()
    loss = build_loss("binary_crossentropy", binary_ctx())(raw, y)
    assert_close(loss, F.binary_cross_entropy(torch.sigmoid(raw), y))


def test_bce_is_exact_for_huge_logits_where_probabilities_saturate():
    raw = torch.tensor([[100.0], [-100.0], [100.0], [-100.0], [30.0]])
    y = torch.tensor([[1.0], [0.0], [0.0], [1.0], [0.0]])
    loss = build_loss("bce", binary_ctx())(raw, y)
    z, t = raw.double().numpy(), y.double().numpy()
    # -log σ(z) = softplus(-z), -log(1 - σ(z)) = softplus(z)
    expected = np.mean(t * np.logaddexp(0, -z) + (1 - t) * np.logaddexp(0, z))
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected, rel=1e-6)  # (0 + 0 + 100 + 100 + 30) / 5 = 46
    assert F.binary_cross_entropy(torch.sigmoid(raw), y).item() != pytest.approx(expected, rel=1e-3)


def test_bce_label_smoothing_is_keras():
    raw, y = binary_batch()
    loss = build_loss({"name": "binary_crossentropy", "label_smoothing": 0.2}, binary_ctx())(raw, y)
    p, t = np_sigmoid(raw.double().numpy()), y.double().numpy() * 0.8 + 0.1
    assert loss.item() == pytest.approx(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)), rel=1e-5)


# ----------------------------------------------------------------------------------------------
# Categorical cross-entropy


def test_cce_integer_and_one_hot_targets_match_numpy():
    raw, y = multi_batch()
    loss = build_loss("categorical_crossentropy", multi_ctx())
    p = np_softmax(raw.double().numpy())
    expected = -np.mean(np.log(p[np.arange(len(y)), y.numpy()]))
    assert loss(raw, y).item() == pytest.approx(expected, rel=1e-5)
    assert loss(raw, F.one_hot(y, 4).float()).item() == pytest.approx(expected, rel=1e-5)


def test_cce_soft_targets_and_label_smoothing_by_hand():
    raw, y = multi_batch()
    rows = np.full((len(y), 4), 0.1)
    rows[np.arange(len(y)), y.numpy()] = 0.7
    p = np_softmax(raw.double().numpy())
    soft = build_loss("cce", multi_ctx())(raw, torch.tensor(rows, dtype=torch.float32))
    assert soft.item() == pytest.approx(-np.mean((rows * np.log(p)).sum(1)), rel=1e-5)
    smooth = build_loss({"name": "cce", "label_smoothing": 0.2}, multi_ctx())(raw, y)
    target = np.eye(4)[y.numpy()] * 0.8 + 0.2 / 4
    assert smooth.item() == pytest.approx(-np.mean((target * np.log(p)).sum(1)), rel=1e-5)


# ----------------------------------------------------------------------------------------------
# Focal


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9, None])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_binary_focal_equals_torchvision(alpha, gamma):
    from torchvision.ops import sigmoid_focal_loss  # here: importing torchvision takes seconds

    raw, y = binary_batch(seed=3)
    loss = build_loss({"name": "focal", "gamma": gamma, "alpha": alpha}, binary_ctx())(raw, y)
    expected = sigmoid_focal_loss(raw, y, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction="mean")
    assert torch.equal(loss, expected)  # bit for bit


def test_binary_focal_with_gamma_zero_is_alpha_weighted_bce():
    raw, y = binary_batch()
    loss = build_loss({"name": "focal", "gamma": 0, "alpha": 0.3}, binary_ctx())(raw, y)
    p, t = np_sigmoid(raw.double().numpy()), y.double().numpy()
    expected = -np.mean(0.3 * t * np.log(p) + 0.7 * (1 - t) * np.log(1 - p))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def np_multiclass_focal(raw, y, gamma, alpha):
    p = np_softmax(raw.double().numpy())
    p_t = p[np.arange(len(y)), y.numpy()]
    alpha_t = 1.0 if alpha is None else np.asarray(alpha)[y.numpy()] if isinstance(alpha, list) else alpha
    return np.mean(-alpha_t * (1 - p_t) ** gamma * np.log(p_t))


@pytest.mark.parametrize("alpha", [None, 0.25, [0.1, 0.2, 0.3, 0.4]])
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_multiclass_focal_matches_numpy(alpha, gamma):
    raw, y = multi_batch(seed=5)
    loss = build_loss({"name": "focal", "gamma": gamma, "alpha": alpha}, multi_ctx())
    expected = np_multiclass_focal(raw, y, gamma, alpha)
    assert loss(raw, y).item() == pytest.approx(expected, rel=1e-5)
    assert loss(raw, F.one_hot(y, 4).float()).item() == pytest.approx(expected, rel=1e-5)


def test_multiclass_focal_gamma_zero_no_alpha_is_cross_entropy():
    raw, y = multi_batch()
    loss = build_loss({"name": "focal_loss", "gamma": 0, "alpha": None}, multi_ctx())(raw, y)
    assert_close(loss, F.cross_entropy(raw, y))


# ----------------------------------------------------------------------------------------------
# Class-balanced


def test_class_balanced_unnormalized_is_the_lecture_formula():
    raw = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [1.5], [0.0]])
    y = torch.tensor([[1.0], [0.0], [0.0], [0.0], [1.0], [0.0]])
    n_j, n_i = 70, 30  # training-set counts of class j (y = 0) and class i (y = 1)
    ctx = binary_ctx(counts=(n_j, n_i))
    loss = build_loss({"name": "class_balanced", "normalize": False}, ctx)(raw, y)

    yk, yhat = y.double().numpy().ravel(), np_sigmoid(raw.double().numpy().ravel())
    N = len(yk)
    i, j = yk == 1, yk == 0
    expected = -(1 / N) * ((1 / n_i) * np.sum(yk[i] * np.log(yhat[i]))
                           + (1 / n_j) * np.sum((1 - yk[j]) * np.log(1 - yhat[j])))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_class_balanced_multiclass_unnormalized_by_hand():
    raw, y = multi_batch()
    counts = [5, 20, 50, 25]
    loss = build_loss({"name": "balanced", "normalize": False}, multi_ctx(counts))(raw, y)
    p = np_softmax(raw.double().numpy())
    w = 1 / np.asarray(counts, dtype=float)
    idx = y.numpy()
    assert loss.item() == pytest.approx(np.mean(-w[idx] * np.log(p[np.arange(len(idx)), idx])), rel=1e-5)


def test_class_balanced_normalized_weights_sum_to_classes():
    counts = [5, 20, 50, 25]
    loss = build_loss("class_balanced", multi_ctx(counts))
    w = loss.class_weight.double().numpy()
    assert w.sum() == pytest.approx(4)
    expected = (1 / np.asarray(counts)) / (1 / np.asarray(counts)).sum() * 4
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert "class_weight" in dict(loss.named_buffers())  # so .to(device) moves it


def test_class_balanced_effective_number_closed_form():
    counts, beta = [5, 20, 50, 25], 0.99
    spec = {"name": "class_balanced", "weights": "effective_number", "beta": beta}
    w = build_loss(spec, multi_ctx(counts)).class_weight.double().numpy()
    n = np.asarray(counts, dtype=float)
    closed = (1 - beta) / (1 - beta**n)
    np.testing.assert_allclose(w, closed / closed.sum() * 4, rtol=1e-6)
    raw = build_loss({**spec, "normalize": False}, multi_ctx(counts)).class_weight.double().numpy()
    np.testing.assert_allclose(raw, closed, rtol=1e-6)


def test_class_balanced_explicit_weights_and_focal_base():
    raw, y = multi_batch()
    weights = [1.0, 2.0, 0.5, 3.0]
    loss = build_loss({"name": "class_balanced", "weights": weights, "base": "focal", "gamma": 2.0},
                      multi_ctx(counts=None))(raw, y)
    p = np_softmax(raw.double().numpy())
    idx = y.numpy()
    p_t = p[np.arange(len(idx)), idx]
    expected = np.mean(-np.asarray(weights)[idx] * (1 - p_t) ** 2 * np.log(p_t))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_class_balanced_base_alias_and_binary_focal():
    from torchvision.ops import sigmoid_focal_loss

    raw, y = binary_batch()
    bce = build_loss({"name": "class_balanced", "base": "bce", "weights": [1.0, 3.0]}, binary_ctx())(raw, y)
    p, t = np_sigmoid(raw.double().numpy()), y.double().numpy()
    assert bce.item() == pytest.approx(-np.mean(3 * t * np.log(p) + (1 - t) * np.log(1 - p)), rel=1e-5)
    spec = {"name": "class_balanced", "base": "FocalLoss", "weights": [1.0, 3.0], "alpha": 0.25}
    focal = build_loss(spec, binary_ctx())(raw, y)
    reference = sigmoid_focal_loss(raw, y, alpha=0.25, gamma=2.0, reduction="none") * (1 + 2 * y)
    assert_close(focal, reference.mean())


def test_class_balanced_errors():
    with pytest.raises(SpecError, match="class counts") as exc:
        build_loss("class_balanced", multi_ctx(counts=None))
    assert exc.value.key == "weights"
    with pytest.raises(SpecError, match="class 2 has no training samples"):
        build_loss("class_balanced", multi_ctx(counts=(3, 4, 0, 5)))
    with pytest.raises(SpecError, match="3 entries but there are 4 classes") as exc:
        build_loss({"name": "class_balanced", "weights": [1, 2, 3]}, multi_ctx())
    assert exc.value.key == "weights"
    with pytest.raises(SpecError, match="two classes"):
        build_loss({"name": "class_balanced", "base": "bce"}, multi_ctx())


# ----------------------------------------------------------------------------------------------
# Regression


def test_regression_losses_by_hand():
    g = torch.Generator().manual_seed(1)
    pred, y = torch.randn(20, 2, generator=g) * 2, torch.randn(20, 2, generator=g)
    ctx = regression_ctx()
    p, t = pred.double().numpy(), y.double().numpy()
    assert build_loss("mse", ctx)(pred, y).item() == pytest.approx(np.mean((p - t) ** 2), rel=1e-5)
    assert build_loss("mae", ctx)(pred, y).item() == pytest.approx(np.mean(np.abs(p - t)), rel=1e-5)
    delta, x = 0.7, np.abs(p - t)
    huber = np.mean(np.where(x <= delta, 0.5 * x**2, delta * (x - 0.5 * delta)))
    loss = build_loss({"name": "huber", "delta": delta}, ctx)
    assert loss(pred, y).item() == pytest.approx(huber, rel=1e-5)


def test_mse_on_sigmoid_output_applies_the_sigmoid_first():
    raw, y = torch.tensor([[0.0], [2.0], [-1.0]]), torch.tensor([0.2, 0.9, 0.5])  # (N,) target: no broadcast
    loss = build_loss("mean_squared_error", regression_ctx("sigmoid"))(raw, y)
    expected = np.mean((np_sigmoid(raw.double().numpy().ravel()) - y.double().numpy()) ** 2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------------------------
# Gradients


GRADCHECK_CASES = [
    ("binary_crossentropy", "binary"),
    ({"name": "bce", "label_smoothing": 0.1}, "binary"),
    ("categorical_crossentropy", "multi"),
    ({"name": "focal", "gamma": 2.0, "alpha": 0.25}, "binary"),
    ({"name": "focal", "gamma": 0.0, "alpha": None}, "binary"),
    ({"name": "focal", "gamma": 2.0, "alpha": [0.1, 0.2, 0.3, 0.4]}, "multi"),
    ({"name": "focal", "gamma": 1.5}, "multi"),
    ("class_balanced", "binary"),
    ({"name": "class_balanced", "weights": "effective_number"}, "multi"),
    ({"name": "class_balanced", "base": "focal"}, "multi"),
    ("mse", "regression"),
    ("mae", "regression"),
    ({"name": "huber", "delta": 0.5}, "regression"),
]


@pytest.mark.parametrize(("spec", "kind"), GRADCHECK_CASES)
def test_gradcheck(spec, kind):
    if kind == "binary":
        raw, y = binary_batch(n=6, dtype=torch.float64)
        ctx = binary_ctx()
    elif kind == "multi":
        raw, y = multi_batch(n=6, dtype=torch.float64)
        ctx = multi_ctx()
    else:
        g = torch.Generator().manual_seed(2)
        raw = torch.randn(6, 2, generator=g, dtype=torch.float64)
        y = raw.detach() + torch.tensor([0.3, -0.8], dtype=torch.float64)  # |error| away from mae/huber kinks
        ctx = regression_ctx()
    loss = build_loss(spec, ctx)
    raw.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r: loss(r, y), (raw,))


# ----------------------------------------------------------------------------------------------
# Custom


CUSTOM_SOURCE = """
import torch

def my_loss(prediction, target):
    return ((prediction - target) ** 4).mean()

def helper(x):
    return x

def not_scalar(prediction, target):
    return prediction - target

THRESHOLD = 3
"""


def test_custom_loss_from_file_gets_activated_predictions(tmp_path):
    (tmp_path / "losses.py").write_text(CUSTOM_SOURCE)
    ctx = LossContext("binary", "sigmoid", nn.Sigmoid(), [1, 1], config_dir=tmp_path)
    raw, y = binary_batch()
    loss = build_loss({"name": "custom", "function": "losses.py:my_loss"}, ctx)(raw, y)
    assert_close(loss, ((torch.sigmoid(raw) - y) ** 4).mean())
    absolute = build_loss({"name": "custom", "function": f"{tmp_path / 'losses.py'}:my_loss"}, ctx)
    assert_close(absolute(raw, y), loss)


def test_custom_loss_is_a_file_never_a_module(tmp_path, monkeypatch):
    # `os.path:join` or an installed package's function would make any importable callable the loss.
    package = tmp_path / "mylosspkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "fancy.py").write_text(CUSTOM_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for ref in ("mylosspkg.fancy:my_loss", "os.path:join"):
        with pytest.raises(SpecError, match="must be 'path/to/file.py:function'") as exc:
            build_loss({"name": "custom", "function": ref}, regression_ctx())
        assert exc.value.key == "function"
    assert not any(name.startswith("mylosspkg") for name in sys.modules)


@pytest.mark.parametrize(("function", "message"), [
    ("missing.py:fn", "file not found"),
    ("losses.py:my_los", "module has no function 'my_los'; it defines: my_loss, helper, not_scalar"),
    ("losses.py:THRESHOLD", "'THRESHOLD' is a int, not a function"),
    ("broken.py:fn", r"syntax error in broken.py, line 1"),
    ("losses.py", "must be 'path/to/file.py:function' \\(a Python file, relative to the config\\), got 'losses.py'"),
    ("losses.py:", "must be 'path/to/file.py:function'"),
])
def test_custom_loss_errors(tmp_path, function, message):
    (tmp_path / "losses.py").write_text(CUSTOM_SOURCE)
    (tmp_path / "broken.py").write_text("def fn(:\n")
    ctx = LossContext("regression", "linear", None, config_dir=tmp_path)
    with pytest.raises(SpecError, match=message) as exc:
        build_loss({"name": "custom", "function": function}, ctx)
    assert exc.value.key == "function"
    assert "\n" not in str(exc.value)


TRIED = """\
import torch

def wrong_length(p, y):
    return (p - y).sum().repeat(3)

def number(p, y):
    return 1.0

def nan(p, y):
    return p.sum() * float("nan")

def one_argument(p):
    return p.mean()

def detached(p, y):
    return torch.tensor(float(((p - y) ** 2).mean()))

def raises(p, y):
    raise KeyError("label")

def fine(p, y):
    return ((p - y.reshape(p.shape)) ** 2).mean()

def picked(p, y):
    return -p.log_softmax(-1)[torch.arange(len(y)), y].mean()
"""


@pytest.mark.parametrize(("fn", "message"), [
    ("wrong_length", r"must return per-event losses, shape \(2,\) or \(2, k\), or a scalar tensor, got a tensor "
                     r"of shape \(3,\) on a batch of 2 \(prediction float32 \(2, 1\), target float32 \(2, 1\)\)"),
    ("number", "must return per-event losses, .*or a scalar tensor, got float"),
    ("nan", "returns nan on a batch of 2 .*; it must be a finite number"),
    ("one_argument", r"fails on a batch of 2 .*: TypeError: one_argument\(\) takes 1 positional argument"),
    ("detached", "returns a tensor without a gradient"),
    ("raises", "fails on a batch of 2 .*: KeyError: 'label'"),
])
def test_a_custom_loss_is_tried_once_when_built(tmp_path, fn, message):
    # With the model's output shape known (engine/setup.py passes it) the function is called on two made-up
    # samples shaped as training's, so `validate` refuses it before a run directory exists.
    (tmp_path / "tried.py").write_text(TRIED)
    ctx = LossContext("binary", "sigmoid", nn.Sigmoid(), [1, 1], config_dir=tmp_path, output_shape=(1,))
    with pytest.raises(SpecError, match=message) as exc:
        build_loss({"name": "custom", "function": f"tried.py:{fn}"}, ctx)
    assert exc.value.key == "function" and "tried.py" in str(exc.value)


def test_trying_a_custom_loss_leaves_the_seeded_generator_alone(tmp_path):
    (tmp_path / "tried.py").write_text(TRIED)
    for task, shape, fn in (("multiclass", (3,), "picked"), ("regression", (2,), "fine")):
        ctx = LossContext(task, "linear", None, [1, 1, 1], config_dir=tmp_path, output_shape=shape)
        torch.manual_seed(5)
        build_loss({"name": "custom", "function": f"tried.py:{fn}"}, ctx)
        after = torch.rand(3)
        torch.manual_seed(5)
        assert torch.equal(after, torch.rand(3))


def test_a_custom_loss_returns_per_event_losses_to_be_weighted(tmp_path):
    """Per-event losses (N,) or (N, k) are averaged, or weighted as sum(w l) / sum(w); a scalar, the batch's own
    mean, cannot be weighted, so it is refused when the events carry weights, when the loss is built."""
    (tmp_path / "events.py").write_text("def per_event(p, y):\n    return ((p - y) ** 2).sum(dim=1)\n\n"
                                        "def per_value(p, y):\n    return (p - y).abs()\n\n"
                                        "def batch_mean(p, y):\n    return ((p - y) ** 2).mean()\n")
    p, y = torch.tensor([[0.5, 1.0], [2.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 3.0]])
    w = torch.tensor([1.0, 3.0, -0.5])
    for fn, per in (("per_event", [1.25, 2.0, 4.0]), ("per_value", [0.75, 1.0, 1.0])):
        ctx = LossContext("regression", "linear", None, config_dir=tmp_path, output_shape=(2,), weighted=True)
        loss = build_loss({"name": "custom", "function": f"events.py:{fn}"}, ctx)
        assert_close(loss(p, y), torch.tensor(sum(per) / 3))
        by_hand = (1 * per[0] + 3 * per[1] - 0.5 * per[2]) / 3.5
        assert_close(loss(p, y, w), torch.tensor(by_hand))
    unweighted = LossContext("regression", "linear", None, config_dir=tmp_path, output_shape=(2,))
    assert_close(build_loss({"name": "custom", "function": "events.py:batch_mean"}, unweighted)(p, y),
                 torch.tensor(((p - y) ** 2).mean().item()))
    with pytest.raises(SpecError, match=r"events.py:batch_mean returns one number for the whole batch, which the "
                                        r"events' weights .* cannot weigh; return the per-event losses, shape \(N,\)") as exc:
        build_loss({"name": "custom", "function": "events.py:batch_mean"}, replace(unweighted, weighted=True))
    assert exc.value.key == "function"


# ----------------------------------------------------------------------------------------------
# What fits what


@pytest.mark.parametrize(("spec", "ctx", "message"), [
    ("binary_crossentropy", binary_ctx(activation="softmax"),
     r"binary_crossentropy needs a sigmoid output layer \(set the last layer's activation: sigmoid\), "
     "got 'softmax'"),
    ("binary_crossentropy", binary_ctx(activation="linear"), "needs a sigmoid output layer.*got 'linear'"),
    ("binary_crossentropy", multi_ctx(counts=(1, 2, 3)),
     "binary_crossentropy is for two classes; with 3 classes use categorical_crossentropy and a softmax "
     "output"),
    ("cce", multi_ctx(activation="sigmoid"), "needs a softmax output layer.*got 'sigmoid'"),
    ("categorical_crossentropy", binary_ctx(), "is for three or more classes.*binary_crossentropy"),
    ("mse", binary_ctx(), "mse is a regression loss; for a binary task use binary_crossentropy"),
    ("focal", regression_ctx(), "focal is a classification loss; for regression use mse, mae or huber"),
    ("focal", multi_ctx(activation="linear"), "focal needs a softmax output layer"),
])
def test_invalid_combinations(spec, ctx, message):
    with pytest.raises(SpecError, match=message):
        build_loss(spec, ctx)


def test_focal_alpha_list_must_have_one_entry_per_class():
    with pytest.raises(SpecError, match="alpha has 3 entries but there are 4 classes") as exc:
        build_loss({"name": "focal", "alpha": [0.2, 0.3, 0.5]}, multi_ctx())
    assert exc.value.key == "alpha"
    with pytest.raises(SpecError, match="alpha has 3 entries but there are 2 classes"):
        build_loss({"name": "focal", "alpha": [0.2, 0.3, 0.5]}, binary_ctx())


def test_parameters_are_validated_standalone():
    # The same checks and words as a config's (Registry.parse), at the key at fault.
    with pytest.raises(SpecError, match="must be at least 0.0, got -1") as exc:
        build_loss({"name": "focal", "gamma": -1}, binary_ctx())
    assert exc.value.key == "gamma"
    with pytest.raises(SpecError, match="must be at most 1.0, got 1.5") as exc:
        build_loss({"name": "focal", "alpha": [0.5, 1.5]}, binary_ctx())
    assert exc.value.key == "alpha[1]"
    with pytest.raises(SpecError, match="unknown key 'gama'; did you mean 'gamma'") as exc:
        build_loss({"name": "focal", "gama": 1}, binary_ctx())
    assert exc.value.key == "gama"
    with pytest.raises(SpecError, match="did you mean 'focal'"):
        build_loss("focall", binary_ctx())


@pytest.mark.parametrize(("alias", "canonical"), [
    ("BinaryCrossentropy", "binary_crossentropy"),
    ("sparse_categorical_crossentropy", "categorical_crossentropy"),
    ("mean_squared_error", "mse"), ("MeanAbsoluteError", "mae"), ("FocalLoss", "focal"),
    ("ClassBalanced", "class_balanced"), ("log_loss", "binary_crossentropy"),
])
def test_aliases_resolve(alias, canonical):
    assert LOSSES.get(alias).name == canonical


def test_alias_builds_the_same_loss():
    raw, y = multi_batch()
    a = build_loss("sparse_categorical_crossentropy", multi_ctx())(raw, y)
    assert_close(a, F.cross_entropy(raw, y))


@pytest.mark.parametrize(("spec", "task"), [
    ("BinaryCrossentropy", "binary"), ("cce", "multiclass"),
    ({"name": "focal", "gamma": 1}, "classification"),
    ("class_balanced", "classification"), ({"name": "class_balanced", "base": "bce"}, "binary"),
    ("huber", "regression"), ("mse", "regression"), ({"name": "custom", "function": "x.py:f"}, None),
    ("no_such_loss", None),
])
def test_loss_task(spec, task):
    assert loss_task(spec) == task
