"""Augmentations for the train split, by name: `augment: [{name: random_crop, size: 28, padding: 2}, ...]`.

Each builder takes the image shape (C, H, W) and its keyword-only parameters, which are the
config schema (see registry.py), and returns a torchvision.transforms.v2 transform. They run on
one float image in [0, 1] at a time, before scaling, so every sample draws its own random
parameters. This module imports no torch at load: `dlcli validate` checks `augment:` with it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ..errors import SpecError
from ..messages import key_path
from ..registry import Registry, first_problem

AUGMENTS = Registry("augmentation")

Shape = tuple[int, ...]
Positive = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Size = Positive | Annotated[list[Positive], Field(min_length=2, max_length=2)]  # 28 or [H, W]
Probability = Annotated[float, Field(ge=0, le=1)]
NonNeg = Annotated[float, Field(ge=0)]
Range = tuple[float, float]  # [low, high] in YAML
Interpolation = Literal["nearest", "bilinear"]


@AUGMENTS.register("random_crop", "RandomCrop", "crop")
def random_crop(shape: Shape, *, size: Size, padding: NonNegInt | list[NonNegInt] = 0,
                padding_mode: Literal["constant", "edge", "reflect", "symmetric"] = "constant", fill: float = 0.0):
    """A random size x size window of the image after padding its borders (CIFAR's classic: size 32, padding 4)."""
    from torchvision.transforms import v2

    pads = [padding] * 4 if isinstance(padding, int) else list(padding)
    if len(pads) == 2:  # [left/right, top/bottom], as torchvision reads two values
        pads = [pads[0], pads[1], pads[0], pads[1]]
    if len(pads) != 4:
        raise SpecError(f"must be one integer, [left/right, top/bottom] or [left, top, right, bottom], got {padding}",
                        "padding")
    h, w = _pair(size)
    room_h, room_w = shape[1] + pads[1] + pads[3], shape[2] + pads[0] + pads[2]
    if h > room_h or w > room_w:
        raise SpecError(f"a {h}x{w} crop does not fit {shape[1]}x{shape[2]} images padded to {room_h}x{room_w}; "
                        "lower size or raise padding", "size")
    return v2.RandomCrop((h, w), padding=pads if any(pads) else None, padding_mode=padding_mode, fill=fill)


@AUGMENTS.register("horizontal_flip", "RandomHorizontalFlip", "hflip", "flip")
def horizontal_flip(shape: Shape, *, p: Probability = 0.5):
    """Mirror left-right with probability p."""
    from torchvision.transforms import v2

    return v2.RandomHorizontalFlip(p)


@AUGMENTS.register("vertical_flip", "RandomVerticalFlip", "vflip")
def vertical_flip(shape: Shape, *, p: Probability = 0.5):
    """Mirror top-bottom with probability p."""
    from torchvision.transforms import v2

    return v2.RandomVerticalFlip(p)


@AUGMENTS.register("rotation", "RandomRotation", "rotate")
def rotation(shape: Shape, *, degrees: NonNeg | Range, interpolation: Interpolation = "nearest", fill: float = 0.0):
    """Rotate by an angle drawn from [-degrees, degrees] (or [low, high]); corners are filled with `fill`."""
    from torchvision.transforms import v2

    return v2.RandomRotation(degrees, interpolation=_mode(interpolation), fill=fill)


@AUGMENTS.register("affine", "RandomAffine")
def affine(shape: Shape, *, degrees: NonNeg | Range = 0.0,
           translate: tuple[Probability, Probability] | None = None,
           scale: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] | None = None,
           shear: NonNeg | Annotated[list[float], Field(min_length=2, max_length=4)] | None = None,
           interpolation: Interpolation = "nearest", fill: float = 0.0):
    """Rotate, shift (translate: fractions of width and height), zoom (scale: [low, high]) and shear at random."""
    from torchvision.transforms import v2

    return v2.RandomAffine(degrees, translate=translate, scale=scale, shear=shear,
                           interpolation=_mode(interpolation), fill=fill)


