"""Images held in memory or read from files, as uint8 (C, H, W), and the torch Dataset that serves them.

In memory a split becomes float32 in [0, 1], channels first, scaled per channel with statistics of
the train split; a split that is augmented, or too large for memory, becomes an `ImageSamples`
torch Dataset read through DataLoader workers one sample at a time (decode, augment, scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...config import DataConfig
from ...errors import SpecError
from ..resources import available_memory
from ..scaler import ChannelStats

# What torchvision's ImageFolder reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")  # PIL modes without color
STREAM_SHARE = 4  # stream: auto keeps a source in memory when its float32 size is below free memory / 4


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


class RawImages(torch.utils.data.Dataset):
    """uint8 images one by one, for decoding or gathering statistics through DataLoader workers."""

    def __init__(self, images: ArrayImages | FileImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.images.get(i)))


def image_batches(images: ArrayImages | FileImages, workers: int, batch: int = 256):
    """uint8 (b, C, H, W) numpy batches in order; files are decoded in `workers` processes."""
    if isinstance(images, ArrayImages):
        for start in range(0, len(images), batch):
            yield images.array[start:start + batch]
        return
    loader = torch.utils.data.DataLoader(RawImages(images), batch_size=batch, num_workers=workers)
    for chunk in loader:
        yield chunk.numpy()


@dataclass
class ImageSource:
    """What a source gives before splitting: images per named split, labels, class names."""

    images: dict[str, ArrayImages | FileImages]  # "train" (+ "test" for torchvision sets)
    labels: dict[str, np.ndarray]  # int64 class ids, per split
    classes: list
    description: str  # Dataset.source
    key: str  # the data: key naming the source, for errors: "torchvision" | "images"
    stream: bool = False  # every split is read sample by sample (ImageSamples), none held as float32
    notes: list[str] = field(default_factory=list)


def fit_scaler(kind: str, images: ArrayImages | FileImages, workers: int):
    """Per-channel statistics of the train images in [0, 1], gathered batch by batch."""

    stats = ChannelStats()
    for chunk in image_batches(images, workers if isinstance(images, FileImages) else 0):
        stats.add(chunk / 255.0)
    return stats.scaler(kind)


def to_float(array: np.ndarray, scaler, step: int = 1024) -> np.ndarray:
    """uint8 (n, C, H, W) -> float32 in [0, 1], scaled, chunk by chunk (no float64 or second full copy)."""
    out = np.empty(array.shape, dtype=np.float32)
    for start in range(0, len(array), step):
        chunk = array[start:start + step].astype(np.float32)
        chunk /= 255
        out[start:start + step] = scaler.transform(chunk) if scaler is not None else chunk
    return out


def check_fits(data: DataConfig, nbytes: int, what: str, key: str) -> None:
    """SpecError at `key` (data.image_size when set) when `what`, `nbytes` large, would not fit in the free
    memory: called before those images are decoded, generated or resized."""
    free = available_memory()
    if free is not None and nbytes > free:
        key, advice = ("image_size", "a smaller data.image_size") if data.image_size is not None else \
            (key, "data.image_size: [height, width] to make them smaller")
        raise SpecError(f"{what} would need {nbytes / 1e9:,.1f} GB of memory, {free / 1e9:,.1f} GB available; "
                        f"set {advice}", key)


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


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
