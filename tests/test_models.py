"""Layers, shapes and parameter counts against Keras' published numbers and hand-worked formulas."""

import pytest
import torch
from torch import nn

from dlcli.errors import ConfigError, SpecError
from dlcli.nn.activations import ACTIVATIONS, build_activation
from dlcli.nn.network import build_model
from dlcli.nn.summary import summary_dict

LECTURE_FFNN = {
    "input_shape": [28],
    "layers": [
        {"type": "Dense", "units": 300, "activation": "relu"},
        {"type": "Dense", "units": 150, "activation": "relu"},
        {"type": "Dense", "units": 100, "activation": "relu"},
        {"type": "Dense", "units": 50, "activation": "relu"},
        {"type": "Dense", "units": 1, "activation": "sigmoid"},
    ],
}
LECTURE_CNN = {
    "input_shape": [1, 28, 28],
    "layers": [
        {"type": "Conv2D", "filters": 32, "kernel_size": [3, 3], "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": [2, 2]},
        {"type": "Conv2D", "filters": 64, "kernel_size": [3, 3], "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": [2, 2]},
        {"type": "Flatten"},
        {"type": "Dropout", "rate": 0.5},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
}


def test_lecture_ffnn_has_kerass_74051_parameters():
    s = summary_dict(build_model(LECTURE_FFNN))
    assert s["total_params"] == 74_051  # Keras' model.summary() for the lecture's notebook
    assert [r["params"] for r in s["layers"]] == [8_700, 45_150, 15_100, 5_050, 51]
    assert s["size_bytes"] == 74_051 * 4


def test_lecture_cnn_has_kerass_34826_parameters_and_shapes():
    model = build_model(LECTURE_CNN)
    s = summary_dict(model)
    assert s["total_params"] == 34_826
    shapes = [r["output_shape"] for r in s["layers"]]
    assert shapes == [[None, 32, 26, 26], [None, 32, 13, 13], [None, 64, 11, 11], [None, 64, 5, 5],
                      [None, 1600], [None, 1600], [None, 10]]
    model.eval()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_summary_names_layers_as_keras_prints_them():
    # The lecture notebook's model.summary(): conv2d, max_pooling2d, conv2d_1, max_pooling2d_1, flatten, ...
    s = summary_dict(build_model(LECTURE_CNN))
    assert [(r["name"], r["type"]) for r in s["layers"]] == [
        ("conv2d", "Conv2D"), ("max_pooling2d", "MaxPooling2D"), ("conv2d_1", "Conv2D"),
        ("max_pooling2d_1", "MaxPooling2D"), ("flatten", "Flatten"), ("dropout", "Dropout"), ("dense", "Dense")]
    others = build_model({"input_shape": [2, 8], "layers": [
        {"type": "batchnorm"}, {"type": "avgpool1d"}, {"type": "conv1d", "filters": 2}, {"type": "flatten"},
        {"type": "activation", "activation": "relu"}, {"type": "maxout", "units": 2}, {"type": "reshape", "shape": [2, 1]}]})
    assert [r["name"] for r in summary_dict(others)["layers"]] == [
        "batch_normalization", "average_pooling1d", "conv1d", "flatten", "activation", "maxout", "reshape"]


def test_forward_returns_logits_and_predict_applies_the_output_activation():
    model = build_model(LECTURE_CNN).eval()
    x = torch.randn(4, 1, 28, 28)
    logits, probs = model(x), model.predict(x)
    assert model.output_activation == "softmax"
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1))


def test_batchnorm_counts_moving_statistics_as_non_trainable_like_keras():
    model = build_model({"input_shape": [10], "layers": [{"type": "dense", "units": 8},
                                                         {"type": "BatchNormalization"}]})
    s = summary_dict(model)
    assert s["layers"][1]["params"] == 4 * 8  # Keras: gamma, beta (trainable), moving mean, variance
    assert s["trainable_params"] == 88 + 16 and s["non_trainable_params"] == 16


