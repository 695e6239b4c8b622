"""Colour-mapped disparity images, for people who would rather look than read."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def _magma_lut() -> np.ndarray:
    """The 256-entry magma colour map as an RGB uint8 table (256, 3).

    OpenCV ships matplotlib's magma table; its entries are rounded where matplotlib's uint8 conversion
    truncates, so a colour may differ from the reference's image by one level.
    """
    index = np.arange(256, dtype=np.uint8).reshape(-1, 1)
    return cv2.applyColorMap(index, cv2.COLORMAP_MAGMA)[:, 0, ::-1].copy()


MAGMA = _magma_lut()
MAGMA_RGBX = np.concatenate([MAGMA, np.zeros((256, 1), np.uint8)], axis=1).view(np.uint32)[:, 0]
"""The table packed as one 32-bit word per colour (R, G, B, 0 in memory order): one gather per pixel."""


def colorize_disparity(disp: np.ndarray, vmax_percentile: float = 95.0, vmin: float | None = None,
                       vmax: float | None = None) -> np.ndarray:
    """Map a disparity image (H, W) to an RGB uint8 image (H, W, 3) with magma.

    As the reference's test_simple.py: vmin is the minimum, vmax the 95th percentile (unless given); values
    above vmax take the top colour. Colour index = floor(256 * normalised value) clipped to [0, 255]
    (matplotlib's rule for a 256-colour map), computed in float64.
    """
    indices = magma_indices(disp, vmax_percentile, vmin, vmax)
    packed = MAGMA_RGBX[indices]
    return np.ascontiguousarray(packed.view(np.uint8).reshape(*indices.shape, 4)[..., :3])


def colorized_image(disp: np.ndarray, vmax_percentile: float = 95.0) -> Image.Image:
    """:func:`colorize_disparity` as a Pillow RGB image (the palette lookup done by Pillow, in C)."""
    indices = magma_indices(disp, vmax_percentile)
    image = Image.frombuffer("P", (indices.shape[1], indices.shape[0]), indices, "raw", "P", 0, 1)
    image.putpalette(MAGMA.tobytes())
    return image.convert("RGB")


def magma_indices(disp: np.ndarray, vmax_percentile: float = 95.0, vmin: float | None = None,
                  vmax: float | None = None) -> np.ndarray:
    """The colour index (H, W) uint8 of each pixel: floor(256 * (disp - vmin) / (vmax - vmin)) in [0, 255].

    ``vmin`` and ``vmax`` default to the minimum and the ``vmax_percentile`` percentile of ``disp``. The
    arithmetic is the float64 of the definition, done in row blocks that stay in the cache.
    """
    disp = np.asarray(disp)
    vmin = float(disp.min()) if vmin is None else float(vmin)
    vmax = percentile(disp, vmax_percentile) if vmax is None else float(vmax)
    scale = vmax - vmin
    indices = np.empty(disp.shape, dtype=np.uint8)
    if not scale > 0:
        indices.fill(0)
        return indices
    # x / scale * 256 == x / (scale / 256) exactly (dividing by a power of two only moves the exponent), and for
    # the non-negative values that survive the clip, truncation by the cast is the floor: two passes fewer.
    step = scale / 256.0
    rows = max(1, _BLOCK_VALUES // max(1, disp.shape[-1]))
    block = np.empty((rows,) + disp.shape[1:], dtype=np.float64)
    for start in range(0, disp.shape[0], rows):
        part = block[:min(rows, disp.shape[0] - start)]
        part[...] = disp[start:start + rows]
        np.subtract(part, vmin, out=part)
        np.divide(part, step, out=part)
        np.clip(part, 0, 255, out=part)
        indices[start:start + rows] = part
    return indices


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (its default linear method, in float64), found without sorting a float64
    copy of a whole image: the two order statistics it interpolates are picked from the few values between
    bounds read off a sample, then interpolated with numpy's formula (equal to numpy's result, tested)."""
    flat = np.asarray(values).ravel()
    count = flat.size
    if count == 0 or not np.isfinite(flat.min()) or not np.isfinite(flat.max()):
        return float(np.percentile(flat.astype(np.float64), q))
    virtual = (count - 1) * np.true_divide(q, 100)
    below = int(np.floor(virtual))
    gamma = virtual - below
    above = min(below + 1, count - 1)
    if count < _SAMPLED_FROM:  # small: one partition of all (np.percentile itself would import numpy.ma, 20 ms+)
        chosen = np.partition(flat, (below, above))
        lower, upper = np.float64(chosen[below]), np.float64(chosen[above])
    else:
        lower, upper = _order_statistics(flat, below, above)
    difference = upper - lower
    return float(upper - difference * (1 - gamma) if gamma >= 0.5 else lower + difference * gamma)


def _order_statistics(flat: np.ndarray, first: int, second: int) -> tuple[np.float64, np.float64]:
    """The ``first`` and ``second`` smallest values of ``flat`` (0-based ranks, first <= second)."""
    step = max(1, flat.size // _SAMPLE_SIZE)
    sample = np.sort(flat[::step])
    # Bounds a few standard deviations of a sampled quantile's rank away (sqrt(m p (1 - p)) positions of m):
    # the fewer values between them, the cheaper their partition. A sample that misses costs speed, not accuracy.
    share = (first + 0.5) / flat.size
    margin = int(_MARGIN_SIGMAS * np.sqrt(sample.size * max(share * (1 - share), 0.01))) + 2
    position = first * sample.size // flat.size
    low = sample[max(0, position - margin)]
    high = sample[min(sample.size - 1, position + margin)]
    smaller = int(np.count_nonzero(flat < low))
    inside = flat[(flat >= low) & (flat <= high)]
    if smaller <= first and second < smaller + inside.size:
        chosen = np.partition(inside, (first - smaller, second - smaller))
        return np.float64(chosen[first - smaller]), np.float64(chosen[second - smaller])
    chosen = np.partition(flat, (first, second))  # the sample missed: the plain way
    return np.float64(chosen[first]), np.float64(chosen[second])


_BLOCK_VALUES = 32 * 1024
"""Values per float64 block of :func:`magma_indices` (256 KB: fits the L2 cache)."""
_SAMPLE_SIZE = 16384
_MARGIN_SIGMAS = 8
_SAMPLED_FROM = 16 * _SAMPLE_SIZE
"""Images smaller than this take numpy's own percentile."""
