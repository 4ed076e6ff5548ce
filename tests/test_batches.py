"""Batched inference: the same numbers as a plain forward pass, with the model and the data left as they were."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlcli.engine.inference import evaluate_split, inference
from dlcli.nn.network import build_model

CNN = {"input_shape": [1, 12, 12], "layers": [
    {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
    {"type": "max_pool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 6, "kernel_size": 3, "activation": "elu"},
    {"type": "flatten"},
    {"type": "activation", "activation": "relu"},  # after a view of the pool's output: never in place
    {"type": "dropout", "rate": 0.5},
    {"type": "dense", "units": 3, "activation": "softmax"},
]}
# Starts with views of the caller's data: an in-place activation here would overwrite it.
ON_THE_INPUT = {"input_shape": [2, 3], "layers": [
    {"type": "flatten"},
    {"type": "activation", "activation": "relu"},
    {"type": "dense", "units": 4, "activation": "leaky_relu"},
    {"type": "dense", "units": 1, "activation": "sigmoid"},
]}


def _data(shape, n=50, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, classes, n)


def test_evaluation_equals_a_plain_forward_pass():
    torch.manual_seed(0)
    model = build_model(CNN)
    reference = copy.deepcopy(model).eval()
    x, y = _data((1, 12, 12))
    with torch.no_grad():
        logits = reference(torch.from_numpy(x))
        expected_loss = F.cross_entropy(logits, torch.from_numpy(y)).item()
        expected_prob = torch.softmax(logits, dim=1).numpy()
    loss_fn = torch.nn.CrossEntropyLoss()
    loss, out = evaluate_split(model, loss_fn, (x, y), "multiclass", 16, torch.device("cpu"))
    # channels-last runs other convolution kernels: equal up to float32 rounding
    assert out.y_prob == pytest.approx(expected_prob, abs=1e-6)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_array_equal(out.y_true, y)


def test_evaluation_leaves_the_model_and_the_data_as_they_were():
    torch.manual_seed(0)
    model = build_model(ON_THE_INPUT).train()
    x, _ = _data((2, 3))
    y = (x[:, 0, 0] > 0).astype(np.float32)
    before = x.copy()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    evaluate_split(model, loss_fn, (x, y), "binary", 8, torch.device("cpu"))
    np.testing.assert_array_equal(x, before)  # the relu on the flattened input did not run in place
    assert model.training
    assert all(not getattr(m, "inplace", False) for m in model.modules())


def test_only_activations_after_a_fresh_output_run_in_place():
    model = build_model(CNN)
    kinds = lambda: [(type(m).__name__, m.inplace) for m in model.body if hasattr(m, "inplace")]  # noqa: E731
    with inference(model):
        assert not model.training
        assert kinds() == [("ReLU", True), ("ELU", True), ("ReLU", False), ("Dropout", False)]
    assert kinds() == [("ReLU", False), ("ELU", False), ("ReLU", False), ("Dropout", False)]


def test_gathered_keeps_batches_in_order():
    from dlcli.engine.inference import Gathered

    gathered = Gathered()
    gathered.CHUNK = 3  # chunks and the batches after the last one
    for start in range(0, 23, 2):
        rows = torch.arange(start, min(start + 2, 23), dtype=torch.float32)
        gathered.add(rows.reshape(-1, 1), rows.long())
    out = gathered.outputs("multiclass", torch.nn.Identity())
    np.testing.assert_array_equal(out.y_prob.ravel(), np.arange(23))
    np.testing.assert_array_equal(out.y_true, np.arange(23))


def test_binary_outputs_hold_both_classes_probabilities():
    torch.manual_seed(0)
    model = build_model(ON_THE_INPUT)
    x, _ = _data((2, 3), n=37)
    y = (x[:, 0, 0] > 0).astype(np.float32)
    with torch.no_grad():
        p = torch.sigmoid(copy.deepcopy(model).eval()(torch.from_numpy(x))).numpy().ravel()
    _, out = evaluate_split(model, torch.nn.BCEWithLogitsLoss(), (x, y), "binary", 8, torch.device("cpu"))
    assert out.y_prob.shape == (37, 2)
    assert out.y_prob[:, 1] == pytest.approx(p, abs=1e-6)
    assert out.y_prob[:, 0] == pytest.approx(1 - p, abs=1e-6)
    assert out.y_true.dtype == np.uint8  # class ids 0 and 1, a byte each
    np.testing.assert_array_equal(out.y_true, y.astype(np.int64))


def test_shuffled_batches_are_the_seeded_permutations_rows():
    """Each epoch's batches are the rows of torch.randperm under the run's seed, cut in order: the same
    rows, targets and weights as indexing the arrays by that permutation."""
    from dlcli.engine.batches import Batches

    n, batch, seed = 1000, 64, 7
    x, y = _data((5,), n=n, classes=2, seed=1)
    w = np.random.default_rng(2).random(n).astype(np.float32)
    batches = Batches((x, y), "binary", torch.device("cpu"), batch, shuffle=True, seed=seed, weights=w)
    generator = torch.Generator().manual_seed(seed)
    for epoch in (1, 2):
        order = torch.randperm(n, generator=generator).numpy()
        got = list(batches.weighted_epoch(epoch))
        assert [len(xb) for xb, _, _ in got] == [batch] * (n // batch) + [n % batch]
        np.testing.assert_array_equal(torch.cat([xb for xb, _, _ in got]).numpy(), x[order])
        np.testing.assert_array_equal(torch.cat([yb for _, yb, _ in got]).numpy().ravel(), y[order])
        np.testing.assert_array_equal(torch.cat([wb for _, _, wb in got]).numpy(), w[order])
