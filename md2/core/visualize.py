"""Colour-mapped disparity images, for people who would rather look than read."""

from __future__ import annotations

import cv2
import numpy as np


def _magma_lut() -> np.ndarray:
    """The 256-entry magma colour map as an RGB uint8 table (256, 3).

    OpenCV ships matplotlib's magma table; its entries are rounded where matplotlib's uint8 conversion
    truncates, so a colour may differ from the reference's image by one level.
    """
    index = np.arange(256, dtype=np.uint8).reshape(-1, 1)
    return cv2.applyColorMap(index, cv2.COLORMAP_MAGMA)[:, 0, ::-1].copy()


MAGMA = _magma_lut()


def colorize_disparity(disp: np.ndarray, vmax_percentile: float = 95.0) -> np.ndarray:
    """Map a disparity image (H, W) to an RGB uint8 image (H, W, 3) with magma.

    As the reference's test_simple.py: vmin is the minimum, vmax the 95th percentile; values above vmax take
    the top colour. Colour index = floor(256 * normalised value) clipped to [0, 255] (matplotlib's rule for a
    256-colour map).
    """
    disp = np.asarray(disp, dtype=np.float64)
    vmin = float(disp.min())
    vmax = float(np.percentile(disp, vmax_percentile))
    scale = vmax - vmin
    normalised = (disp - vmin) / scale if scale > 0 else np.zeros_like(disp)
    index = np.clip(np.floor(normalised * 256.0), 0, 255).astype(np.uint8)
    return MAGMA[index]
