"""``--resize-cache DIR``: each training frame's LANCZOS pyramid kept on disk, built once per run, not per use.

A mono sample decodes and resizes three frames, and every frame is a neighbour of two other samples, so one
epoch resizes each frame three times and 20 epochs sixty; the exact LANCZOS chain is most of a loader worker's
time. With the cache, the first use of a frame stores its uint8 pyramid (scales 0..S-1 as the reference builds
them) and every later use reads it back: the same pixels, so the same samples.

Layout: ``DIR/{W}x{H}x{S}/ab/abcdef....pyr``, named by a hash of the source image's absolute path, size and
modification time (a replaced image gets a new entry; stale ones are only disk space: delete the folder to
reclaim it). Each file is a header (magic, version, scales, source width and height), the levels' pixels
row-major (h, w, 3), and a CRC-32 of everything before it. Entries are written to a temporary name and renamed,
so concurrent workers and interrupted runs never leave a partial entry under the final name; an entry that fails
its checks is rebuilt. Only unflipped pyramids are stored: Pillow's LANCZOS chain commutes with a horizontal
flip (checked once per source size; where it would not, a flipped sample is built from the image instead).
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from md2.data.augment import lanczos_levels, lanczos_pyramid
from md2.errors import DataError, UsageError
from md2.files import atomic_path

MAGIC = b"MD2P"
VERSION = 1
_HEADER = struct.Struct("<4sHHII")  # magic, version, scales, source width, source height
_CRC = struct.Struct("<I")


class ResizeCache:
    """Pyramids of ``width`` x ``height`` with ``num_scales`` levels under ``root`` (created when needed).

    ``pyramid(path, flip, read)`` -> the levels as uint8 arrays (h, w, 3), scale 0 first; ``read()`` decodes
    ``path`` (an RGB Pillow image) and is only called on a miss. A cache that cannot be written (full disk,
    read-only folder) warns once and the run goes on without storing.
    """

    def __init__(self, root: Path | str, width: int, height: int, num_scales: int) -> None:
        root = Path(root).expanduser()
        if root.exists() and not root.is_dir():
            raise UsageError(f"--resize-cache {root} is a file, not a folder")
        self.root = root
        self.width, self.height, self.num_scales = int(width), int(height), int(num_scales)
        self.folder = root / f"{self.width}x{self.height}x{self.num_scales}"
        self.sizes = [(self.height // 2**s, self.width // 2**s) for s in range(self.num_scales)]
        self.pixel_bytes = sum(h * w * 3 for h, w in self.sizes)
        self.writable = True

    def entry_path(self, source: Path) -> Path:
        """Where ``source``'s pyramid is stored (whether or not it is there yet)."""
        absolute = Path(os.path.abspath(source))
        stat = absolute.stat()
        key = hashlib.sha256(f"{absolute}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:40]
        return self.folder / key[:2] / f"{key}.pyr"

    def pyramid(self, source: Path, flip: bool, read: Callable[[], Image.Image]) -> list[np.ndarray]:
        try:
            entry = self.entry_path(source)
        except OSError:
            entry = None  # unreadable source: read() reports it
        stored, image = None if entry is None else self._load(entry), None
        if stored is None:
            image = read()
            levels = lanczos_levels(image, self.width, self.height, self.num_scales)
            if entry is not None:
                self._store(entry, image.size, levels)
            source_size = image.size
        else:
            source_size, levels = stored
        if not flip:
            return levels
        if flip_commutes(source_size, (self.width, self.height), self.num_scales):
            return [np.ascontiguousarray(level[:, ::-1]) for level in levels]
        image = image if image is not None else read()
        return lanczos_levels(image, self.width, self.height, self.num_scales, flip=True)

    def _load(self, entry: Path) -> tuple[tuple[int, int], list[np.ndarray]] | None:
        """(source size, levels) of a sound entry; None when it is missing or fails a check."""
        try:
            data = entry.read_bytes()
        except OSError:
            return None
        body_end = _HEADER.size + self.pixel_bytes
        if len(data) != body_end + _CRC.size:
            return None
        magic, version, scales, source_width, source_height = _HEADER.unpack_from(data)
        if (magic, version, scales) != (MAGIC, VERSION, self.num_scales) or \
                _CRC.unpack_from(data, body_end)[0] != zlib.crc32(memoryview(data)[:body_end]):
            return None
        levels, offset = [], _HEADER.size
        for h, w in self.sizes:
            levels.append(np.frombuffer(data, np.uint8, h * w * 3, offset).reshape(h, w, 3))
            offset += h * w * 3
        return (source_width, source_height), levels

    def _store(self, entry: Path, source_size: tuple[int, int], levels: list[np.ndarray]) -> None:
        if not self.writable:
            return
        header = _HEADER.pack(MAGIC, VERSION, self.num_scales, *source_size)
        body = b"".join([header, *(np.ascontiguousarray(level).tobytes() for level in levels)])
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(entry) as temporary:
                temporary.write_bytes(body + _CRC.pack(zlib.crc32(body)))
        except (OSError, DataError) as error:
            self.writable = False
            reason = error.strerror if isinstance(error, OSError) else str(error)
            warnings.warn(f"--resize-cache {self.root}: cannot store pyramids ({reason}); going on without storing",
                          RuntimeWarning, stacklevel=2)


@lru_cache(maxsize=64)
def flip_commutes(source_size: tuple[int, int], size: tuple[int, int], num_scales: int) -> bool:
    """Whether flipping a ``source_size`` image and then building its pyramid gives the flipped pyramid, pixel
    for pixel, for every image: checked on random pixels (a filter's taps that differed between the two
    orders would show on them)."""
    rng = np.random.default_rng(0)
    width, height = source_size
    noise = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    plain = lanczos_pyramid(noise, *size, num_scales)
    flipped = lanczos_pyramid(noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT), *size, num_scales)
    return all(np.array_equal(np.asarray(a)[:, ::-1], np.asarray(b)) for a, b in zip(plain, flipped))
