"""What md2 catches wherever it opens an image file with Pillow: one tuple, so no reader forgets a case.

Pillow reports a file that is not a usable image in several ways: ``UnidentifiedImageError`` and other
``OSError``s (unknown format, truncated data), ``SyntaxError`` / ``ValueError`` / ``struct.error`` /
``EOFError`` (malformed headers and chunks), and ``DecompressionBombError`` when the header promises more than
twice ``Image.MAX_IMAGE_PIXELS`` pixels (a few bytes that would take gigabytes): none of them is a bug of md2,
each is the user's file, so each becomes one line naming that file.
"""

from __future__ import annotations

import struct

from PIL import Image

UNREADABLE_IMAGE: tuple[type[BaseException], ...] = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)
"""Exceptions meaning "this file is not a usable image" (catch them around ``Image.open`` and ``load``)."""
