"""Training augmentation and image pyramids, as the reference builds them (its numbers, faster code).

* Pyramid: scale 0 is the (possibly flipped) full image resized to W x H with Pillow's LANCZOS filter, and every
  further scale s (W/2^s x H/2^s) is resized from the previous one with LANCZOS -- the reference's chain of
  ``transforms.Resize(..., interpolation=ANTIALIAS)``. Pillow 10 removed the name ANTIALIAS; it was always an
  alias of LANCZOS, so the pixels are the same.
* Colour jitter: brightness, contrast, saturation in [0.8, 1.2] and hue in [-0.1, 0.1], applied in a random
  order, with one set of parameters for every frame and scale of a sample. Old torchvision (the reference's)
  ``ColorJitter.get_params`` returned a composed transform whose four operations were shuffled; new torchvision
  returns ``(fn_idx, b, c, s, h)`` instead. :class:`ColorJitterParams` holds that tuple and both appliers below
  run the operations in ``order`` -- the old semantics. The reference jittered PIL images (uint8 after every
  operation); md2 jitters float images, as torchvision's tensor functional does: :func:`color_jitter` is that
  definition (any device, batched), and :func:`color_jitter_hwc` is the fast CPU path used by the data workers
  (OpenCV, about 30x faster than torchvision's tensor hue), equal to it within 1e-5 (tested). With
  ``--augment-on device`` the trainer applies :func:`color_jitter` to whole batches on its device instead
  (:mod:`md2.data.device_augment`); the pyramid stays Pillow's in the workers either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image

BRIGHTNESS = (0.8, 1.2)
CONTRAST = (0.8, 1.2)
SATURATION = (0.8, 1.2)
HUE = (-0.1, 0.1)
FLIP_PROBABILITY = 0.5
COLOR_AUG_PROBABILITY = 0.5

# Weights of torchvision's rgb_to_grayscale (ITU-R 601-2 luma).
_GRAY = np.array([0.2989, 0.587, 0.114])
# Operation indices of torchvision's ColorJitter: 0 brightness, 1 contrast, 2 saturation, 3 hue.
_OPERATIONS = ("brightness", "contrast", "saturation", "hue")
_CONTRAST = 1


class ColorJitterParams(NamedTuple):
    """One colour jitter: the order of the four operations (a permutation of 0..3: brightness, contrast,
    saturation, hue) and their factors (hue as a fraction of the hue circle)."""

    order: tuple[int, int, int, int]
    brightness: float
    contrast: float
    saturation: float
    hue: float


class Augmentation(NamedTuple):
    """The random decisions for one training sample: flip left-right, and a colour jitter or None."""

    flip: bool
    jitter: ColorJitterParams | None


def sample_color_jitter(rng: np.random.Generator) -> ColorJitterParams:
    """Draw one jitter: a uniformly random order and uniform factors in the reference's ranges."""
    order = tuple(int(i) for i in rng.permutation(4))
    return ColorJitterParams(order, float(rng.uniform(*BRIGHTNESS)), float(rng.uniform(*CONTRAST)),
                             float(rng.uniform(*SATURATION)), float(rng.uniform(*HUE)))


def draw_augmentation(seed: int, epoch: int, index: int) -> Augmentation:
    """The augmentation of sample ``index`` in ``epoch``: a function of (seed, epoch, index) only, so a run
    (or a resumed run) repeats it whatever the worker count or the order samples are loaded in.

    Colour jitter with probability 0.5, flip with probability 0.5, independently (as the reference).
    """
    rng = np.random.default_rng([seed, epoch, index])
    do_color_aug = rng.random() < COLOR_AUG_PROBABILITY
    do_flip = rng.random() < FLIP_PROBABILITY
    return Augmentation(bool(do_flip), sample_color_jitter(rng) if do_color_aug else None)


