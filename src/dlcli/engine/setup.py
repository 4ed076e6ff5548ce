"""Config -> data, model and loss: the pieces every command needs, checked against each other.

Builders raise `SpecError` relative to their own section; here those become `ConfigError`s naming
the config file, the full key path and its line (`Config.section`), so a misfit reads like any
other config error.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..config.checks import channels_last
from ..config.schema import SOURCES
from ..data import Dataset, Fitted, in_memory
from ..data.labels import class_names
from ..data.resources import available_memory
from ..data.tables.weights import class_factors
from ..messages import few
from ..nn.losses import LossContext, build_loss
from ..nn.network import Network, build_model, footprint
from .datacache import cached_dataset
from .threads import Threads, choose_threads


@dataclass
class Setup:
    config: Config
    data: Dataset | None
    model: Network
    loss: nn.Module
    task: str
    threads: Threads | None = None  # the CPU threads it computes with (threads.py)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare(cfg: Config, *, need_data: bool = True, fitted: Fitted | None = None,
            device: torch.device | None = None, input_shape: tuple[int, ...] | None = None) -> Setup:
    """Load the data (when asked or needed for the input shape), build the model and the loss.

    `input_shape` is a stored run's (labels.json): with it, the model needs no data to be built, so
    `need_data=False` reads none (evaluating a run on a new file, after its training data has gone).

    A stored run passes what it fitted on its train rows (`Run.fitted`): scaler, classes, and the
    `missing: mean` fill values, so nothing is refitted. The model is built on the meta device first,
    and refused when one training step would not fit in `device`'s free memory (the CPU's by default).
    """
    fitted = fitted or Fitted()
    threads = choose_threads(cfg.train.threads, device or torch.device("cpu"))  # before the data is read and scaled
    task = cfg.task_kind
    dataset = None
    if cfg.data is None and need_data:
        raise cfg.error("data", "required key is missing: say where the data is (data.path, data.train or data.dataset)")
    if cfg.data is not None and (need_data or not (cfg.model.input_shape or input_shape)):
        with cfg.section("data"):
            dataset = cached_dataset(cfg.data, task=task, seed=cfg.seed, scaler=fitted.scaler, classes=fitted.classes,
                                   fill=fitted.fill)
        dataset = weigh_events(cfg, dataset, task)
        if cfg.model.input_shape and tuple(cfg.model.input_shape) != dataset.input_shape:
            first = channels_last(cfg.model.input_shape)
            why = " (dlcli is channels-first: [channels, height, width])" if first == list(dataset.input_shape) else ""
            raise cfg.error("model.input_shape", f"is {cfg.model.input_shape} but the data's samples are shaped "
                            f"{list(dataset.input_shape)}{why}; remove input_shape or make it match")
    shape = dataset.input_shape if dataset else input_shape
    with cfg.section("model"):
        check_memory(cfg, build_model(cfg, shape, device="meta"), dataset, device or torch.device("cpu"))
    seed_everything(cfg.seed)
    with cfg.section("model"):
        model = build_model(cfg, shape)
    if dataset is not None:
        check_classes(cfg, dataset, task)
        check_outputs(cfg, model, dataset, task)
        if cfg.monitor.startswith("val_") and cfg.train.early_stopping and "val" not in dataset.splits:
            raise cfg.error("train.early_stopping.monitor", f"'{cfg.monitor}' needs validation data: set "
                            "data.split.val (a fraction) or data.val (a file), or monitor train_loss")
    context = LossContext(
        task=task,
        output_activation=model.output_activation,
        activation=model.head,
        class_counts=dataset.class_counts() if dataset else None,
        class_weight_sums=class_weight_sums(dataset),
        config_dir=cfg.base_dir,
        output_shape=model.output_shape,
        weighted=bool(cfg.data is not None and cfg.data.weight) or cfg.train.class_weight is not None,
    )
    with cfg.section("loss"):
        loss = build_loss(cfg.loss, context)
    return Setup(cfg, dataset, model, loss, task, threads)


def weigh_events(cfg: Config, dataset: Dataset, task: str) -> Dataset:
    """train.class_weight multiplies into the train split's event weights (data.weight's, or becomes them), in a
    copy of `dataset`: a tuning worker's cached data set (datacache.py) keeps its own weights for the next
    trial. A streamed train split gets a view that weighs its rows as it serves them. data.class_names must
    name the classes. ConfigErrors at the key."""
    streamed = not in_memory(dataset.splits["train"])
    weighted = cfg.data.weight is not None or cfg.train.class_weight is not None
    key = "data.weight" if cfg.data.weight else "train.class_weight"
    if streamed and weighted and not hasattr(dataset.splits["train"], "weighed"):
        raise cfg.error(key, "event and class weights are for tables (in memory or streamed); this data is "
                        "images read from disk; remove the key")
    # torch's process group, not distributed.shard(): distributed -> callbacks -> state imports this module
    if streamed and weighted and torch.distributed.is_available() and torch.distributed.is_initialized():
        raise cfg.error(key, "event and class weights are not supported under data-parallel training of a "
                        "streamed table yet (the ranks' weighted losses are not combined); train in one process")
    if cfg.data.class_names is not None:
        with cfg.section("data"):
            class_names(cfg.data.class_names, dataset.classes)
    if cfg.train.class_weight is None:
        return dataset
    if task == "regression":
        raise cfg.error("train.class_weight", "weighs classes, and this is a regression task; remove it")
    if streamed:
        totals = dataset.weight_sums if dataset.weight_sums is not None else dataset.counts
    else:
        y, w = dataset.splits["train"][1], dataset.weight("train")
        totals = np.bincount(y, weights=w, minlength=len(dataset.classes))
    with cfg.section("train"):
        factors = class_factors(cfg.train.class_weight, dataset.classes, totals)
    dataset = copy.copy(dataset)
    dataset.class_factors, dataset.event_weighted = np.asarray(factors, dtype=np.float64), cfg.data.weight is not None
    if streamed:
        dataset.splits = {**dataset.splits, "train": dataset.splits["train"].weighed(factors)}
    else:
        dataset.train_events = w
        dataset.weights = {**(dataset.weights or {}), "train": factors[y] * (1.0 if w is None else w)}
    return dataset


def class_weight_sums(dataset: Dataset | None) -> list[float] | None:
    """The train split's event-weight sum per class (class_balanced's totals: weights)."""
    return None if dataset is None else dataset.class_weight_sums()


def check_memory(cfg: Config, model: Network, data: Dataset | None, device: torch.device) -> None:
    """ConfigError at the layer taking most of it when one training step would not fit in the free memory.

    `model` is built on the meta device (no memory). A batch holds at most the training rows.
    """
    batch = min(cfg.train.batch_size, data.rows()["train"]) if data is not None else cfg.train.batch_size
    need, per_layer = footprint(model, batch)
    free = free_memory(device)
    if free is None or need <= free:
        return
    i = max(range(len(per_layer)), key=per_layer.__getitem__)
    where = "this GPU's" if device.type == "cuda" else "this machine's"
    raise cfg.error(f"model.layers[{i}]", f"the model is too large: a training step of {batch} samples would need "
                    f"{gigabytes(need)} ({gigabytes(per_layer[i])} for this layer's weights and outputs), "
                    f"{gigabytes(free)} of {where} memory available; use fewer units or filters, a smaller input "
                    "or train.batch_size")


def free_memory(device: torch.device) -> int | None:
    """Bytes free on `device`: the GPU's own memory, else the machine's (None when unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_memory()


def gigabytes(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.0f} MB"


def check_classes(cfg: Config, data: Dataset, task: str) -> None:
    """A classifier learns nothing from one class: its training split must hold two at least."""
    counts = data.class_counts() if task != "regression" else None
    present = [data.classes[i] for i, n in enumerate(counts or ()) if n > 0]
    if counts is None or len(present) >= 2:
        return
    key = "data.target" if cfg.data.target else f"data.{next(k for k in SOURCES if getattr(cfg.data, k) is not None)}"
    held = f"one class only ({present[0]!r})" if present else "no samples"
    raise cfg.error(key, f"the training split holds {held}, and a {task} classifier needs two classes or more; "
                    "check the target column and data.positive, or set task: regression for a numeric target")


def check_outputs(cfg: Config, model: Network, data: Dataset, task: str) -> None:
    """The output layer fits the data: units, activation and task against the classes or target width."""
    last = f"model.layers[{len(cfg.model.layers) - 1}]"
    units = model.output_shape[-1] if len(model.output_shape) == 1 else None
    if units is None:
        raise cfg.error(last, f"the output must be flat, got shape {list(model.output_shape)}; end with a dense layer")
    if task == "binary":
        if len(data.classes) > 2:
            n = len(data.classes)
            fix = f"use units: {n} with activation: softmax and loss: categorical_crossentropy"
            # Name what made the task binary: `task:`, else a sigmoid output, else the loss.
            if cfg.task == "binary":
                raise cfg.error("task", f"is binary but the target has {n} classes ({few(data.classes)}); "
                                f"set task: multiclass (or leave it out) and {fix}")
            if model.output_activation != "sigmoid":
                loss = cfg.loss.get("name") if isinstance(cfg.loss, dict) else cfg.loss
                raise cfg.error("loss", f"{loss} is for two classes but the target has {n} "
                                f"({few(data.classes)}); {fix}")
            raise cfg.error(f"{last}.activation", f"a sigmoid output is for two classes but the target has {n} "
                            f"({few(data.classes)}); {fix}")
        if units != 1:
            raise cfg.error(f"{last}.units", f"a binary classifier has 1 output unit (with sigmoid), got {units}")
        if model.output_activation != "sigmoid":
            raise cfg.error(f"{last}.activation", f"a binary classifier needs activation: sigmoid on its output, "
                            f"got '{model.output_activation}'")
    elif task == "multiclass":
        n = len(data.classes)
        if units != n:
            raise cfg.error(f"{last}.units", f"must equal the number of classes, {n} ({few(data.classes)}), got {units}")
        if model.output_activation != "softmax":
            raise cfg.error(f"{last}.activation", f"a multi-class classifier needs activation: softmax on its output, "
                            f"got '{model.output_activation}'")
    else:
        width = data.target_width
        if units != width:
            raise cfg.error(f"{last}.units", f"must equal the number of target values per row, {width}, got {units}")