@pytest.mark.parametrize("size,kernel,stride,expected", [(28, 3, 2, 14), (27, 3, 2, 14), (8, 5, 3, 3)])
def test_same_padding_with_stride_matches_tensorflow(size, kernel, stride, expected):
    # TensorFlow/Keras: padding "same" gives ceil(size / stride) outputs for any stride.
    model = build_model({"input_shape": [1, size, size], "layers": [
        {"type": "conv2d", "filters": 2, "kernel_size": kernel, "strides": stride, "padding": "same"}]}).eval()
    assert model.output_shape == (2, expected, expected)
    assert model(torch.zeros(1, 1, size, size)).shape == (1, 2, expected, expected)


def test_conv1d_pool1d_and_reshape_infer_shapes():
    model = build_model({"input_shape": [12], "layers": [
        {"type": "reshape", "shape": [1, -1]},
        {"type": "conv1d", "filters": 4, "kernel_size": 3, "padding": 1},
        {"type": "avgpool1d", "pool_size": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 2}]}).eval()
    assert [i.output_shape for i in model.layers_info] == [(1, 12), (4, 12), (4, 6), (24,), (2,)]
    assert model(torch.randn(3, 12)).shape == (3, 2)


def test_maxout_is_the_max_of_affine_maps():
    model = build_model({"input_shape": [5], "layers": [{"type": "maxout", "units": 3, "pieces": 4}]})
    layer = model.body[0].linear
    x = torch.randn(7, 5)
    maps = (x @ layer.weight.T + layer.bias).view(7, 3, 4)  # unit u, piece k
    torch.testing.assert_close(model(x), maps.max(dim=-1).values)
    assert summary_dict(model)["total_params"] == 3 * 4 * (5 + 1)


def test_activation_layers_by_type_and_keras_names():
    model = build_model({"input_shape": [4], "layers": [
        {"type": "dense", "units": 4}, {"type": "LeakyReLU", "negative_slope": 0.1},
        {"type": "Activation", "activation": "tanh"}, {"type": "dense", "units": 1}]})
    leaky = [m for m in model.body if isinstance(m, nn.LeakyReLU)]
    assert leaky and leaky[0].negative_slope == 0.1
    assert any(isinstance(m, nn.Tanh) for m in model.body)


@pytest.mark.parametrize("name,params,reference", [
    ("sigmoid", {}, torch.sigmoid),
    ("tanh", {}, torch.tanh),
    ("relu", {}, lambda x: torch.clamp(x, min=0)),
    ("leaky_relu", {"negative_slope": 0.1}, lambda x: torch.maximum(0.1 * x, x)),  # the lecture's max(0.1x, x)
    ("elu", {"alpha": 0.5}, lambda x: torch.where(x >= 0, x, 0.5 * (torch.exp(x) - 1))),
    ("softmax", {}, lambda x: torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)),
    ("gelu", {}, lambda x: 0.5 * x * (1 + torch.erf(x / 2 ** 0.5))),
    ("silu", {}, lambda x: x / (1 + torch.exp(-x))),
    ("linear", {}, lambda x: x),
])
def test_activations_match_their_formulas_and_gradcheck(name, params, reference):
    _, module = build_activation({"name": name, **params})
    x = torch.linspace(-3, 3, 14, dtype=torch.float64).reshape(2, 7) + 0.013  # away from kinks at 0
    torch.testing.assert_close(module(x), reference(x))
    assert torch.autograd.gradcheck(module, (x.clone().requires_grad_(),))


def test_every_activation_is_tested():
    tested = {"sigmoid", "tanh", "relu", "leaky_relu", "elu", "softmax", "gelu", "silu", "linear"}
    assert set(ACTIVATIONS.names()) == tested