def lanczos_pyramid(image: Image.Image, width: int, height: int, num_scales: int) -> list[Image.Image]:
    """Scales 0..num_scales-1 of ``image``: scale s is (width // 2^s) x (height // 2^s), each resized with
    LANCZOS from the previous one (scale 0 from ``image``), exactly the reference's chain."""
    levels = []
    current = image
    for scale in range(num_scales):
        current = current.resize((width // 2**scale, height // 2**scale), Image.Resampling.LANCZOS)
        levels.append(current)
    return levels


def lanczos_levels(image: Image.Image, width: int, height: int, num_scales: int,
                   flip: bool = False) -> list[np.ndarray]:
    """:func:`lanczos_pyramid` of ``image`` (flipped left-right first with ``flip``, as the reference flips
    before resizing) as uint8 arrays (h, w, 3), scale 0 first."""
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return [np.asarray(level) for level in lanczos_pyramid(image, width, height, num_scales)]


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3) -> float32 (h, w, 3) in [0, 1], bit-identical to torchvision's ToTensor (x / 255)."""
    return np.divide(image, np.float32(255.0), dtype=np.float32)


def color_jitter_hwc(image: np.ndarray, params: ColorJitterParams) -> np.ndarray:
    """Jitter a float32 (h, w, 3) RGB image in [0, 1] on the CPU; returns a new array, same shape.

    Each operation is the same formula as torchvision's tensor functional (blend with black, with the grey
    mean, with the per-pixel grey; hue rotation in HSV) followed by the same clamp to [0, 1].
    """
    out = image
    for operation in params.order:
        out = _CPU_OPERATIONS[operation](out, getattr(params, _OPERATIONS[operation]))
    return out if out is not image else image.copy()


def _brightness(image: np.ndarray, factor: float) -> np.ndarray:
    out = image * np.float32(factor)  # factor > 0 and image >= 0: only the upper clamp can act
    return np.minimum(out, np.float32(1.0), out=out)


def _contrast(image: np.ndarray, factor: float) -> np.ndarray:
    mean = float(np.dot(cv2.mean(image)[:3], _GRAY))  # mean of the grey image = grey of the channel means
    out = image * np.float32(factor)
    out += np.float32((1.0 - factor) * mean)
    return np.clip(out, 0.0, 1.0, out=out)


def _saturation(image: np.ndarray, factor: float) -> np.ndarray:
    # factor * rgb + (1 - factor) * grey(rgb) is one 3x3 matrix per pixel.
    matrix = factor * np.eye(3) + (1.0 - factor) * np.outer(np.ones(3), _GRAY)
    out = cv2.transform(image, matrix.astype(np.float32))
    return np.clip(out, 0.0, 1.0, out=out)


def _hue(image: np.ndarray, factor: float) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float input: hue in degrees [0, 360)
    # hue + shift modulo 360, with the shift taken in [0, 360): add it, then take 360 off where the sum
    # reached 360 (OpenCV's masked add on the interleaved image is twice as fast as numpy on a strided plane).
    cv2.add(hsv, ((360.0 * factor) % 360.0, 0.0, 0.0, 0.0), dst=hsv)
    wrapped = cv2.inRange(hsv, (360.0, -1.0, -1.0), (1000.0, 2.0, 2.0))
    cv2.add(hsv, (-360.0, 0.0, 0.0, 0.0), dst=hsv, mask=wrapped)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


_CPU_OPERATIONS = (_brightness, _contrast, _saturation, _hue)
_TENSOR_OPERATIONS = ("adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue")
"""torchvision's tensor functions of the four operations, by name: torchvision is imported by the first call of
:func:`color_jitter` (the ``--augment-on device`` path), not by every data worker and training run (~1.5 s of
start-up, most of it torch._dynamo, which torchvision.ops imports)."""


def color_jitter(images: torch.Tensor, params: ColorJitterParams,
                 sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Jitter float images (..., 3, h, w) in [0, 1] with torchvision's tensor functional, on any device.

    This is the definition the CPU path :func:`color_jitter_hwc` reproduces; use it to jitter a batch on the
    accelerator. Contrast uses each image's own grey mean, so a batch of frames is jittered independently.

    With ``sizes``, images of different sizes come packed side by side: (..., 3, 1, sum(sizes)), image k being
    the next ``sizes[k]`` pixels. Brightness, saturation and hue are per pixel, and contrast then takes each
    packed image's own grey mean, so one call jitters every frame and scale of a sample as separate calls would.
    """
    import torchvision.transforms.functional as TF

    for operation in params.order:
        factor = getattr(params, _OPERATIONS[operation])
        if operation == _CONTRAST and sizes is not None:
            images = _packed_contrast(images, factor, sizes)
        else:
            images = getattr(TF, _TENSOR_OPERATIONS[operation])(images, factor)
    return images


def _packed_contrast(images: torch.Tensor, factor: float, sizes: Sequence[int]) -> torch.Tensor:
    """torchvision's adjust_contrast (the same blend) with the grey mean of each packed image."""
    import torchvision.transforms.functional as TF

    grey = TF.rgb_to_grayscale(images)
    means, start = [], 0
    for size, count in _runs(sizes):  # one reduction per run of equal sizes (the frames of one scale)
        block = grey[..., start:start + size * count].unflatten(-1, (count, size))
        means.append(block.mean(dim=-1, keepdim=True).expand(block.shape).flatten(-2))
        start += size * count
    if start != images.shape[-1]:
        raise ValueError(f"sizes add up to {start} pixels, the images have {images.shape[-1]}")
    mean = torch.cat(means, dim=-1)
    return (factor * images + (1.0 - factor) * mean).clamp(0.0, 1.0)


def _runs(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """(size, count) of each run of equal consecutive sizes."""
    runs: list[tuple[int, int]] = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1] = (size, runs[-1][1] + 1)
        else:
            runs.append((int(size), 1))
    return runs


def nearest_resize(array: np.ndarray, height: int, width: int, flip: bool = False) -> np.ndarray:
    """Nearest-neighbour resize of a (h, w) map to (height, width), optionally flipped left-right.

    Pixel-centre alignment: source index = floor((dst + 0.5) * in / out), clipped -- the rule of the
    reference's skimage ``resize(order=0)`` (raw lidar) and Pillow's NEAREST (depth benchmark PNGs), here in
    exact integer arithmetic; where (dst + 0.5) * in / out is exactly an integer, those libraries' floating
    point may land on the pixel before (a one-pixel shift of a few columns). Flipping the index is the same
    as flipping the resized map. Returns a new C-contiguous array.
    """
    rows = _nearest_indices(array.shape[0], height)
    cols = _nearest_indices(array.shape[1], width)
    if flip:
        cols = cols[::-1]
    return array[rows[:, None], cols[None, :]]


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    centres_times_two = 2 * np.arange(out_size, dtype=np.int64) + 1  # 2 * (dst + 0.5)
    return np.minimum(centres_times_two * in_size // (2 * out_size), in_size - 1)
