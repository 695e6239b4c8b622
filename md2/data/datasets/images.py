"""Decoding a camera image, once, into an RGB Pillow image -- the fastest exact way we measured.

JPEG: Pillow (libjpeg-turbo), the reference's decoder; an RGB JPEG is used as decoded (``convert("RGB")`` would
only copy it, which costs as much as the decode). 8-bit RGB PNG: OpenCV, about 25% faster than Pillow here;
PNG is lossless, so every correct decoder gives the same pixels. Anything else: Pillow and ``convert("RGB")``
as the reference.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from md2.errors import DataError
from md2.images import UNREADABLE_IMAGE

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10


def read_rgb(path: Path, context: str = "") -> Image.Image:
    """The image at ``path`` as an RGB Pillow image (h, w). A missing, unreadable or corrupt file raises
    DataError naming ``path`` (and ``context``, e.g. which frame of which sample wanted it)."""
    where = f"{path}" + (f" ({context})" if context else "")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing image {where}") from None
    except OSError as error:
        raise DataError(f"cannot read image {where}: {error.strerror or error}") from None
    if _is_8bit_rgb_png(data):
        return _decode_png(data, where)
    return _decode_pillow(data, where)


def _is_8bit_rgb_png(data: bytes) -> bool:
    """An 8-bit RGB PNG of at most Pillow's MAX_IMAGE_PIXELS: larger ones go to Pillow, whose decompression
    bomb check refuses them before anything is allocated (OpenCV's own limit is 2**30 pixels, 3 GB)."""
    # IHDR is the first chunk: signature (8) + length (4) + "IHDR" (4) + width (4) + height (4) + depth, type.
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or data[24:26] != b"\x08\x02":
        return False
    pixels = int.from_bytes(data[16:20], "big") * int.from_bytes(data[20:24], "big")
    return Image.MAX_IMAGE_PIXELS is None or pixels <= Image.MAX_IMAGE_PIXELS


def _decode_png(data: bytes, where: str) -> Image.Image:
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        if _IMREAD_RGB is not None:
            pixels = cv2.imdecode(buffer, _IMREAD_RGB)
        else:
            pixels = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
            pixels = None if pixels is None else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    except cv2.error as error:
        raise DataError(f"corrupt image {where}: {error}") from None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if pixels is None or pixels.shape != (height, width, 3):
        raise DataError(f"corrupt image {where}: the PNG data cannot be decoded")
    return Image.fromarray(pixels)


def _decode_pillow(data: bytes, where: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")
    except UNREADABLE_IMAGE as error:
        raise DataError(f"corrupt image {where}: {error}") from None
