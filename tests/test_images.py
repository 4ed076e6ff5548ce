"""images.py, imagesets.py, augment.py: image folders, torchvision sets, augmentation, per-channel scaling."""

from __future__ import annotations

import json
import runpy
import struct
import urllib.request
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from dlcli import evaluate, train
from dlcli.config import DataConfig, load_config
from dlcli.data import ChannelStats, Scaler, load_dataset
from dlcli.data.images import ImageSamples, load_image_inputs
from dlcli.errors import ConfigError, DataError
from spec_errors import spec_error

ROOT = Path(__file__).resolve().parent.parent
write_digit_images = runpy.run_path(str(ROOT / "scripts" / "make_digit_images.py"))["write_digit_images"]


def load(task="multiclass", seed=0, **data):
    return load_dataset(DataConfig(**data), task=task, seed=seed)


def fails(key, *fragments, task="multiclass", **data) -> str:
    return spec_error(lambda: load(task=task, **data), key, *fragments)


def save(path: Path, array: np.ndarray) -> Path:
    """uint8 (H, W) or (H, W, 3) -> an image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rgb_folder(root: Path, n_per_class=12, size=(6, 5), seed=0) -> Path:
    """Two classes of RGB images whose channels have different brightness."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("cat", "dog")):
        for i in range(n_per_class):
            image = np.stack([rng.integers(0, 100, size), rng.integers(100, 200, size),
                              rng.integers(50 * label, 256, size)], axis=-1).astype(np.uint8)
            save(root / name / f"{i:02d}.png", image)
    return root


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits") / "images"
    assert write_digit_images(folder) == 1797
    return folder


# ----------------------------------------------------------------------------------------------
# Image folders


def test_digit_pngs_load_with_their_pixels_and_classes(digits_folder):
    ds = load(images=str(digits_folder))
    x, y = ds.splits["train"]
    digits = load_digits()
    # ImageFolder order: class folders sorted, then file names (the sklearn row) sorted.
    rows = np.concatenate([np.flatnonzero(digits.target == c) for c in range(10)])
    expected = np.round(digits.images[rows] * (255 / 16)).astype(np.uint8).astype(np.float32) / 255
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and ds.input_shape == (1, 8, 8)
    np.testing.assert_array_equal(x[:, 0], expected)
    np.testing.assert_array_equal(y, digits.target[rows])
    assert ds.classes == [str(c) for c in range(10)] and ds.source == str(digits_folder)
    assert ds.counts == np.bincount(digits.target).tolist()
    assert "1,797 images in 10 class folders, 8x8 grayscale, decoded into memory" in ds.notes[0]


def test_splits_are_stratified_seeded_and_disjoint(digits_folder):
    def split_pixels(ds):
        return {name: {x.tobytes() for x in split[0]} for name, split in ds.splits.items()}

    ds = load(images=str(digits_folder), split={"val": 0.15, "test": 0.2}, seed=3)
    assert ds.rows() == {"train": 1167, "val": 270, "test": 360}  # ceil(0.15 * 1797), ceil(0.2 * 1797)
    per_class = np.bincount(load_digits().target)
    for name, fraction in (("val", 0.15), ("test", 0.2)):
        counts = np.bincount(ds.splits[name][1], minlength=10)
        assert np.all(np.abs(counts - fraction * per_class) <= 1), (name, counts)
    again = load(images=str(digits_folder), split={"val": 0.15, "test": 0.2}, seed=3)
    for name in ds.splits:
        np.testing.assert_array_equal(ds.splits[name][0], again.splits[name][0])
    other = load(images=str(digits_folder), split={"val": 0.15, "test": 0.2}, seed=4)
    assert not np.array_equal(ds.splits["test"][1], other.splits["test"][1])
    assert ds.counts == np.bincount(ds.splits["train"][1], minlength=10).tolist()


