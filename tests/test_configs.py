"""Every shipped config validates; those whose data is offline train for one epoch."""

from pathlib import Path

import pytest

from dlcli import evaluate, train
from dlcli.build import prepare
from dlcli.config import load_config

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))
NEEDS_DOWNLOAD = {"higgs_ffnn.yaml"}  # the OpenML CSV; see README "Data"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_trains_one_epoch(path, tmp_path):
    cfg = load_config(path, ["train.epochs=1"])
    if path.name in NEEDS_DOWNLOAD:
        assert cfg.data.path.endswith("higgs.csv")
        cfg.model.input_shape = [28]
        from dlcli.models import build_model
        from dlcli.summary import summary_dict

        assert summary_dict(build_model(cfg))["total_params"] == 74_051  # the lecture's Keras model
        return
    prepare(cfg)
    run = train(path, ["train.epochs=1"], run_dir=tmp_path / "run", progress=False)
    assert (run / "metrics.csv").read_text().count("\n") == 2


def test_quickstart_reaches_95_percent_test_accuracy(tmp_path):
    run = train(Path("configs/quickstart.yaml").resolve(), run_dir=tmp_path / "run", progress=False)
    assert evaluate(run)["metrics"]["accuracy"] >= 0.95
