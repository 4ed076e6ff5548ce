"""`export`: a trained run as a file that runs without dlcli, for C++ frameworks (ONNX) or plain PyTorch.

    onnx    RUN_DIR/export/model.onnx through `torch.onnx.export` (torch.export underneath), opset OPSET,
            the batch axis dynamic; read by ONNX Runtime (CMSSW's PhysicsTools/ONNXRuntime, Athena),
            ROOT's TMVA SOFIE. Needs the `export` extra (onnx, onnxruntime, onnxscript).
    torch   RUN_DIR/export/model.pt2, a `torch.export` program: `torch.export.load(f).module()(x)`.

The exported model outputs what `dlcli predict` reports: probabilities (p of class 1 for a binary
classifier, one per class for a multi-class one) or the regression values. With preprocessing folded
in (the default), it takes raw features in the config's feature order: `missing: mean`'s fill values
and the fitted scaler are the graph's first two steps. `model.json` beside the file (and the ONNX
file's metadata_props) says what goes in and what comes out.

Nothing is reported as exported before the file was run on rows of the run's data (batches of 1, 2
and 7) and agreed with dlcli's own predictions; a file that does not agree is not left behind.

One ONNX file is a protobuf message, which cannot pass 2 GB. A network whose weights come near that
keeps them in ONNX's external-data format: model.onnx holds the graph, model.onnx.data beside it the
weights (model.json's "external_data" names it; the two files travel together).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__, runs
from ..data import load_dataset
from ..engine.tracking import log_run_files
from ..errors import DlcliError, RunError
from ..nn.network import Network
from ..runs.files import user_file_mode
from ..runs.run import Run

OPSET = 18  # fixed, so a file exported today reads the same in a runtime pinned to an older release
RTOL, ATOL = 1e-4, 1e-5  # how closely the exported file must reproduce dlcli's predictions
CHECK_BATCHES = (1, 2, 7)  # 1 and 7: the batch axis is dynamic, not baked in from the trace (made with 2+)
TRACE_BATCH = 3
FORMATS = ("onnx", "torch")
SUFFIXES = {"onnx": ".onnx", "torch": ".pt2"}
EXTRA_HINT = "uv sync --extra export (or pip install 'dlcli[export]')"
# Weights past this many bytes go to an external-data file: protobuf refuses a message of 2 GiB or more,
# and the graph, names and metadata need room beside the weights.
EXTERNAL_DATA_BYTES = 2**31 - 2**27


class ExportError(DlcliError):
    """The model cannot be exported, or the exported file does not reproduce the run's predictions (exit 2)."""


@dataclass
class Exported:
    """What `export` wrote: the model file, its description (model.json), and how it was checked."""

    path: Path
    metadata_path: Path
    format: str
    checkpoint: str  # best | last: the one used
    epoch: int
    metadata: dict
    checked_batches: tuple[int, ...] = CHECK_BATCHES
    max_difference: float = 0.0  # the largest |exported - dlcli| over the checked rows
    notes: list[str] = field(default_factory=list)


