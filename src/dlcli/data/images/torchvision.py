"""torchvision data sets by name (`data.torchvision: FashionMNIST`), kept under `data.root`.

Each set's official train and test splits become the train and test splits. Images are taken
from the data set object's arrays (`.data` with `.targets` or `.labels`) rather than decoded one
PIL image at a time, and class names from `.classes`. Files that are missing, or a download that
fails (no internet access), end in a SpecError saying where torchvision wants the files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch

from ...config import DataConfig
from ...errors import SpecError
from ...messages import did_you_mean, normalize
from .arrays import ArrayImages, ImageSource, check_fits, streams

FAKE_SIZES = {"train": 500, "test": 100}  # FakeData has no files: this many random images per split
_IDX = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte "
        "(or their .gz archives, unpacked when download: true)")


@dataclass(frozen=True)
class _Set:
    layout: str | None  # how `.data` holds the images: NHW, NHWC or NCHW; None: read sample by sample
    folder: str  # where under root torchvision keeps the files
    files: str  # the files it wants, for messages
    split_arg: bool = False  # SVHN takes split="train"/"test" instead of train=True/False


SETS = {
    "MNIST": _Set("NHW", "MNIST/raw", _IDX),
    "FashionMNIST": _Set("NHW", "FashionMNIST/raw", _IDX),
    "KMNIST": _Set("NHW", "KMNIST/raw", _IDX),
    "CIFAR10": _Set("NHWC", "cifar-10-batches-py", "data_batch_1 to data_batch_5, test_batch and batches.meta (or "
                    "cifar-10-python.tar.gz in the folder above, unpacked when download: true)"),
    "CIFAR100": _Set("NHWC", "cifar-100-python", "train, test and meta (or cifar-100-python.tar.gz in the folder "
                     "above, unpacked when download: true)"),
    "SVHN": _Set("NCHW", ".", "train_32x32.mat and test_32x32.mat", split_arg=True),
    "FakeData": _Set(None, "", ""),  # random images, for tests: no files, no download
}


def load_torchvision(data: DataConfig) -> ImageSource:
    name = _canonical(data.torchvision)
    spec = SETS[name]
    if name == "FakeData":
        images, labels, classes = _fake(data)
        where = "random images (torchvision FakeData)"
    else:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, name)
        root = Path(data.root)
        images, labels = {}, {}
        where = (root / spec.folder).resolve()
        missing = [p for p in (where, *where.parents) if not p.exists()]  # deepest first
        for split in ("train", "test"):
            kwargs = {"split": split} if spec.split_arg else {"train": split == "train"}
            try:
                dataset = cls(str(root), download=data.download, **kwargs)
            except (URLError, RuntimeError, OSError, ValueError, EOFError) as exc:
                for folder in missing:  # a failed download leaves no empty folders behind
                    try:
                        folder.rmdir()
                    except OSError:
                        break
                raise _unavailable(name, spec, where, data.download, exc) from None
            images[split], labels[split] = _arrays(dataset, spec.layout)
        classes = list(getattr(dataset, "classes", None) or range(int(labels["train"].max()) + 1))
        where = f"{name} (torchvision, {root})"
        if data.image_size is not None:  # every image is resized in memory
            n, channels = sum(len(v) for v in images.values()), images["train"].shape[1]
            channels = {"grayscale": 1, "rgb": 3}.get(data.color, channels)
            check_fits(data, n * channels * math.prod(data.image_size),
                       f"{n:,} images of {name} resized to {data.image_size[0]}x{data.image_size[1]}", "image_size")
        images = {k: _conform(v, data.color, data.image_size) for k, v in images.items()}
    source = ImageSource({k: ArrayImages(v) for k, v in images.items()}, labels, classes, where, "torchvision")
    shape = images["train"].shape[1:]
    nbytes = sum(len(v) for v in images.values()) * math.prod(shape) * 4
    source.stream = streams(data, nbytes)
    source.notes.append(f"torchvision: {name}, {len(images['train']):,} train and {len(images['test']):,} test "
                        f"images of {'x'.join(map(str, shape))}" + (", read sample by sample" if source.stream else ""))
    return source


def _canonical(name: str) -> str:
    by_key = {normalize(k): k for k in SETS}
    if normalize(name) in by_key:
        return by_key[normalize(name)]
    hint = " (EMNIST needs a split argument dlcli does not take yet)" if normalize(name).startswith("emnist") else ""
    raise SpecError(f"unknown torchvision data set '{name}'{did_you_mean(name, list(SETS))}{hint} "
                    f"(choose from {', '.join(SETS)})", "torchvision")


def _arrays(dataset, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """The set's images as uint8 (n, C, H, W) and labels as int64, from its arrays."""
    x = np.asarray(dataset.data.numpy() if isinstance(dataset.data, torch.Tensor) else dataset.data)
    labels = dataset.targets if hasattr(dataset, "targets") else dataset.labels
    y = np.asarray(labels.numpy() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    if layout == "NHW":
        x = x[:, None]
    elif layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.uint8), y


