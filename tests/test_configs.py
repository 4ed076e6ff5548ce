"""Every shipped config validates; those whose data is offline train for one epoch."""

from pathlib import Path

import pytest

from dlcli import evaluate, train
from dlcli.config import load_config
from dlcli.engine.setup import prepare

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))
NEEDS_DOWNLOAD = {"higgs_ffnn.yaml",  # OpenML 23512, cached under data.root by a first download
                  "fashion_mnist_cnn.yaml", "cifar10_cnn.yaml"}  # torchvision sets, fetched into data.root
TORCHVISION_PARAMS = {"fashion_mnist_cnn.yaml": 34_826,  # the lecture's Keras model
                      "cifar10_cnn.yaml": 308_842}  # 307,946 trainable + BatchNorm's running mean and variance


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_trains_one_epoch(path, tmp_path):
    overrides = ["train.epochs=1", *_local_data(path, tmp_path)]
    cfg = load_config(path, overrides)
    if path.name in NEEDS_DOWNLOAD:
        if path.name == "higgs_ffnn.yaml":
            _check_higgs_without_data(path, cfg, tmp_path)
        else:
            _check_torchvision_on_fake_data(path, cfg, tmp_path)
        return
    prepare(cfg)
    run = train(path, overrides, run_dir=tmp_path / "run", progress=False).run_dir
    assert (run / "metrics.csv").read_text().count("\n") == 2


def _local_data(path, tmp_path) -> list[str]:
    """Overrides pointing a config at data made here: image_folder.yaml's digits, written as PNG files."""
    if path.name != "image_folder.yaml":
        return []
    import runpy

    script = Path(__file__).parent.parent / "scripts" / "make_digit_images.py"
    runpy.run_path(str(script))["write_digit_images"](tmp_path / "digits_images")
    return [f"data.images={tmp_path / 'digits_images'}"]


def _check_torchvision_on_fake_data(path, cfg, tmp_path):
    """The model's size from input_shape alone, then one epoch on FakeData images of the set's shape."""
    from dlcli.nn.network import build_model
    from dlcli.nn.summary import summary_dict

    assert cfg.data.torchvision and cfg.data.download  # torchvision fetches the files when they are missing
    assert summary_dict(build_model(cfg))["total_params"] == TORCHVISION_PARAMS[path.name]
    channels, height, width = cfg.model.input_shape
    fake = ["train.epochs=1", "data.torchvision=FakeData", "data.download=false", f"data.image_size=[{height},{width}]",
            f"data.color={'grayscale' if channels == 1 else 'rgb'}"]
    run = train(path, fake, run_dir=tmp_path / "run", progress=False).run_dir
    assert (run / "metrics.csv").read_text().count("\n") == 2


def _check_higgs_without_data(path, cfg, tmp_path):
    """The lecture's model, and the not-cached message (an empty cache, download off: no network)."""
    from dlcli.errors import ConfigError
    from dlcli.nn.network import build_model
    from dlcli.nn.summary import summary_dict

    assert cfg.data.openml == 23512 and not cfg.data.download
    cfg.model.input_shape = [28]
    assert summary_dict(build_model(cfg))["total_params"] == 74_051  # the lecture's Keras model
    empty = tmp_path / "empty-root"
    with pytest.raises(ConfigError, match=r"data\.openml: OpenML data set 23512 is not in the cache folder") as info:
        prepare(load_config(path, [f"data.root={empty}"]))
    assert str(empty / "openml") in str(info.value) and "data.download=true" in str(info.value)
    assert not empty.exists()  # nothing was created, nothing fetched


def test_quickstart_reaches_95_percent_test_accuracy(tmp_path):
    run = train(Path("configs/quickstart.yaml").resolve(), run_dir=tmp_path / "run", progress=False).run_dir
    assert evaluate(run)["metrics"]["accuracy"] >= 0.95