def test_a_model_dict_is_checked_like_a_configs_model_section():
    with pytest.raises(ConfigError) as info:
        build_model({"input_shpe": [0], "layers": [{"type": "dense", "unit": 3}, {"type": "conv2d", "strides": 0}]})
    assert str(info.value).splitlines() == [
        "config: model.input_shpe: unknown key 'input_shpe'; did you mean 'input_shape'? (allowed keys: input_shape, "
        "layers)",
        "config: model.layers[0].units: required key is missing",
        "config: model.layers[0].unit: unknown key 'unit'; did you mean 'units'? (allowed keys: units, use_bias)",
        "config: model.layers[1].filters: required key is missing",
        "config: model.layers[1].strides: must be a positive integer or a list, got 0"]


@pytest.mark.parametrize("layers,key,fragment", [
    ([{"type": "conv2d", "filters": 4, "kernel_size": 9}], "layers[0].kernel_size", "does not fit"),
    ([{"type": "conv2d", "filters": 4}, {"type": "dense", "units": 3}], "layers[1]", "add {type: flatten}"),
    ([{"type": "dense", "units": 3}], "layers[0]", "needs a flat input"),
    ([{"type": "reshape", "shape": [5, 5]}], "layers[0].shape", "cannot reshape"),
    ([{"type": "maxpool2d", "pool_size": 8}], "layers[0].pool_size", "does not fit"),
])
def test_shape_misfits_name_the_layer(layers, key, fragment):
    with pytest.raises(SpecError) as info:
        build_model({"input_shape": [1, 6, 6], "layers": layers})
    assert info.value.key == key
    assert fragment in str(info.value)


# Every layer type, so that a layer added to nn/layers.py without meta-device support fails here.
EVERY_LAYER = {
    "input_shape": [2, 12, 12],
    "layers": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same", "activation": "relu"},
        {"type": "batchnorm"},
        {"type": "maxpool2d", "pool_size": 2},
        {"type": "avgpool2d", "pool_size": 1},
        {"type": "reshape", "shape": [4, 9]},
        {"type": "conv1d", "filters": 3, "kernel_size": 2},
        {"type": "maxpool1d", "pool_size": 2},
        {"type": "avgpool1d", "pool_size": 1},
        {"type": "flatten"},
        {"type": "dropout", "rate": 0.1},
        {"type": "maxout", "units": 5, "pieces": 3},
        {"type": "activation", "activation": "relu"},
        {"type": "dense", "units": 2, "activation": "softmax"},
    ],
}


def test_every_layer_builds_on_the_meta_device_with_the_real_shapes_and_counts():
    from dlcli.nn.layers import LAYERS

    assert {LAYERS.get(spec["type"]).name for spec in EVERY_LAYER["layers"]} == set(LAYERS.names())
    meta, real = build_model(EVERY_LAYER, device="meta"), build_model(EVERY_LAYER)
    assert all(p.is_meta for p in meta.parameters()) and not any(p.is_meta for p in real.parameters())
    assert [i.output_shape for i in meta.layers_info] == [i.output_shape for i in real.layers_info]
    assert summary_dict(meta)["total_params"] == summary_dict(real)["total_params"]


def test_footprint_counts_weight_and_output_copies():
    from dlcli.nn.network import footprint

    model = build_model(LECTURE_FFNN, device="meta")
    # By hand: 74,051 weights x 4 copies (weights, gradients, Adam's two moments), and per sample the
    # input (28) plus each layer's output and its activation's (2 x (300 + 150 + 100 + 50 + 1)) x 2 copies.
    batch = 32
    total, per_layer = footprint(model, batch)
    assert total == 4 * (4 * 74051 + batch * 28 + 2 * batch * 2 * (300 + 150 + 100 + 50 + 1))
    assert per_layer[0] == 4 * (4 * (28 * 300 + 300) + 2 * batch * 2 * 300)
    # A billion units cost nothing to measure on the meta device.
    huge = build_model({"input_shape": [30], "layers": [{"type": "dense", "units": 10**9}]}, device="meta")
    assert footprint(huge, 1)[0] == 4 * (4 * 31 * 10**9 + 30 + 2 * 10**9)
