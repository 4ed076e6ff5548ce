"""Write scikit-learn's handwritten digits as PNG files, one folder per class, for configs/image_folder.yaml.

    uv run python scripts/make_digit_images.py            # -> data/digits_images/0/0000.png, ...
    uv run python scripts/make_digit_images.py OUT_DIR

The 1,797 digits are 8x8 grayscale images with values 0..16; they are stretched to 0..255. Each
file is named after its row in `sklearn.datasets.load_digits()`, so it can be traced back.
Needs no internet: the digits ship with scikit-learn.
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_digit_images(folder: str | Path) -> int:
    """Write every digit as folder/<class>/<row>.png; returns how many were written."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    folder = Path(folder)
    for label in np.unique(digits.target):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    for row, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        Image.fromarray(image, mode="L").save(folder / str(label) / f"{row:04d}.png")
    return len(pixels)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "data" / "digits_images"
    count = write_digit_images(out)
    print(f"wrote {count} digit images into {out}")