def test_digit_pngs_train_to_high_test_accuracy(digits_folder, tmp_path):
    config = {
        "seed": 0,
        "data": {"images": str(digits_folder), "split": {"test": 0.2}, "scale": "standard"},
        "model": {"layers": [{"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same",
                              "activation": "relu"},
                             {"type": "maxpool2d"}, {"type": "flatten"},
                             {"type": "dense", "units": 10, "activation": "softmax"}]},
        "loss": "sparse_categorical_crossentropy",
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 6, "batch_size": 64},
    }
    run = train(load_config(config), run_dir=tmp_path / "run", progress=False).run_dir
    assert evaluate(run, write=False)["metrics"]["accuracy"] >= 0.93
    stored = json.loads((run / "scaler.json").read_text())
    assert stored["per"] == "channel" and len(stored["offset"]) == 1


def test_per_channel_standard_and_minmax_scaling_use_train_pixels_only(tmp_path):
    folder = rgb_folder(tmp_path / "rgb")
    raw = load(images=str(folder), split={"val": 0.25})
    x_train, x_val = raw.splits["train"][0].astype(np.float64), raw.splits["val"][0].astype(np.float64)
    mean, std = x_train.mean(axis=(0, 2, 3)), x_train.std(axis=(0, 2, 3))

    ds = load(images=str(folder), split={"val": 0.25}, scale="standard")
    assert ds.scaler.per == "channel" and ds.scaler.offset.shape == (3,)
    np.testing.assert_allclose(ds.scaler.offset, mean, rtol=1e-5)
    np.testing.assert_allclose(ds.scaler.scale, std, rtol=1e-5)
    scaled = ds.splits["train"][0]
    np.testing.assert_allclose(scaled.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=(0, 2, 3)), 1, atol=1e-4)
    expected_val = (x_val - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(ds.splits["val"][0], expected_val, atol=1e-5)

    mm = load(images=str(folder), split={"val": 0.25}, scale="minmax")
    np.testing.assert_allclose(mm.scaler.offset, x_train.min(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(mm.scaler.scale, x_train.max(axis=(0, 2, 3)) - x_train.min(axis=(0, 2, 3)), rtol=1e-6)
    assert mm.splits["train"][0].min() == 0 and mm.splits["train"][0].max() == pytest.approx(1)


def test_channel_scaler_is_stored_and_old_scalers_still_load():
    rng = np.random.default_rng(0)
    x = rng.normal(1000, 0.01, (50, 2, 4, 4)).astype(np.float32)  # a large mean: cancellation would show
    scaler = Scaler.fit("standard", x, per="channel")
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(scaler.offset, x64.mean(axis=(0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(scaler.scale, x64.std(axis=(0, 2, 3)), rtol=1e-3)
    again = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again.per == "channel"
    np.testing.assert_array_equal(again.transform(x), scaler.transform(x))
    old = Scaler.from_dict({"kind": "minmax", "offset": [0.0, 1.0], "scale": [2.0, 2.0]})  # before "per"
    assert old.per == "feature"
    np.testing.assert_allclose(old.transform(np.array([[2.0, 3.0]])), [[1.0, 1.0]])


def test_channel_scaler_over_many_blocks_matches_numpy_in_float64():
    x = np.random.default_rng(2).normal(200, 3, (3000, 3, 10, 10)).astype(np.float32)  # 4 blocks, the last partial
    scaler = Scaler.fit("standard", x, per="channel")
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(scaler.offset, x64.mean(axis=(0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(scaler.scale, x64.std(axis=(0, 2, 3)), rtol=1e-6)


def test_channel_stats_merged_in_uneven_chunks_match_one_pass():
    rng = np.random.default_rng(1)
    x = rng.normal([[[5.0]], [[-3.0]], [[0.5]]], [[[2.0]], [[0.1]], [[7.0]]], (101, 3, 5, 7))
    stats = ChannelStats()
    for start, stop in ((0, 1), (1, 40), (40, 41), (41, 101)):
        stats.add(x[start:stop])
    scaler = stats.scaler("standard")
    np.testing.assert_allclose(scaler.offset, x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(scaler.scale, x.std(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(stats.scaler("minmax").offset, x.min(axis=(0, 2, 3)), rtol=1e-6)


def test_color_defaults_to_grayscale_only_when_every_image_is(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    color = np.dstack([gray, gray // 2, 255 - gray])
    save(tmp_path / "all_gray" / "a" / "1.png", gray)
    save(tmp_path / "all_gray" / "b" / "1.png", gray[::-1])
    assert load(images=str(tmp_path / "all_gray")).input_shape == (1, 4, 5)

    save(tmp_path / "mixed" / "a" / "1.png", gray)
    save(tmp_path / "mixed" / "b" / "1.png", color)
    x, y = load(images=str(tmp_path / "mixed")).splits["train"]
    assert x.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(x[0], np.stack([gray] * 3) / np.float32(255))  # gray -> R = G = B
    np.testing.assert_array_equal(x[1], color.transpose(2, 0, 1) / np.float32(255))

    x, _ = load(images=str(tmp_path / "mixed"), color="grayscale").splits["train"]
    luma = np.asarray(Image.fromarray(color).convert("L"))  # PIL's own conversion is the reference
    np.testing.assert_array_equal(x[1, 0], luma / np.float32(255))


def test_images_of_different_sizes_need_image_size(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    save(tmp_path / "f" / "a" / "big.png", big)
    save(tmp_path / "f" / "b" / "small.png", rng.integers(0, 256, (6, 6), dtype=np.uint8))
    fails("images", "differ in size", "10x12", "6x6", "data.image_size", images=str(tmp_path / "f"))
    ds = load(images=str(tmp_path / "f"), image_size=[5, 6])
    x = ds.splits["train"][0]
    assert x.shape == (2, 1, 5, 6)
    reference = np.asarray(Image.fromarray(big).resize((6, 5), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(x[0, 0], reference / np.float32(255))


def test_folder_problems_are_spec_errors_at_images(tmp_path):
    fails("images", "does not exist", images=str(tmp_path / "nowhere"))
    save(tmp_path / "flat" / "1.png", np.zeros((3, 3), np.uint8))
    fails("images", "one subfolder of images per class", "1 images directly in it", images=str(tmp_path / "flat"))
    save(tmp_path / "empty_class" / "a" / "1.png", np.zeros((3, 3), np.uint8))
    (tmp_path / "empty_class" / "b").mkdir()
    (tmp_path / "empty_class" / "b" / "notes.txt").write_text("no images here")
    fails("images", "class folder", "holds no images", images=str(tmp_path / "empty_class"))
    save(tmp_path / "broken" / "a" / "1.png", np.zeros((3, 3), np.uint8))
    (tmp_path / "broken" / "b").mkdir()
    (tmp_path / "broken" / "b" / "2.png").write_bytes(b"not a png")
    fails("images", "cannot read", "2.png", images=str(tmp_path / "broken"))
    fails("images", "classification", task="regression", images=str(tmp_path / "empty_class"))


def test_non_image_files_are_skipped_with_a_note_and_positive_makes_two_classes(tmp_path):
    folder = rgb_folder(tmp_path / "rgb", n_per_class=3)
    (folder / "cat" / "README.txt").write_text("cats")
    ds = load(task="binary", images=str(folder), positive=["dog"])
    assert any("skipped 1 file" in note for note in ds.notes)
    assert ds.classes == [0, 1] and ds.splits["train"][1].tolist() == [0, 0, 0, 1, 1, 1]
    fails("positive", "'dgo' is not a class", "did you mean 'dog'", task="binary", images=str(folder),
          positive=["dgo"])


def test_streamed_folder_gives_the_same_samples_and_scaler_as_in_memory(tmp_path, monkeypatch):
    folder = rgb_folder(tmp_path / "rgb")
    kw = dict(images=str(folder), split={"val": 0.25}, scale="standard")
    held = load(**kw)
    streamed = load(**kw, stream=True, workers=0)
    assert all(isinstance(split, ImageSamples) for split in streamed.splits.values())
    np.testing.assert_allclose(streamed.scaler.offset, held.scaler.offset, rtol=1e-6)
    np.testing.assert_allclose(streamed.scaler.scale, held.scaler.scale, rtol=1e-6)
    for name in ("train", "val"):
        x, y = held.splits[name]
        loader = torch.utils.data.DataLoader(streamed.splits[name], batch_size=7)
        xs, ys = zip(*loader, strict=True)
        np.testing.assert_allclose(torch.cat(xs).numpy(), x, atol=1e-6)
        np.testing.assert_array_equal(torch.cat(ys).numpy(), y)
    assert streamed.counts == held.class_counts() and streamed.class_counts() == held.class_counts()
    assert streamed.rows() == held.rows()

    import dlcli.data.images.arrays

    monkeypatch.setattr(dlcli.data.images.arrays, "available_memory", lambda: 4000)  # 4 kB free: stream: auto streams
    auto = load(**kw)
    assert isinstance(auto.splits["train"], ImageSamples)
    assert any("read from disk through DataLoader workers" in note and "free memory" in note for note in auto.notes)


# ----------------------------------------------------------------------------------------------
# Augmentation


def test_augmented_train_split_draws_per_sample(tmp_path):
    image = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8  # asymmetric: a flip is visible
    for label in ("a", "b"):
        for i in range(20):
            save(tmp_path / "f" / label / f"{i}.png", image)
    ds = load(images=str(tmp_path / "f"), split={"val": 0.2}, augment=[{"name": "horizontal_flip"}])
    assert isinstance(ds.splits["train"], ImageSamples) and isinstance(ds.splits["val"], tuple)
    assert any("augment" in note and "horizontal_flip" in note for note in ds.notes)
    torch.manual_seed(0)
    batch, _ = next(iter(torch.utils.data.DataLoader(ds.splits["train"], batch_size=32)))
    plain = torch.from_numpy(image / np.float32(255))
    flipped = [bool(torch.equal(x[0], torch.flip(plain, [-1]))) for x in batch]
    kept = [bool(torch.equal(x[0], plain)) for x in batch]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 4 <= sum(flipped) <= 28  # one draw per sample, not one per batch
    np.testing.assert_array_equal(ds.splits["val"][0][:, 0], np.broadcast_to(plain.numpy(), (8, 5, 6)))


def test_random_crop_with_padding_is_a_window_of_the_padded_image_then_scaled(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, (6, 6), dtype=np.uint8)
    for label in ("a", "b"):
        for i in range(10):
            save(tmp_path / "f" / label / f"{i}.png", image)
    ds = load(images=str(tmp_path / "f"), scale="standard", augment=[{"name": "random_crop", "size": 6, "padding": 2}])
    mean, std = ds.scaler.offset[0], ds.scaler.scale[0]
    padded = np.pad(image / np.float32(255), 2)
    windows = {(i, j): (padded[i:i + 6, j:j + 6] - mean) / std for i in range(5) for j in range(5)}
    torch.manual_seed(1)
    seen = set()
    for k in range(len(ds.splits["train"])):
        x, _ = ds.splits["train"][k]
        hits = [pos for pos, w in windows.items() if np.allclose(x[0].numpy(), w, atol=1e-5)]
        assert hits, "not a window of the zero-padded image"
        seen.add(hits[0])
    assert len(seen) > 3


def test_augment_errors_name_the_entry_and_parameter(tmp_path):
    folder = str(rgb_folder(tmp_path / "rgb", n_per_class=2))
    fails("augment[1].name", "unknown augmentation 'horizontl_flip'", "did you mean 'horizontal_flip'",
          images=folder, augment=[{"name": "rotation", "degrees": 5}, {"name": "horizontl_flip", "p": 0.5}])
    fails("augment[0].sizee", "unknown key 'sizee'", "did you mean 'size'",
          images=folder, augment=[{"name": "random_crop", "sizee": 4}])
    fails("augment[0].size", "turns 6x5", "validation and test images stay 6x5",
          images=folder, augment=[{"name": "random_crop", "size": 4}])
    fails("augment[0].size", "does not fit", images=folder, augment=[{"name": "random_crop", "size": 9, "padding": 1}])
    fails("augment[0].kernel_size", "must be odd", images=folder, augment=[{"name": "gaussian_blur", "kernel_size": 4}])


def test_every_augmentation_keeps_the_image_shape_and_value_range():
    from dlcli.nn.augment import AUGMENTS, build_augment

    specs = [{"name": "random_crop", "size": [8, 10], "padding": 2}, "horizontal_flip", "vertical_flip",
             {"name": "rotation", "degrees": 15}, {"name": "affine", "degrees": 5, "translate": [0.1, 0.1],
                                                   "scale": [0.9, 1.1], "shear": 5},
             {"name": "color_jitter", "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1},
             {"name": "random_resized_crop", "scale": [0.5, 1.0]}, {"name": "random_erasing", "p": 1.0},
             {"name": "gaussian_blur", "kernel_size": 3}]
    assert {AUGMENTS.canonical(s if isinstance(s, str) else s["name"]) for s in specs} == set(AUGMENTS.names())
    pipeline = build_augment(specs, (3, 8, 10))
    torch.manual_seed(0)
    x = torch.rand(3, 8, 10)
    out = pipeline(x)
    assert out.shape == x.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out, x)


def test_validate_reports_bad_augment_entries_without_loading_data():
    config = {"data": {"images": "/no/such/folder", "augment": [{"name": "flip_horizontal"},
                                                                 {"name": "rotation", "degres": 10}]},
              "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}]},
              "loss": "sparse_categorical_crossentropy"}
    with pytest.raises(ConfigError) as info:
        load_config(config)
    text = str(info.value)
    assert "data.augment[0]: unknown augmentation 'flip_horizontal'" in text
    assert "data.augment[1].degres: unknown key 'degres'; did you mean 'degrees'?" in text
    good = load_config({**config, "data": {"images": "/no/such/folder", "augment": ["hflip"]}})
    assert good.data.augment == [{"name": "horizontal_flip", "p": 0.5}]  # canonical name, defaults filled in


# ----------------------------------------------------------------------------------------------
# torchvision data sets


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's idx file format, as torchvision's MNIST-family readers take it."""
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 0x803, n, h, w) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 0x801, n) + labels.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_root(tmp_path):
    rng = np.random.default_rng(0)
    sets = {}
    for prefix, n in (("train", 60), ("t10k", 20)):
        sets[prefix] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10
        write_idx(tmp_path / "data" / "FashionMNIST" / "raw", prefix, *sets[prefix])
    return tmp_path / "data", sets


def test_fashion_mnist_files_load_from_root_with_their_test_split(fashion_root):
    import torchvision

    root, sets = fashion_root
    ds = load(torchvision="fashion_mnist", root=str(root), split={"val": 0.1})
    assert ds.rows() == {"train": 54, "val": 6, "test": 20} and ds.input_shape == (1, 28, 28)
    assert ds.classes == torchvision.datasets.FashionMNIST.classes and ds.classes[0] == "T-shirt/top"
    x_test, y_test = ds.splits["test"]
    np.testing.assert_array_equal(x_test[:, 0], sets["t10k"][0] / np.float32(255))
    np.testing.assert_array_equal(y_test, sets["t10k"][1])
    carved = np.concatenate([ds.splits["train"][0], ds.splits["val"][0]])[:, 0]  # val comes from train only
    assert sorted(a.tobytes() for a in carved) == sorted((a / np.float32(255)).tobytes() for a in sets["train"][0])
    fails("split.test", "its own test split", torchvision="FashionMNIST", root=str(root), split={"test": 0.2})

    rgb = load(torchvision="FashionMNIST", root=str(root), color="rgb", image_size=[14, 14])
    x = rgb.splits["test"][0]
    assert x.shape == (20, 3, 14, 14) and np.array_equal(x[:, 0], x[:, 2])
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), x_test.mean(axis=(1, 2, 3)), atol=0.01)  # resizing keeps brightness


def test_missing_torchvision_files_say_where_they_go_without_touching_the_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    empty = tmp_path / "empty"
    text = fails("torchvision", f"{empty / 'FashionMNIST' / 'raw'}", "train-images-idx3-ubyte", "data.download: true",
                 "copy", torchvision="FashionMNIST", root=str(empty), download=False)
    assert "Traceback" not in text and not empty.exists()
    fails("torchvision", str(empty / "cifar-10-batches-py"), "data_batch_1", torchvision="CIFAR10", root=str(empty))
    fails("torchvision", "did you mean 'CIFAR100'", torchvision="CIFAR-100O", root=str(empty))


@pytest.mark.parametrize("name, folder", [("KMNIST", "KMNIST/raw"), ("CIFAR10", "cifar-10-batches-py")])
def test_a_failed_download_says_how_to_fetch_the_files(tmp_path, monkeypatch, name, folder):
    calls = []

    def offline(request, *args, **kwargs):
        calls.append(getattr(request, "full_url", request))
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    text = fails("download", "could not download", "name resolution", str(tmp_path / folder), "copy",
                 torchvision=name, root=str(tmp_path), download=True)
    assert calls and "Traceback" not in text and not (tmp_path / folder).exists()  # no empty folder left behind


def test_fake_data_follows_image_size_and_color():
    ds = load(torchvision="FakeData", image_size=[8, 6], color="grayscale", split={"val": 0.1}, scale="standard")
    assert ds.rows() == {"train": 450, "val": 50, "test": 100} and ds.input_shape == (1, 8, 6)
    assert ds.classes == list(range(10)) and sum(ds.counts) == 450
    x = ds.splits["train"][0]
    np.testing.assert_allclose(x.mean(), 0, atol=1e-5)
    assert not np.array_equal(ds.splits["test"][0][:5], x[:5])


def test_torchvision_config_error_names_file_and_key(tmp_path):
    from dlcli.engine.setup import prepare

    config = tmp_path / "tv.yaml"
    config.write_text("data:\n  torchvision: MNIST\n  root: nowhere\nmodel:\n  layers:\n"
                      "    - {type: flatten}\n    - {type: dense, units: 10, activation: softmax}\n"
                      "loss: sparse_categorical_crossentropy\n")
    with pytest.raises(ConfigError) as info:
        prepare(load_config(config))
    assert info.value.exit_code == 2
    assert f"{config}, line 2: data.torchvision: MNIST is not in {tmp_path / 'nowhere' / 'MNIST' / 'raw'}" in str(info.value)


# ----------------------------------------------------------------------------------------------
# Inputs for `dlcli predict`


def test_image_inputs_are_converted_resized_and_scaled_as_in_training(tmp_path):
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    second = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    save(tmp_path / "in" / "b.png", first)
    save(tmp_path / "in" / "sub" / "a.png", second)
    (tmp_path / "in" / "notes.txt").write_text("skip me")
    scaler = Scaler("standard", [0.5], [0.25], per="channel")
    x, names = load_image_inputs(tmp_path / "in", DataConfig(images="x"), input_shape=[1, 8, 8], scaler=scaler)
    assert names == ["b.png", "sub/a.png"] and x.shape == (2, 1, 8, 8) and x.dtype == np.float32
    reference = np.asarray(Image.fromarray(first).convert("L").resize((8, 8), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(x[0, 0], (reference / 255 - 0.5) / 0.25, atol=1e-6)
    np.testing.assert_allclose(x[1, 0], (second / 255 - 0.5) / 0.25, atol=1e-6)

    one, names = load_image_inputs(tmp_path / "in" / "b.png", DataConfig(images="x"), input_shape=[3, 10, 12],
                                   scaler=None)
    assert names == ["b.png"]
    np.testing.assert_array_equal(one[0], first.transpose(2, 0, 1) / np.float32(255))
    with pytest.raises(DataError, match="no such file"):
        load_image_inputs(tmp_path / "missing", DataConfig(images="x"), input_shape=[1, 8, 8], scaler=None)
    with pytest.raises(DataError, match="not images"):
        load_image_inputs(tmp_path / "in", DataConfig(images="x"), input_shape=[64], scaler=None)


def test_a_truncated_image_is_named_when_decoded(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        save(tmp_path / "f" / label / "1.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    whole = (tmp_path / "f" / "b" / "1.png").read_bytes()
    (tmp_path / "f" / "b" / "1.png").write_bytes(whole[: len(whole) // 2])  # the header reads, the pixels do not
    fails("images", f"cannot read {tmp_path / 'f' / 'b' / '1.png'} as an image", images=str(tmp_path / "f"))
    with pytest.raises(DataError, match="cannot read .*1.png as an image"):
        load_image_inputs(tmp_path / "f", DataConfig(images="x"), input_shape=[3, 16, 16], scaler=None)