@AUGMENTS.register("color_jitter", "ColorJitter")
def color_jitter(shape: Shape, *, brightness: NonNeg | Range = 0.0, contrast: NonNeg | Range = 0.0,
                 saturation: NonNeg | Range = 0.0,
                 hue: Annotated[float, Field(ge=0, le=0.5)] | Range = 0.0):
    """Random brightness, contrast, saturation (factors in [1 - v, 1 + v]) and hue (a shift in [-v, v])."""
    from torchvision.transforms import v2

    return v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)


@AUGMENTS.register("random_resized_crop", "RandomResizedCrop")
def random_resized_crop(shape: Shape, *, size: Size | None = None,
                        scale: Range = (0.08, 1.0), ratio: Range = (3 / 4, 4 / 3),
                        interpolation: Interpolation = "bilinear"):
    """A random part of the image (scale: its area fraction, ratio: its aspect) resized to size (default: the image's)."""
    from torchvision.transforms import v2

    out = _pair(size) if size is not None else (shape[1], shape[2])
    return v2.RandomResizedCrop(out, scale=tuple(scale), ratio=tuple(ratio), interpolation=_mode(interpolation),
                                antialias=True)


@AUGMENTS.register("random_erasing", "RandomErasing", "cutout")
def random_erasing(shape: Shape, *, p: Probability = 0.5,
                   scale: tuple[Probability, Probability] = (0.02, 0.33),
                   ratio: Range = (0.3, 3.3), value: float = 0.0):
    """With probability p, set a random rectangle (scale: its area fraction) to `value` (in [0, 1] pixel units)."""
    from torchvision.transforms import v2

    return v2.RandomErasing(p=p, scale=tuple(scale), ratio=tuple(ratio), value=value)


@AUGMENTS.register("gaussian_blur", "GaussianBlur", "blur")
def gaussian_blur(shape: Shape, *, kernel_size: Size = 3,
                  sigma: Annotated[float, Field(gt=0)] | Range = (0.1, 2.0)):
    """Blur with a Gaussian kernel (odd kernel_size) whose sigma is drawn from [low, high]."""
    from torchvision.transforms import v2

    if any(k % 2 == 0 for k in _pair(kernel_size)):
        raise SpecError(f"must be odd, got {kernel_size}", "kernel_size")
    return v2.GaussianBlur(_pair(kernel_size), sigma=sigma if isinstance(sigma, float | int) else tuple(sigma))


def build_augment(specs: list[Any] | None, shape: Shape):
    """The `augment:` list -> one v2.Compose for images of `shape` (C, H, W), or None when empty.

    Raises SpecError at `augment[i].<param>` (relative to `data:`). Each transform is tried on a
    blank image, so a crop that changes the image size, which val and test images would not
    share, is refused here rather than in the middle of training.
    """
    if not specs:
        return None
    import torch
    from torchvision.transforms import v2

    transforms = []
    probe = torch.zeros(shape)
    for i, spec in enumerate(specs):
        checked, problems = AUGMENTS.check(spec, ("augment", i))
        if problems:
            path, message = first_problem(problems)
            raise SpecError(message, key_path(path))
        params = dict(checked)
        entry = AUGMENTS.get(params.pop("name"))
        try:
            transform = entry.builder(tuple(shape), **params)
            out = transform(probe)
        except SpecError as exc:
            raise SpecError(str(exc), f"augment[{i}]" + (f".{exc.key}" if exc.key else "")) from None
        except (ValueError, TypeError, RuntimeError) as exc:  # torchvision's own checks of the values
            raise SpecError(f"{entry.name}: {exc}", f"augment[{i}]") from None
        if tuple(out.shape) != tuple(shape):
            key = f"augment[{i}].size" if "size" in params else f"augment[{i}]"
            raise SpecError(f"{entry.name} turns {_shape(shape)} images into {_shape(out.shape)}, but validation and "
                            f"test images stay {_shape(shape)}; keep the size (e.g. random_crop with padding) or "
                            "resize every image with data.image_size", key)
        transforms.append(transform)
    return v2.Compose(transforms)


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[1])


def _mode(name: str):
    from torchvision.transforms import InterpolationMode

    return InterpolationMode.NEAREST if name == "nearest" else InterpolationMode.BILINEAR


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape[1:]) + f" ({shape[0]} channel{'s' if shape[0] != 1 else ''})"
