"""Image sources: folders of images (folders.py) and torchvision data sets (torchvision.py), held or read
sample by sample (arrays.py), split, scaled and augmented into a `Dataset` (load.py)."""

from .arrays import IMAGE_EXTENSIONS, ImageSamples
from .load import load_image_inputs, load_images

__all__ = ["IMAGE_EXTENSIONS", "ImageSamples", "load_image_inputs", "load_images"]
