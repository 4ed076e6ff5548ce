"""`data.images`: a folder with one subfolder of images per class, as torchvision's ImageFolder reads it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...config import DataConfig
from ...errors import SpecError
from ..resources import worker_count
from .arrays import (
    GRAY_MODES,
    IMAGE_EXTENSIONS,
    ArrayImages,
    FileImages,
    ImageSource,
    check_fits,
    hidden,
    image_batches,
    is_image,
    stream_reason,
    streams,
)

PARALLEL_FROM = 2000  # decode through DataLoader workers from this many files on


def load_folder(data: DataConfig) -> ImageSource:
    from PIL import Image, UnidentifiedImageError

    root = Path(data.images)
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise SpecError(f"{root} {what}; give a folder with one subfolder of images per class (relative paths are "
                        "relative to the config file's folder)", "images")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p.name for p in root.iterdir() if p.is_file() and is_image(p)]
    if len(class_dirs) < 2:
        found = f"{len(loose)} images directly in it and " if loose else ""
        raise SpecError(f"{root} needs one subfolder of images per class, at least two (like torchvision's "
                        f"ImageFolder: {root.name}/cat/1.png, {root.name}/dog/2.png); found {found}"
                        f"{len(class_dirs)} subfolder(s)", "images")
    paths, labels, skipped = [], [], 0
    for label, folder in enumerate(class_dirs):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not hidden(p, folder))
        images = [p for p in files if is_image(p)]
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
    # Kept in memory only when they fit (`streams`), but decoded one at a time even when streamed.
    check_fits(data, math.prod(files.shape) * 4, f"one {size[0]}x{size[1]} {color} image as float32", "images")
    classes = [p.name for p in class_dirs]
    source = ImageSource({"train": files}, {"train": np.array(labels, dtype=np.int64)}, classes, str(root), "images")
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
        for chunk in image_batches(files, worker_count(data.workers) if len(files) >= PARALLEL_FROM else 0):
            array[start:start + len(chunk)] = chunk
            start += len(chunk)
    except OSError as exc:  # from a worker the message ends with the worker's own last line: keep that
        message = str(exc).strip().splitlines()[-1].removeprefix("OSError: ")
        raise SpecError(f"{message}; remove or replace it", "images") from None
    source.images["train"] = ArrayImages(array)
    source.notes.append(f"images: {what}, decoded into memory ({nbytes / 1e6:,.1f} MB as float32)")
    return source