class Preprocessed(nn.Module):
    """The network with the run's input preparation in front and its output activation behind:
    NaN -> fill value (missing: mean), then (x - offset) / scale, then the network's predict."""

    def __init__(self, network: Network, *, offset=None, scale=None, fill=None):
        super().__init__()
        self.network = network
        self.fill = None if fill is None else nn.Buffer(torch.as_tensor(fill, dtype=torch.float32))
        self.offset = None if offset is None else nn.Buffer(torch.as_tensor(offset, dtype=torch.float32))
        self.scale = None if scale is None else nn.Buffer(torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fill is not None:
            x = torch.where(torch.isnan(x), self.fill, x)
        if self.offset is not None:
            x = (x - self.offset) / self.scale
        return self.network.head(self.network(x))


def export(run_dir: str | Path, *, checkpoint: str = "best", format: str = "onnx", output: str | Path | None = None,
           include_preprocessing: bool = True) -> Exported:
    """Export a run's network (best or last checkpoint) as ONNX or a torch.export program; see the module docstring.

    Returns an Exported. Raises ExportError for a model the exporter cannot take or a file that does
    not reproduce dlcli's predictions (nothing is written then), RunError for a broken run directory.
    """
    if format not in FORMATS:
        raise ExportError(f"--format must be onnx or torch, got '{format}'")
    if output is not None:
        other = next((f for f, suffix in SUFFIXES.items() if f != format and Path(output).suffix == suffix), None)
        if other is not None:
            raise ExportError(f"-o {output}: a {Path(output).suffix} name is for --format {other}, and this is "
                              f"--format {format}; name it {Path(output).with_suffix(SUFFIXES[format]).name}, or "
                              f"pass --format {other}")
    if format == "onnx":
        require_onnx()
    run = Run.open(run_dir)
    made_folder = None
    if output is None:
        made_folder = None if (run.path / "export").is_dir() else run.path / "export"
        path = runs.run_folder(run.path, "export") / f"model{SUFFIXES[format]}"
    else:
        path = Path(output).expanduser()
        runs.check_writable(path)  # before the work: a mistyped -o fails at once
    metadata_path = path.with_suffix(".json") if format == "onnx" else path.with_name(path.name + ".json")
    try:
        network, chosen, epoch = run.network(checkpoint, torch.device("cpu"))
        network = exportable(network)
        module, folded = preprocessed(run, network, include_preprocessing)
        notes: list[str] = []
        raw, scaled = check_rows(run, notes)
        with torch.inference_mode():
            expected = network.predict(torch.from_numpy(scaled)).numpy()
        feed = raw if folded else scaled
        data_path = path.with_name(path.name + ".data") if format == "onnx" and too_large(module) else None
        metadata = describe(run, network, format, folded, chosen, epoch)
        metadata["external_data"] = data_path.name if data_path else None
        data, difference = export_module(module, feed, expected, format, metadata, data_path=data_path)
        written = [data_path] if data_path is not None else []
        try:  # a model file without its weights or its description is not an export: none is left
            runs.write_atomic(path, data)  # whole or not at all: a failure leaves an earlier export's file as it was
            written.append(path)
            runs.write_json(metadata_path, metadata)
        except BaseException:
            for file in written:
                file.unlink(missing_ok=True)
            raise
    except BaseException:
        if made_folder is not None and made_folder.is_dir() and not any(made_folder.iterdir()):
            made_folder.rmdir()  # the export/ folder this failed export made: not left behind empty
        raise
    if path.parent == run.path / "export":  # a run tracked with MLflow gets its exported model too
        log_run_files(run.path, folders=["export"], warn=notes.append)
    return Exported(path, metadata_path, format, chosen, epoch, metadata, CHECK_BATCHES, difference, notes)


def exportable(network: Network) -> Network:
    """The network on the CPU, in eval mode and contiguous (NCHW) memory: a channels-last trace would bake the
    layout into the graph, which C++ callers feed as plain row-major arrays."""
    return network.to("cpu", memory_format=torch.contiguous_format).eval()


def export_module(module: nn.Module, feed: np.ndarray, expected: np.ndarray, format: str = "onnx",
                  metadata: dict | None = None, *, data_path: Path | None = None) -> tuple[bytes, float]:
    """The exported file's bytes, once it reproduced `expected` (dlcli's outputs) from `feed` on every batch of
    CHECK_BATCHES, and the largest difference seen. ExportError when it cannot be exported or does not agree.

    With `data_path` (ONNX), the weights go to that external-data file, written once the model agreed; the
    bytes returned are then the graph that refers to it by name, to be written beside it. An ONNX model
    too large for one file (`too_large`) needs it."""
    module = module.eval()
    if format == "onnx":
        metadata = metadata or {"input": {"name": "input"}, "output": {"name": "output"}}
        return _onnx(module, feed, expected, metadata, data_path)
    return _torch_program(module, feed, expected)


def weight_bytes(module: nn.Module) -> int:
    """The bytes of a module's parameters and buffers: what an ONNX file holds as its initializers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def too_large(module: nn.Module) -> bool:
    """Whether the module's ONNX file would pass protobuf's 2 GB limit: its weights go to external data then."""
    return weight_bytes(module) > EXTERNAL_DATA_BYTES


def require_onnx():
    """onnx and onnxruntime (the `export` extra), or an ExportError saying how to install them."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  torch.onnx.export's translator
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the {exc.name} package: {EXTRA_HINT}") from None
    return onnx, onnxruntime


def preprocessed(run: Run, network: Network, include: bool) -> tuple[Preprocessed, dict]:
    """The module to export, and what of the run's preparation it folds in ({} when nothing)."""
    shape = run.input_shape or network.input_shape
    fill = run.labels.get("fill") if run.config.data is not None and run.config.data.missing == "mean" else None
    scaler = run.scaler
    if not include or (scaler is None and not fill):
        return Preprocessed(network), {}
    folded: dict = {}
    fill_vector = None
    if fill:
        names = run.labels.get("feature_names") or []
        if len(names) != math.prod(shape):
            raise ExportError(f"{run.path}: the run fills missing values of {len(names)} named features, but the "
                              f"model takes inputs shaped {list(shape)}; export with --no-include-preprocessing")
        # A feature the training rows never missed has no fill value: NaN there stays NaN, as predict refuses it.
        fill_vector = np.array([fill.get(n, np.nan) for n in names], dtype=np.float32).reshape(shape)
        folded["fill"] = True
    offset = scale = None
    if scaler is not None:
        if scaler.per == "channel":
            broadcast = (-1,) + (1,) * (len(shape) - 1)
            offset, scale = scaler.offset.reshape(broadcast), scaler.scale.reshape(broadcast)
        else:
            offset, scale = scaler.offset.reshape(shape), scaler.scale.reshape(shape)
        folded["scaler"] = True
    return Preprocessed(network, offset=offset, scale=scale, fill=fill_vector), folded


def check_rows(run: Run, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """max(CHECK_BATCHES) rows of the run's data: (raw, as the network takes them). Raw rows are the scaled ones
    mapped back through the scaler; with missing: mean, the last row's first filled feature is NaN again,
    so the folded fill is checked too. A run whose data cannot be read is checked on random rows."""
    count = max(CHECK_BATCHES)
    scaler, shape = run.scaler, run.input_shape
    scaled = None
    if run.config.data is not None:
        try:
            data = load_dataset(run.config.data, task=run.task, seed=run.config.seed, scaler=scaler,
                                classes=run.labels.get("classes"), fill=run.labels.get("fill"))
            split = data.splits.get("test", data.splits.get("val", data.splits["train"]))
            scaled = _first_rows(split, count)
        except DlcliError as exc:
            notes.append(f"the run's data could not be read ({str(exc).splitlines()[0]}); checked on random rows")
    if scaled is None or len(scaled) == 0:
        scaled = np.random.default_rng(0).standard_normal((count, *shape)).astype(np.float32)
    while len(scaled) < count:  # a tiny split: its rows again
        scaled = np.concatenate([scaled, scaled])[:count]
    scaled = np.ascontiguousarray(scaled[:count], dtype=np.float32)
    raw = unscale(scaler, scaled) if scaler is not None else scaled.copy()
    fill = run.labels.get("fill") if run.config.data is not None and run.config.data.missing == "mean" else None
    names = run.labels.get("feature_names") or []
    filled = [j for j, n in enumerate(names) if fill and n in fill]
    if filled and len(names) == raw[0].size:
        j = filled[0]
        raw.reshape(count, -1)[-1, j] = np.nan
        value = np.float32(fill[names[j]])
        if scaler is not None:
            value = (value - scaler.offset[j if scaler.per == "feature" else 0]) / scaler.scale[
                j if scaler.per == "feature" else 0]
        scaled.reshape(count, -1)[-1, j] = value
    return raw, scaled


def _first_rows(split, count: int) -> np.ndarray:
    """The first `count` inputs of a split: (x, y) arrays, or a torch Dataset of samples."""
    if isinstance(split, tuple):
        return np.asarray(split[0][:count])
    samples = []
    if isinstance(split, torch.utils.data.IterableDataset):
        for x, _ in split:
            samples.append(np.asarray(x))
            if len(samples) == count:
                break
    else:
        samples = [np.asarray(split[i][0]) for i in range(min(count, len(split)))]
    return np.stack(samples) if samples else np.empty((0,))


def unscale(scaler, x: np.ndarray) -> np.ndarray:
    """The scaler's transform undone: x * scale + offset (per value of a row, or per channel)."""
    if scaler.per == "channel":
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x * scaler.scale.reshape(shape) + scaler.offset.reshape(shape)).astype(np.float32)
    flat = x.reshape(len(x), -1) * scaler.scale + scaler.offset
    return flat.reshape(x.shape).astype(np.float32)


def describe(run: Run, network: Network, format: str, folded: dict, checkpoint: str, epoch: int) -> dict:
    """model.json: what goes in, what comes out, and where it came from."""
    shape = list(run.input_shape or network.input_shape)
    task = run.task
    classes = run.labels.get("classes")
    images = run.labels.get("feature_names") is None and len(shape) > 1
    if task == "binary":
        output = {"name": "probabilities", "shape": ["batch", 1],
                  "meaning": f"p(class 1{'' if not classes else ' = ' + str(classes[-1])})"}
    elif task == "multiclass":
        output = {"name": "probabilities", "shape": ["batch", int(math.prod(network.output_shape))],
                  "meaning": "p(class i), in class-id order"}
    else:
        output = {"name": "predictions", "shape": ["batch", *network.output_shape], "meaning": "the regression values"}
    scaler = run.scaler
    fill = run.labels.get("fill") if run.config.data is not None and run.config.data.missing == "mean" else None
    config_file = run.path / runs.CONFIG
    meta = {
        "format": format,
        "input": {"name": "images" if images else "features", "shape": ["batch", *shape], "dtype": "float32"},
        "output": output,
        "feature_names": run.labels.get("feature_names"),
        "classes": classes,
        "task": task,
        "preprocessing": "folded" if folded else ("none" if scaler is None and not fill else "not folded"),
        "scaler": None if scaler is None or folded.get("scaler") else scaler.to_dict(),
        "fill": None if not fill or folded.get("fill") else fill,
        "opset": OPSET if format == "onnx" else None,
        "torch_version": torch.__version__,
        "dlcli_version": __version__,
        "config_sha256": hashlib.sha256(config_file.read_bytes()).hexdigest(),
        "run": run.path.name,
        "name": run.config.name or run.path.parent.name,
        "checkpoint": checkpoint,
        "epoch": epoch,
    }
    return meta


def _export_program(module: nn.Module, example: np.ndarray):
    """torch.export's program of `module`, its batch axis dynamic; ExportError naming what it cannot take."""
    batch = torch.export.Dim("batch", min=1)
    x = torch.from_numpy(example[:TRACE_BATCH].copy())
    try:
        return torch.export.export(module, (x,), dynamic_shapes=({0: batch},))
    except Exception as exc:  # noqa: BLE001  the exporter's many error kinds all mean the same to a user
        raise ExportError(f"the model cannot be exported: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {first[:300]}"


def _compare(got: np.ndarray, expected: np.ndarray, what: str) -> float:
    got = np.asarray(got).reshape(expected.shape)
    if not np.allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True):
        worst = float(np.nanmax(np.abs(got - expected)))
        raise ExportError(f"the exported model does not reproduce dlcli's predictions on {what} (largest difference "
                          f"{worst:.3g}, allowed {ATOL} + {RTOL} x |value|); nothing was written")
    return float(np.nanmax(np.abs(got - expected))) if got.size else 0.0


def _onnx(module: nn.Module, feed: np.ndarray, expected: np.ndarray, metadata: dict,
          data_path: Path | None = None) -> tuple[bytes, float]:
    """The ONNX file's bytes, checked in onnxruntime, and the largest difference seen; with `data_path`, the
    weights written there (see export_module)."""
    onnx, ort = require_onnx()
    if data_path is None and too_large(module):
        raise ExportError(f"the model's weights ({weight_bytes(module) / 2**30:.1f} GiB) do not fit in one ONNX file "
                          "(protobuf's 2 GB limit): export the run with dlcli export, which writes them to "
                          "external data beside the file")
    program = _export_program(module, feed)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its chatter
            onnx_program = torch.onnx.export(program, (torch.from_numpy(feed[:TRACE_BATCH].copy()),), None,
                                             input_names=[metadata["input"]["name"]],
                                             output_names=[metadata["output"]["name"]], opset_version=OPSET,
                                             dynamo=True, verbose=False)
        proto = onnx_program.model_proto
    except Exception as exc:  # noqa: BLE001  an op without an ONNX translation, among others
        raise ExportError(f"the model cannot be exported to ONNX: {_reason(exc)}") from None
    _name_batch_axis(proto)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    proto.producer_name, proto.producer_version = "dlcli", __version__
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if data_path is not None:
        return _onnx_external(proto, data_path, feed, expected, options)
    buffer = io.BytesIO()
    onnx.save_model(proto, buffer)
    data = buffer.getvalue()
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"onnxruntime cannot load the exported model: {_reason(exc)}; nothing was written") from None
    return data, _check_session(session, feed, expected)