def _fake(data: DataConfig):
    """FakeData: FAKE_SIZES random images of image_size (default 32x32) and color (default rgb), 10 classes."""
    from torchvision.datasets import FakeData

    size = tuple(data.image_size or (32, 32))
    channels = 1 if data.color == "grayscale" else 3
    n = sum(FAKE_SIZES.values())
    check_fits(data, n * channels * math.prod(size), f"{n:,} FakeData images of {size[0]}x{size[1]}", "image_size")
    images, labels = {}, {}
    offset = 0
    for split, n in FAKE_SIZES.items():
        dataset = FakeData(size=n, image_size=(channels, *size), num_classes=10, random_offset=offset)
        offset += n  # the test images differ from the train images
        x = np.empty((n, channels, *size), dtype=np.uint8)
        y = np.empty(n, dtype=np.int64)
        for i in range(n):  # FakeData has no arrays: one PIL image at a time
            image, y[i] = dataset[i]
            a = np.asarray(image)
            x[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        images[split], labels[split] = x, y
    return images, labels, list(range(10))


def _conform(x: np.ndarray, color: str | None, size: list[int] | None, step: int = 1024) -> np.ndarray:
    """data.color and data.image_size applied to a set's uint8 images (n, C, H, W)."""
    if color == "grayscale" and x.shape[1] == 3:
        # PIL's convert("L"): L = (19595 R + 38470 G + 7471 B + 2^15) >> 16, the ITU-R 601-2 luma
        weights = np.array([19595, 38470, 7471], dtype=np.uint32).reshape(1, 3, 1, 1)
        gray = np.empty((len(x), 1, *x.shape[2:]), dtype=np.uint8)
        for start in range(0, len(x), step):
            chunk = (x[start:start + step].astype(np.uint32) * weights).sum(axis=1, keepdims=True)
            gray[start:start + step] = (chunk + (1 << 15)) >> 16
        x = gray
    elif color == "rgb" and x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    if size is not None and tuple(size) != x.shape[2:]:
        resized = np.empty((len(x), x.shape[1], *size), dtype=np.uint8)
        for start in range(0, len(x), step):
            chunk = torch.from_numpy(x[start:start + step]).float()
            out = torch.nn.functional.interpolate(chunk, size=tuple(size), mode="bilinear", antialias=True,
                                                  align_corners=False)
            resized[start:start + step] = out.round_().clamp_(0, 255).to(torch.uint8).numpy()
        x = resized
    return x


def _unavailable(name: str, spec: _Set, where: Path, download: bool, exc: Exception) -> SpecError:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    if len(lines) > 1:  # torchvision's MNIST wraps the network error: "Error downloading ...: ... got: <error>"
        reason += f" ... {lines[-1]}"
    if download:
        return SpecError(f"could not download {name} into {where}: {reason}. Without internet access here, fetch it "
                         f"on a machine that has it (data.download: true there) and copy {spec.files} into {where}",
                         "download")
    said = "" if reason.startswith("Dataset not found") else f" (torchvision said: {reason})"
    return SpecError(f"{name} is not in {where}{said}: torchvision looks there for {spec.files}. Set data.download: "
                     "true to fetch it (needs internet access), or copy those files there", "torchvision")
