"""Image sources for `data:`: torchvision data sets by name, and folders of images, one subfolder per class.

Images are held as uint8 (n, C, H, W) until a split is made: in memory they become float32 in
[0, 1], channels first, scaled per channel with statistics of the train split; a split that is
augmented, or too large for memory, becomes an `ImageSamples` torch Dataset read through
DataLoader workers one sample at a time (decode, augment, scale). Splits are carved as for
tables, seeded and stratified. Every problem a user can fix raises SpecError at a `data:` key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .augment import build_augment
from .batches import worker_count
from .config import DataConfig
from .data import ChannelStats, Dataset, available_memory
from .data import _carve as carve_rows
from .errors import DataError, SpecError
from .registry import did_you_mean

# What torchvision's ImageFolder reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")  # PIL modes without color
STREAM_SHARE = 4  # stream: auto keeps a source in memory when its float32 size is below free memory / 4
FAKE_SIZES = {"train": 500, "test": 100}  # FakeData has no files: this many random images per split
_PARALLEL_FROM = 2000  # decode through DataLoader workers from this many files on


# ----------------------------------------------------------------------------------------------
# Images, held or read from files


class ArrayImages:
    """Images held in memory as uint8 (n, C, H, W)."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    def get(self, i: int) -> np.ndarray:
        return self.array[i]

    def take(self, index: np.ndarray) -> ArrayImages:
        return ArrayImages(self.array[index])


@dataclass
class FileImages:
    """Image files decoded on demand to uint8 (C, H, W): converted to `color`, resized to `size` (H, W)."""

    paths: list[str]
    color: str  # "grayscale" | "rgb"
    size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (1 if self.color == "grayscale" else 3, *self.size)

    def get(self, i: int) -> np.ndarray:
        return decode_image(self.paths[i], self.color, self.size)

    def take(self, index: np.ndarray) -> FileImages:
        return FileImages([self.paths[i] for i in index], self.color, self.size)


