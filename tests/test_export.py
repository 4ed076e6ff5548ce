"""`dlcli export` (ONNX through onnxruntime, torch.export programs) and `dlcli.load_run`.

Exported files are checked against another runtime (onnxruntime, a reloaded torch.export program in
a process without dlcli) and the folded preprocessing against the scaler and fill values applied by
hand with numpy from the run's scaler.json and labels.json.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import dlcli
from dlcli.commands.export import (
    CHECK_BATCHES,
    ExportError,
    Preprocessed,
    export,
    export_module,
    exportable,
    require_onnx,
)
from dlcli.nn.network import build_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

FEATURES = [f"f{j}" for j in range(6)]


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A binary classifier on a table with missing values (missing: mean) and standard scaling, 2 epochs."""
    folder = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(3)
    x = rng.normal(loc=[0, 5, -3, 10, 0, 1], scale=[1, 2, 0.5, 4, 1, 3], size=(300, 6))
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 4).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame.iloc[::17, 1] = np.nan  # missing values in one feature, filled with its train mean
    frame["label"] = np.where(y == 1, "signal", "background")
    frame.to_csv(folder / "table.csv", index=False)
    (folder / "cfg.yaml").write_text(
        "name: tab\ndata: {path: table.csv, target: label, split: {val: 0.2, test: 0.3}, scale: standard, "
        "missing: mean}\nmodel:\n  layers:\n    - {type: dense, units: 16, activation: relu}\n"
        "    - {type: batchnorm}\n    - {type: dropout, rate: 0.3}\n    - {type: dense, units: 1, activation: sigmoid}\n"
        "loss: binary_crossentropy\noptimizer: {name: adam, lr: 0.01}\ntrain: {epochs: 2, batch_size: 32, threads: 1}\n")
    result = dlcli.train(folder / "cfg.yaml", runs_root=folder / "runs", progress=False)
    return folder, result


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_onnx_export_of_a_run_matches_predict_with_preprocessing_folded(table_run, tmp_path):
    folder, result = table_run
    run_dir = result.run_dir
    done = export(run_dir)
    assert done.path == run_dir / "export" / "model.onnx" and done.path.exists()
    meta = json.loads(done.metadata_path.read_text())
    assert meta["input"] == {"name": "features", "shape": ["batch", 6], "dtype": "float32"}
    assert meta["feature_names"] == FEATURES and meta["classes"] == ["background", "signal"]
    assert meta["opset"] >= 17 and meta["preprocessing"] == "folded" and meta["scaler"] is None
    assert meta["torch_version"] == torch.__version__ and meta["dlcli_version"] == dlcli.__version__
    import hashlib

    assert meta["config_sha256"] == hashlib.sha256((run_dir / "config.yaml").read_bytes()).hexdigest()
    model = onnx.load(str(done.path))
    assert {p.key: json.loads(p.value) for p in model.metadata_props} == meta  # the metadata round trip
    assert model.opset_import[0].version == meta["opset"]

    # Raw rows (NaN included) straight from the file, against `dlcli predict` on the same file.
    raw = pd.read_csv(folder / "table.csv")
    session = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    features = raw[FEATURES].to_numpy(np.float32)
    probs = session.run(None, {"features": features})[0][:, 0]
    table = dlcli.predict(run_dir, folder / "table.csv").table
    np.testing.assert_allclose(probs, table["prob_signal"], rtol=0, atol=1e-5)
    assert (np.where(probs > 0.5, "signal", "background") == table["predicted"]).all()
    for n in CHECK_BATCHES:  # the batch axis is dynamic
        assert session.run(None, {"features": features[:n]})[0].shape == (n, 1)

    # Unfolded (as a torch program, the quicker export): the scaler and fill values applied by hand from
    # model.json give the folded ONNX model's outputs.
    plain = export(run_dir, format="torch", output=tmp_path / "plain.pt2", include_preprocessing=False)
    meta2 = json.loads((tmp_path / "plain.pt2.json").read_text())
    assert meta2["preprocessing"] == "not folded" and meta2["fill"] == json.loads(
        (run_dir / "labels.json").read_text())["fill"]
    fill = np.array([meta2["fill"].get(n, np.nan) for n in FEATURES], dtype=np.float32)
    offset, scale = (np.array(meta2["scaler"][k], dtype=np.float32) for k in ("offset", "scale"))
    by_hand = (np.where(np.isnan(features), fill, features) - offset) / scale
    with torch.inference_mode():
        plain_probs = torch.export.load(plain.path).module()(torch.from_numpy(by_hand.astype(np.float32)))
    np.testing.assert_allclose(plain_probs.numpy()[:, 0], probs, rtol=1e-5, atol=1e-6)

    # The torch program reloads, and runs, in a process where dlcli cannot be imported.
    pt2 = export(run_dir, format="torch")
    np.save(tmp_path / "x.npy", features[:7])
    code = ("import sys; sys.modules['dlcli'] = None; import numpy as np, torch; "
            f"m = torch.export.load({str(pt2.path)!r}).module(); "
            f"print(m(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).detach().numpy().ravel().tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(json.loads(out.stdout.strip().splitlines()[-1]), probs[:7], rtol=1e-5, atol=1e-6)


KINDS = {
    "ffnn": ([8], [{"type": "dense", "units": 12, "activation": "relu"}, {"type": "dense", "units": 3,
                                                                          "activation": "softmax"}]),
    "cnn": ([1, 8, 8], [{"type": "conv2d", "filters": 4, "padding": "same", "activation": "relu"},
                        {"type": "maxpool2d"}, {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]),
    "maxout": ([8], [{"type": "maxout", "units": 6, "pieces": 3}, {"type": "dense", "units": 1, "activation": "sigmoid"}]),
    "batchnorm": ([2, 6, 6], [{"type": "conv2d", "filters": 3}, {"type": "batchnorm"}, {"type": "relu"},
                              {"type": "flatten"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]),
    "dropout": ([8], [{"type": "dense", "units": 10, "activation": "tanh"}, {"type": "dropout", "rate": 0.5},
                      {"type": "dense", "units": 2}]),
}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_model_kind_exports_in_both_formats_and_agrees_with_torch():
    torch.manual_seed(0)
    for kind, (shape, layers) in KINDS.items():
        network = build_model({"input_shape": shape, "layers": layers})
        if kind == "batchnorm":  # running statistics that are not the identity
            network.train()
            network(torch.randn(64, *shape) * 3 + 1)
        if kind == "cnn":
            network = network.to(memory_format=torch.channels_last)  # as training leaves a CNN
        network = exportable(network)
        feed = np.random.default_rng(1).normal(size=(7, *shape)).astype(np.float32)
        expected = network.predict(torch.from_numpy(feed)).numpy()
        data, worst = export_module(Preprocessed(network), feed, expected, "onnx")
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        for n in (1, 2, 7, 50):  # 50: more rows than any batch the export was traced or checked with
            x = np.random.default_rng(n).normal(size=(n, *shape)).astype(np.float32)
            want = network.predict(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(session.run(None, {"input": x})[0], want, rtol=1e-4, atol=1e-5, err_msg=kind)
        program, _ = export_module(Preprocessed(network), feed, expected, "torch")
        import io

        reloaded = torch.export.load(io.BytesIO(program)).module()
        x = torch.randn(5, *shape)
        np.testing.assert_allclose(reloaded(x).detach().numpy(), network.predict(x).numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=kind)


class DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x  # a branch on the values: no graph can hold it


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_what_cannot_be_exported_or_does_not_agree_is_an_error_and_writes_nothing(table_run, monkeypatch):
    network = build_model({"input_shape": [4], "layers": [{"type": "dense", "units": 2}]}).eval()
    network.body.append(DataDependent())
    feed = np.ones((7, 4), np.float32)
    with pytest.raises(ExportError, match="cannot be exported"):
        export_module(Preprocessed(network), feed, network.predict(torch.from_numpy(feed)).numpy(), "onnx")
    good = build_model({"input_shape": [4], "layers": [{"type": "dense", "units": 2}]}).eval()
    wrong = good.predict(torch.from_numpy(feed)).numpy() + 1e-3  # what dlcli would have predicted, changed
    with pytest.raises(ExportError, match="does not reproduce"):
        export_module(Preprocessed(good), feed, wrong, "torch")
    # Without the export extra: one line saying how to install it, before any work.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportError, match=r"uv sync --extra export"):
        require_onnx()
    _, result = table_run
    with pytest.raises(ExportError, match="onnxruntime"):
        export(result.run_dir, output=result.run_dir / "never.onnx")
    assert not (result.run_dir / "never.onnx").exists()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_load_run_predicts_as_dlcli_predict_does(table_run):
    folder, result = table_run
    assert result.history == dlcli.load_run(result.run_dir).history and len(result.history) == 2
    run = dlcli.load_run(folder / "runs" / "tab", checkpoint="last", device="cpu")  # a folder of runs: its newest
    assert isinstance(run, dlcli.Run) and run.path == result.run_dir and run.config.name == "tab"
    assert not run.model.training and next(run.model.parameters()).device.type == "cpu"
    assert list(run.history_frame["epoch"]) == [1, 2] and "val_loss" in run.history_frame
    frame = pd.read_csv(folder / "table.csv")
    expected = dlcli.predict(result.run_dir, folder / "table.csv", checkpoint="last").table
    got = run.predict(frame)
    pd.testing.assert_frame_equal(got, expected)
    from_array = run.predict(frame[FEATURES].to_numpy())  # rows in the config's feature order
    np.testing.assert_array_equal(from_array["prob_signal"], expected["prob_signal"])
    assert any("filled" in note for note in run.notes)
    x = torch.from_numpy(np.nan_to_num(frame[FEATURES].to_numpy(np.float32))[:20])
    assert torch.equal(run.model.predict(x), run.model.predict(x))  # dropout off: the same twice


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_weights_over_the_protobuf_limit_go_to_external_data_checked_in_onnxruntime(table_run, tmp_path, monkeypatch):
    """Without allocating 2 GB: the limit lowered to 0 bytes, so the small run's weights count as too large."""
    from dlcli.commands import export as E

    folder, result = table_run
    network = exportable(dlcli.load_run(result.run_dir, device="cpu").model)
    feed = np.ones((7, 6), np.float32)
    monkeypatch.setattr(E, "EXTERNAL_DATA_BYTES", 0)
    with pytest.raises(ExportError, match="2 GB"):  # one file cannot hold them: refused without a data file
        export_module(Preprocessed(network), feed, network.predict(torch.from_numpy(feed)).numpy(), "onnx")

    done = export(result.run_dir, output=tmp_path / "big.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.json", "big.onnx", "big.onnx.data"]
    assert done.metadata["external_data"] == "big.onnx.data"
    graph = onnx.load(str(tmp_path / "big.onnx"), load_external_data=False)
    weights = list(graph.graph.initializer)
    assert weights and all(t.data_location == onnx.TensorProto.EXTERNAL for t in weights)
    assert {e.value for t in weights for e in t.external_data if e.key == "location"} == {"big.onnx.data"}
    # The weights read back by onnx equal the checkpoint's: the dense layers' matrices, byte for byte.
    full = onnx.load(str(tmp_path / "big.onnx"))
    arrays = [onnx.numpy_helper.to_array(t) for t in full.graph.initializer]
    for p in (p.detach().numpy() for p in network.parameters() if p.ndim == 2):
        assert any(a.shape == p.shape and np.array_equal(a, p) for a in arrays)
    session = ort.InferenceSession(str(tmp_path / "big.onnx"), providers=["CPUExecutionProvider"])
    raw = pd.read_csv(folder / "table.csv")
    probs = session.run(None, {"features": raw[FEATURES].to_numpy(np.float32)})[0][:, 0]
    np.testing.assert_allclose(probs, dlcli.predict(result.run_dir, folder / "table.csv").table["prob_signal"],
                               rtol=0, atol=1e-5)

    # An export that does not agree leaves neither file, nor its staging folder, behind.
    real = Preprocessed.forward
    monkeypatch.setattr(Preprocessed, "forward", lambda self, x: real(self, x) + 1e-3)
    with pytest.raises(ExportError, match="does not reproduce"):
        export(result.run_dir, output=tmp_path / "bad.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.json", "big.onnx", "big.onnx.data"]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_export_errors_through_the_cli_are_one_line_exit_2_and_leave_nothing(table_run, tmp_path, monkeypatch):
    import collections
    import shutil

    from typer.testing import CliRunner

    from dlcli.cli.app import app
    from dlcli.runs import files

    _, result = table_run

    def copy(name, keep_checkpoints=True):
        target = tmp_path / name
        shutil.copytree(result.run_dir, target, ignore=shutil.ignore_patterns(
            "export", *(() if keep_checkpoints else ("checkpoints",))))
        return target

    def cli(*args):
        out = CliRunner().invoke(app, ["export", *map(str, args)])
        assert "Traceback" not in out.output and (out.exception is None or isinstance(out.exception, SystemExit))
        lines = [ln for ln in out.output.splitlines() if ln.startswith("error:")]
        assert out.exit_code == 2 and len(lines) == 1, out.output
        return lines[0]

    assert "best.pt and last.pt are missing" in cli(copy("none", keep_checkpoints=False))
    damaged = copy("damaged")
    (damaged / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint" * 10)
    assert "damaged" in cli(damaged) and "--checkpoint last" in cli(damaged)
    foreign = copy("foreign")  # a pickle that would build an object: refused by weights_only=True, never run
    torch.save({"model": {}, "counts": collections.Counter(a=1)}, foreign / "checkpoints" / "last.pt")
    assert "would run code; refusing" in cli(foreign, "--checkpoint", "last")
    assert not any((tmp_path / name / "export").exists() for name in ("none", "damaged", "foreign"))
    named = cli(result.run_dir, "--format", "torch", "-o", tmp_path / "x.onnx")  # the name says the other format
    assert "is for --format onnx" in named and "x.pt2" in named and not (tmp_path / "x.onnx").exists()

    # A read-only export folder: writing there fails as it does without write permission (tests run as root).
    readonly = copy("readonly")
    (readonly / "export").mkdir()
    (readonly / "export" / "model.onnx").write_bytes(b"an earlier export")  # stays as it was
    real = files.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == (readonly / "export").resolve():
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(files.tempfile, "mkstemp", mkstemp)
    assert "cannot be written (permission denied)" in cli(readonly).lower()
    assert [(f.name, f.read_bytes()) for f in (readonly / "export").iterdir()] == [("model.onnx", b"an earlier export")]

    # A mismatch: the exported graph made to differ from the network dlcli predicts with.
    mismatch = copy("mismatch")
    forward = Preprocessed.forward
    monkeypatch.setattr(Preprocessed, "forward", lambda self, x: forward(self, x) + 1e-3)
    assert "does not reproduce dlcli's predictions" in cli(mismatch)
    assert not (mismatch / "export").exists()  # not even the folder the export made
