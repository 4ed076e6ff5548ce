"""Image sources for `data:` -> a `Dataset`: torchvision sets by name, and folders of images, one per class.

Splits are carved as for tables, seeded and stratified; the scaler is fitted per channel on the
train images; augmentation applies to the train split only. Every problem a user can fix raises
SpecError at a `data:` key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...config import DataConfig
from ...errors import DataError, SpecError
from ...messages import did_you_mean, few
from ...nn.augment import build_augment
from ..dataset import Dataset, Fitted
from ..resources import worker_count
from ..splits import carve
from .arrays import (
    IMAGE_EXTENSIONS,
    ImageSamples,
    ImageSource,
    decode_image,
    fit_scaler,
    hidden,
    is_image,
    to_float,
)


def load_images(data: DataConfig, *, task: str, seed: int, fitted: Fitted | None = None) -> Dataset:
    """`data.torchvision` or `data.images` -> a `Dataset` of images (C, H, W); a run's `fitted` scaler and
    classes are used instead of fitting them."""
    fitted = fitted or Fitted()
    scaler, classes = fitted.scaler, fitted.classes
    key = "torchvision" if data.torchvision is not None else "images"
    if task == "regression":
        raise SpecError("images come with class labels, so the task is classification: use a classification loss "
                        "(e.g. sparse_categorical_crossentropy) with a softmax output", key)
    if key == "torchvision":
        from .torchvision import load_torchvision

        if data.split.test > 0:
            raise SpecError(f"{data.torchvision} comes with its own test split, which dlcli uses as the test split; "
                            "leave split.test out (split.val carves validation images from the train split)",
                            "split.test")
        source = load_torchvision(data)
    else:
        from .folders import load_folder

        source = load_folder(data)
    _binarize(source, data)
    if classes is not None and [str(c) for c in classes] != [str(c) for c in source.classes]:
        raise SpecError(f"the run was trained on the classes {few(classes)}, but {source.description} has "
                        f"{few(source.classes)}", key)
    parts = _carve(source, data, task, seed)

    train_images, train_labels = parts["train"]
    shape = train_images.shape
    workers = worker_count(data.workers)
    if scaler is None and data.scale != "none":
        scaler = fit_scaler(data.scale, train_images, workers)
    augment = build_augment(data.augment, shape)
    splits = {}
    for name, (images, labels) in parts.items():
        transform = augment if name == "train" else None
        if transform is not None or source.stream:
            splits[name] = ImageSamples(images, labels, scaler, transform)
        else:
            splits[name] = (to_float(images.array, scaler), labels)
    notes = source.notes
    if augment is not None:
        names = ", ".join(spec["name"] if isinstance(spec, dict) else str(spec) for spec in data.augment)
        notes.append(f"augment: train images are augmented one by one ({names}) through DataLoader workers")
    counts = np.bincount(train_labels, minlength=len(source.classes)).tolist()
    return Dataset(splits, task, shape, None, list(source.classes), scaler, source.description,
                   counts=counts, notes=notes)


def load_image_inputs(path: str | Path, data: DataConfig, *, input_shape, scaler) -> tuple[np.ndarray, list[str]]:
    """Images to predict on: one file, or a folder of them (flat or with class subfolders).

    Each is converted to the model's channels (1: grayscale, 3: RGB) and resized to its (H, W),
    as in training, then scaled with the run's scaler. Returns x float32 (n, C, H, W) and each
    file's path relative to `path` (its name for a single file), sorted.
    """
    root = Path(path).expanduser().resolve()
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise DataError(f"this model takes inputs shaped {list(shape)}, not images (channels 1 or 3, height, width)")
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and is_image(p) and not hidden(p, root))
        if not files:
            raise DataError(f"{root}: holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        names = [p.relative_to(root).as_posix() for p in files]
    else:
        files, names = [root], [root.name]
    color = "grayscale" if shape[0] == 1 else "rgb"
    x = np.empty((len(files), *shape), dtype=np.uint8)
    for i, file in enumerate(files):
        try:
            x[i] = decode_image(file, color, shape[1:])
        except OSError as exc:
            raise DataError(str(exc)) from None
    return to_float(x, scaler), names


def _binarize(source: ImageSource, data: DataConfig) -> None:
    """`positive: [class names]`: those classes become class 1, every other class 0."""
    if data.positive is None:
        return
    wanted = {str(v) for v in data.positive}
    names = [str(c) for c in source.classes]
    unknown = sorted(wanted - set(names))
    if unknown:
        raise SpecError(f"{unknown[0]!r} is not a class of {source.description}{did_you_mean(unknown[0], names)} "
                        f"(classes: {few(names, limit=20)})", "positive")
    positive = np.array([name in wanted for name in names])
    source.labels = {k: positive[v].astype(np.int64) for k, v in source.labels.items()}
    source.classes = [0, 1]


def _carve(source: ImageSource, data: DataConfig, task: str, seed: int) -> dict[str, tuple]:
    """(images, labels) per split: val (and, for folders, test) carved from train as for tables."""
    test = 0.0 if "test" in source.images else data.split.test
    images, labels = source.images["train"], source.labels["train"]
    # Carve image numbers: the same seeded, stratified split as a table of len(images) rows.
    index = carve(len(images), labels, test, data.split.val, seed, source.description)
    parts = {"train": (images, labels)} if index is None else \
        {name: (images.take(i), labels[i]) for name, i in index.items()}
    if "test" in source.images:
        parts["test"] = (source.images["test"], source.labels["test"])
    return parts
