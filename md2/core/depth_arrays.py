"""The prediction's arithmetic after the network in NumPy, no torch: what ``md2 predict`` does to a disparity
when the network ran in onnxruntime (:mod:`md2.core.engine`).

Each function reproduces its torch counterpart in float32, operation for operation, so the files written are
those of the torch path to the last bits or within a few float32 roundings (tested against torch):
:func:`images_from_pixels` is ToTensor's ``x.float() / 255``, :func:`disp_to_depth` is
:func:`md2.core.geometry.disp_to_depth`, :func:`upsample` is ``F.interpolate(mode="bilinear",
align_corners=False)`` (:func:`md2.core.inference.upsample`).
"""

from __future__ import annotations

import numpy as np

STEREO_SCALE_FACTOR = 5.4
"""Stereo models learn a 0.1 baseline; KITTI's rig is 0.54 m, so metric depth = 5.4 x predicted depth."""
_FLOAT = np.float32


def images_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """(B, h, w, 3) uint8 -> (B, 3, h, w) float32 in [0, 1], contiguous: x / 255 in float32 (ToTensor's)."""
    images = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(_FLOAT)
    np.divide(images, _FLOAT(255.0), out=images)
    return images


def disp_to_depth(disp: np.ndarray, min_depth: float, max_depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid disparity (any shape, float32) -> (scaled disparity, depth) in float32, as the reference.

    The bounds are Python floats (float64) as in torch, which multiplies and adds a float32 tensor by a Python
    number in float32 after rounding the number to float32.
    """
    min_disp = 1 / max_depth
    max_disp = 1 / min_depth
    disp = np.asarray(disp, dtype=_FLOAT)
    scaled = _FLOAT(max_disp - min_disp) * disp
    scaled += _FLOAT(min_disp)
    return scaled, _FLOAT(1.0) / scaled


def _axis_weights(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For one axis: each output's two source indices and their weights, as torch's CPU kernel computes them:
    source = (out + 0.5) * (in / out) - 0.5 in float32, clamped at 0; the upper neighbour is the lower one at
    the last input index; weights 1 - frac and frac."""
    scale = np.float64(_FLOAT(size_in / size_out)) if size_out else 0.0
    # torch's kernel computes scale * (out + 0.5) - 0.5 in float32, contracted by the compiler into one fused
    # multiply-add (a single rounding): the float32 scale times out + 0.5 is exact in float64, so the float64
    # result rounded once to float32 is the fused one (measured: one rounding per step would move a weight by
    # up to 2e-5 at 1242 pixels, and the pictures with it).
    source = ((np.arange(size_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(_FLOAT)
    np.maximum(source, _FLOAT(0), out=source)
    lower = source.astype(np.int64)  # source >= 0: truncation is the floor
    upper = lower + (lower < size_in - 1)
    frac = (source - lower.astype(_FLOAT)).astype(_FLOAT)
    return lower, upper, (_FLOAT(1) - frac).astype(_FLOAT), frac


def upsample(disp: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (..., h, w) float32 to (..., height, width), torch's ``align_corners=False``.

    Horizontal interpolation first, then vertical, each ``a * w0 + b * w1`` in float32: the order of torch's
    kernel, h0 * (w0 * p00 + w1 * p01) + h1 * (w0 * p10 + w1 * p11). Plane by plane into buffers made once
    (``np.take(..., out=..., mode="clip")`` copies without a buffer of its own; the indices are in range).
    """
    disp = np.asarray(disp, dtype=_FLOAT)
    h, w = disp.shape[-2:]
    left, right, w_left, w_right = _axis_weights(w, width)
    top, bottom, w_top, w_bottom = _axis_weights(h, height)
    w_top, w_bottom = w_top[:, None], w_bottom[:, None]
    planes = disp.reshape(-1, h, w)
    out = np.empty((len(planes), height, width), dtype=_FLOAT)
    rows, part = np.empty((h, width), dtype=_FLOAT), np.empty((h, width), dtype=_FLOAT)
    lower = np.empty((height, width), dtype=_FLOAT)
    for plane, result in zip(planes, out):
        np.multiply(np.take(plane, left, axis=1, out=rows, mode="clip"), w_left, out=rows)
        np.multiply(np.take(plane, right, axis=1, out=part, mode="clip"), w_right, out=part)
        rows += part  # (h, width)
        np.multiply(np.take(rows, top, axis=0, out=result, mode="clip"), w_top, out=result)
        np.multiply(np.take(rows, bottom, axis=0, out=lower, mode="clip"), w_bottom, out=lower)
        result += lower
    return out.reshape(*disp.shape[:-2], height, width)
