"""What convert-jpeg may convert, and whether a JPEG found beside a PNG is that PNG's conversion.

md2 deletes a camera PNG only once its JPEG is verified: these checks decide, for a PNG, whether it is an
8-bit camera image at all (16-bit and alpha PNGs are left alone), and for a JPEG already beside it (an
earlier, interrupted run's, or someone else's), whether it holds the same picture.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CAMERA_MODES = ("L", "RGB", "P")
"""Pillow modes of 8-bit camera images: grey, colour, and a palette of 8-bit colours (converted to RGB)."""
SAME_IMAGE_LEVELS = 1.0
"""How much further (mean grey levels) than md2's own JPEG another encoder's may be from the PNG and still
count as its conversion."""


def _png_bit_depth(path: Path) -> int | None:
    """Bits per sample from a PNG's IHDR chunk (its first: signature 8, length 4, "IHDR" 4, width 4,
    height 4, then the bit depth); None for a file that is not a PNG."""
    with open(path, "rb") as stream:
        head = stream.read(25)
    return head[24] if len(head) == 25 and head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR" else None


def not_a_camera_image(png: Path, image: Image.Image) -> str | None:
    """Why ``image`` (opened from ``png``, header only) is not an 8-bit camera image, or None when it is.

    KITTI's camera PNGs are 8-bit grayscale or RGB. A 16-bit PNG (a depth map, say) would lose everything
    but its top byte in a JPEG, and an alpha channel would be dropped: such files are left alone."""
    depth = _png_bit_depth(png)
    if image.mode not in CAMERA_MODES or (depth is not None and depth > 8):
        bits = f", {depth}-bit" if depth is not None else ""
        return f"{png} is not an 8-bit camera image (mode {image.mode}{bits}): left as it is"
    return None


def _difference(jpeg: Path | bytes, pixels: np.ndarray) -> float:
    """Mean absolute difference (grey levels) between the decoded ``jpeg`` and ``pixels`` (same mode)."""
    with Image.open(io.BytesIO(jpeg) if isinstance(jpeg, bytes) else jpeg) as image:
        decoded = np.asarray(image.convert("RGB" if pixels.ndim == 3 else "L"), dtype=np.int16)
    return float(np.abs(decoded - pixels).mean()) if decoded.shape == pixels.shape else float("inf")


def why_not_its_conversion(jpeg: Path, png: Path, ours: bytes, image: Image.Image) -> str | None:
    """None when the JPEG at ``jpeg`` is the conversion of ``image`` (read from ``png``), else why not.

    Byte for byte md2's own encoding (``ours``, what an earlier run wrote) is the conversion. Another
    encoder's (another tool's at quality 92, such as ImageMagick's) is accepted when its pixels are as close to the
    PNG's as md2's own JPEG's are, within one grey level on average: a neighbouring frame, even of a car
    standing in a jam, differs by about 13 levels on real KITTI frames, md2's own JPEG by about 3.4."""
    if jpeg.read_bytes() == ours:
        return None
    pixels = np.asarray(image, dtype=np.int16)
    theirs, own = _difference(jpeg, pixels), _difference(ours, pixels)
    if theirs <= own + SAME_IMAGE_LEVELS:
        return None
    return (f"{jpeg} is not the conversion of {png.name} (mean difference {theirs:.1f} grey levels, md2's own "
            f"JPEG {own:.1f}): both kept; delete the wrong one and run again")