def decode_image(path: str | Path, color: str, size: tuple[int, int] | None) -> np.ndarray:
    """One file -> uint8 (C, H, W): grayscale (PIL's luma) or RGB (alpha dropped), resized bilinearly.

    A file that cannot be decoded raises OSError naming it (also from a DataLoader worker).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit: rescale, where convert("L") would clip
                im = Image.fromarray(np.round(np.asarray(im, dtype=np.float64) * (255 / 65535)).clip(0, 255)
                                     .astype(np.uint8))
            im = im.convert("L" if color == "grayscale" else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            a = np.array(im)  # a writable copy: torch.from_numpy warns on read-only arrays
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot read {path} as an image ({exc})") from None
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


class ImageSamples(torch.utils.data.Dataset):
    """One split read sample by sample: the image as float32 (C, H, W) in [0, 1], augmented, scaled."""

    def __init__(self, images: ArrayImages | FileImages, labels: np.ndarray, scaler=None, augment=None):
        self.images, self.labels, self.augment = images, np.asarray(labels, dtype=np.int64), augment
        self.offset = self.scale = None
        if scaler is not None:
            shape = (-1, 1, 1) if scaler.per == "channel" else images.shape
            self.offset = torch.from_numpy(scaler.offset).reshape(shape)
            self.scale = torch.from_numpy(scaler.scale).reshape(shape)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(np.asarray(self.images.get(i))).float().div_(255)
        if self.augment is not None:
            x = self.augment(x)  # per sample: each call draws its own random parameters
        if self.offset is not None:
            x = (x - self.offset) / self.scale
        return x, int(self.labels[i])


class _Raw(torch.utils.data.Dataset):
    """uint8 images one by one, for decoding or gathering statistics through DataLoader workers."""

    def __init__(self, images: ArrayImages | FileImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.images.get(i)))


def _batches(images: ArrayImages | FileImages, workers: int, batch: int = 256):
    """uint8 (b, C, H, W) numpy batches in order; files are decoded in `workers` processes."""
    if isinstance(images, ArrayImages):
        for start in range(0, len(images), batch):
            yield images.array[start:start + batch]
        return
    loader = torch.utils.data.DataLoader(_Raw(images), batch_size=batch, num_workers=workers)
    for chunk in loader:
        yield chunk.numpy()


# ----------------------------------------------------------------------------------------------
# Entry points


@dataclass
class _Source:
    """What a source gives before splitting: images per named split, labels, class names."""

    images: dict[str, ArrayImages | FileImages]  # "train" (+ "test" for torchvision sets)
    labels: dict[str, np.ndarray]  # int64 class ids, per split
    classes: list
    description: str  # Dataset.source
    key: str  # the data: key naming the source, for errors: "torchvision" | "images"
    stream: bool = False  # every split is read sample by sample (ImageSamples), none held as float32
    notes: list[str] = field(default_factory=list)


def load_images(data: DataConfig, *, task: str, seed: int, scaler=None, classes: list | None = None):
    """`data.torchvision` or `data.images` -> a `Dataset` (see data.py) of images (C, H, W)."""
    key = "torchvision" if data.torchvision is not None else "images"
    if task == "regression":
        raise SpecError("images come with class labels, so the task is classification: use a classification loss "
                        "(e.g. sparse_categorical_crossentropy) with a softmax output", key)
    if key == "torchvision":
        from .imagesets import load_torchvision

        if data.split.test > 0:
            raise SpecError(f"{data.torchvision} comes with its own test split, which dlcli uses as the test split; "
                            "leave split.test out (split.val carves validation images from the train split)",
                            "split.test")
        source = load_torchvision(data)
    else:
        source = _load_folder(data)
    _binarize(source, data)
    if classes is not None and [str(c) for c in classes] != [str(c) for c in source.classes]:
        raise SpecError(f"the run was trained on the classes {_few(classes)}, but {source.description} has "
                        f"{_few(source.classes)}", key)
    parts = _carve(source, data, task, seed)

    train_images, train_labels = parts["train"]
    shape = train_images.shape
    workers = worker_count(data.workers)
    if scaler is None and data.scale != "none":
        scaler = _fit_scaler(data.scale, train_images, workers)
    augment = build_augment(data.augment, shape)
    splits = {}
    for name, (images, labels) in parts.items():
        transform = augment if name == "train" else None
        if transform is not None or source.stream:
            splits[name] = ImageSamples(images, labels, scaler, transform)
        else:
            splits[name] = (_to_float(images.array, scaler), labels)
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
        files = sorted(p for p in root.rglob("*") if p.is_file() and _is_image(p) and not _hidden(p, root))
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
    return _to_float(x, scaler), names


# ----------------------------------------------------------------------------------------------
# Image folders


def _load_folder(data: DataConfig) -> _Source:
    from PIL import Image, UnidentifiedImageError

    root = Path(data.images)
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise SpecError(f"{root} {what}; give a folder with one subfolder of images per class (relative paths are "
                        "relative to the config file's folder)", "images")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p.name for p in root.iterdir() if p.is_file() and _is_image(p)]
    if len(class_dirs) < 2:
        found = f"{len(loose)} images directly in it and " if loose else ""
        raise SpecError(f"{root} needs one subfolder of images per class, at least two (like torchvision's "
                        f"ImageFolder: {root.name}/cat/1.png, {root.name}/dog/2.png); found {found}"
                        f"{len(class_dirs)} subfolder(s)", "images")
    paths, labels, skipped = [], [], 0
    for label, folder in enumerate(class_dirs):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder))
        images = [p for p in files if _is_image(p)]
        skipped += len(files) - len(images)
        if not images:
            raise SpecError(f"the class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                            "add images or remove the folder", "images")
        paths += [str(p) for p in images]
        labels += [label] * len(images)
    # Headers only (no pixels): every image's size and mode, to pick the shape and the color.
    sizes, gray = set(), True
    first_of = {}
    for file in paths:
        try:
            with Image.open(file) as im:
                size, mode = (im.height, im.width), im.mode
        except (OSError, UnidentifiedImageError) as exc:
            raise SpecError(f"cannot read {file} as an image ({exc}); remove or replace it", "images") from None
        sizes.add(size)
        first_of.setdefault(size, file)
        gray = gray and mode in GRAY_MODES
    if data.image_size is not None:
        size = tuple(data.image_size)
    elif len(sizes) > 1:
        examples = "; ".join(f"{h}x{w} ({first_of[(h, w)]})" for h, w in sorted(sizes)[:3])
        raise SpecError(f"the images differ in size: {examples}{', ...' if len(sizes) > 3 else ''}; set "
                        "data.image_size: [height, width] to resize them all to one size", "images")
    else:
        size = sizes.pop()
    color = data.color or ("grayscale" if gray else "rgb")
    files = FileImages(paths, color, size)
    classes = [p.name for p in class_dirs]
    source = _Source({"train": files}, {"train": np.array(labels, dtype=np.int64)}, classes, str(root), "images")
    nbytes = len(files) * math.prod(files.shape) * 4
    what = f"{len(files):,} images in {len(classes)} class folders, {size[0]}x{size[1]} {color}"
    if data.image_size is not None and len(sizes | {size}) > 1:
        what += " (resized)"
    if skipped:
        source.notes.append(f"images: skipped {skipped} file(s) that are not images ({', '.join(IMAGE_EXTENSIONS)})")
    source.stream = streams(data, nbytes)
    if source.stream:
        source.notes.append(f"images: {what}, read from disk through DataLoader workers ({stream_reason(data, nbytes)})")
        return source
    array = np.empty((len(files), *files.shape), dtype=np.uint8)
    start = 0
    try:
        for chunk in _batches(files, worker_count(data.workers) if len(files) >= _PARALLEL_FROM else 0):
            array[start:start + len(chunk)] = chunk
            start += len(chunk)
    except OSError as exc:  # from a worker the message ends with the worker's own last line: keep that
        message = str(exc).strip().splitlines()[-1].removeprefix("OSError: ")
        raise SpecError(f"{message}; remove or replace it", "images") from None
    source.images["train"] = ArrayImages(array)
    source.notes.append(f"images: {what}, decoded into memory ({nbytes / 1e6:,.1f} MB as float32)")
    return source


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


# ----------------------------------------------------------------------------------------------
# Labels, splits, scaling, memory


def _binarize(source: _Source, data: DataConfig) -> None:
    """`positive: [class names]`: those classes become class 1, every other class 0."""
    if data.positive is None:
        return
    wanted = {str(v) for v in data.positive}
    names = [str(c) for c in source.classes]
    unknown = sorted(wanted - set(names))
    if unknown:
        raise SpecError(f"{unknown[0]!r} is not a class of {source.description}{did_you_mean(unknown[0], names)} "
                        f"(classes: {_few(names, 20)})", "positive")
    positive = np.array([name in wanted for name in names])
    source.labels = {k: positive[v].astype(np.int64) for k, v in source.labels.items()}
    source.classes = [0, 1]


def _carve(source: _Source, data: DataConfig, task: str, seed: int) -> dict[str, tuple]:
    """(images, labels) per split: val (and, for folders, test) carved from train as for tables."""
    from .columns import Origin
    from .tables import Rows

    test = 0.0 if "test" in source.images else data.split.test
    images, labels = source.images["train"], source.labels["train"]
    # Carve row numbers, not images: the same seeded, stratified split as a table of len(images) rows.
    rows = Rows(np.arange(len(images)), labels, [], None, Origin(source.description, source.key, data, main=True))
    parts = {name: (images.take(r.x), r.y) for name, r in carve_rows(rows, test, data.split.val, task, seed).items()}
    if "test" in source.images:
        parts["test"] = (source.images["test"], source.labels["test"])
    return parts


def _fit_scaler(kind: str, images: ArrayImages | FileImages, workers: int):
    """Per-channel statistics of the train images in [0, 1], gathered batch by batch."""

    stats = ChannelStats()
    for chunk in _batches(images, workers if isinstance(images, FileImages) else 0):
        stats.add(chunk / 255.0)
    return stats.scaler(kind)


def _to_float(array: np.ndarray, scaler, step: int = 1024) -> np.ndarray:
    """uint8 (n, C, H, W) -> float32 in [0, 1], scaled, chunk by chunk (no float64 or second full copy)."""
    out = np.empty(array.shape, dtype=np.float32)
    for start in range(0, len(array), step):
        chunk = array[start:start + step].astype(np.float32)
        chunk /= 255
        out[start:start + step] = scaler.transform(chunk) if scaler is not None else chunk
    return out


def streams(data: DataConfig, nbytes: int) -> bool:
    """stream: true, or auto and `nbytes` of float32 images would take over 1/STREAM_SHARE of free memory."""
    if data.stream != "auto":
        return bool(data.stream)
    free = available_memory()
    return free is not None and nbytes > free / STREAM_SHARE


def stream_reason(data: DataConfig, nbytes: int) -> str:
    if data.stream is True:
        return "stream: true"
    free = available_memory() or 0
    return f"{nbytes / 1e9:.1f} GB as float32 is over 1/{STREAM_SHARE} of the {free / 1e9:.1f} GB of free memory"


def _few(items, limit: int = 5) -> str:
    items = list(items)
    return ", ".join(map(str, items[:limit])) + (", ..." if len(items) > limit else "")