def _onnx_external(proto, data_path: Path, feed: np.ndarray, expected: np.ndarray, options) -> tuple[bytes, float]:
    """The graph's bytes, with the weights in ONNX's external-data format in `data_path`. Both are written to a
    staging folder beside `data_path` and checked there (onnxruntime reads the weights from the file the graph
    names); the weights move into place only once they agreed."""
    onnx, ort = require_onnx()
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{data_path.name}.", dir=data_path.parent))
    except OSError as exc:
        raise RunError(f"{data_path}: cannot be written ({exc.strerror or exc})") from None
    try:
        model_file = stage / data_path.name.removesuffix(".data")
        try:  # size_threshold=0: every weight in the data file, none left behind in the graph
            onnx.save_model(proto, str(model_file), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_path.name, size_threshold=0)
        except OSError as exc:
            raise RunError(f"{data_path}: cannot be written ({exc.strerror or exc})") from None
        try:
            session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"onnxruntime cannot load the exported model: {_reason(exc)}; "
                              "nothing was written") from None
        worst = _check_session(session, feed, expected)
        del session  # the data file is mapped while a session holds it
        data = model_file.read_bytes()
        os.chmod(stage / data_path.name, user_file_mode())
        os.replace(stage / data_path.name, data_path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return data, worst


def _check_session(session, feed: np.ndarray, expected: np.ndarray) -> float:
    """The largest difference between the session's outputs and `expected` on each batch of CHECK_BATCHES rows;
    ExportError (from _compare) where they do not agree."""
    name = session.get_inputs()[0].name
    worst = 0.0
    for n in CHECK_BATCHES:
        got = session.run(None, {name: np.ascontiguousarray(feed[:n])})[0]
        worst = max(worst, _compare(got, expected[:n], f"a batch of {n}"))
    return worst


def _name_batch_axis(proto) -> None:
    """The batch axis's symbol (torch.export's `s77`) renamed `batch` everywhere in the graph, as model.json
    names it, so a C++ caller reading the input's shape sees what it means."""
    first = proto.graph.input[0].type.tensor_type.shape.dim[0]
    symbol = first.dim_param
    if not symbol:
        return
    for info in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = "batch"


def _torch_program(module: nn.Module, feed: np.ndarray, expected: np.ndarray) -> tuple[bytes, float]:
    """The .pt2 file's bytes, reloaded and checked, and the largest difference seen."""
    program = _export_program(module, feed)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    data = buffer.getvalue()
    reloaded = torch.export.load(io.BytesIO(data)).module()
    worst = 0.0
    with torch.inference_mode():
        for n in CHECK_BATCHES:
            got = reloaded(torch.from_numpy(np.ascontiguousarray(feed[:n]))).numpy()
            worst = max(worst, _compare(got, expected[:n], f"a batch of {n}"))
    return data, worst
