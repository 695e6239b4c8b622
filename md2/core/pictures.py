"""Pictures in for ``md2 predict``: inputs collected, decoded and resized to the network's size.

Pillow and NumPy only, no torch: ``md2 predict`` starts preparing the first pictures
(:class:`PreparedAhead`) on the core that would otherwise wait while torch is imported and the model loaded.
"""

from __future__ import annotations

import glob
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from md2.errors import DataError
from md2.files import OUTPUT_SUFFIXES  # noqa: F401 - also md2.core.pictures.OUTPUT_SUFFIXES
from md2.images import UNREADABLE_IMAGE

AHEAD_BYTES = 64 << 20
"""Network-size pixels :class:`PreparedAhead` may hold (173 pictures at 640x192)."""


@dataclass(frozen=True)
class Prepared:
    """One input ready for the network."""

    pixels: np.ndarray
    """(height, width, 3) uint8 RGB at the network's size."""
    original: tuple[int, int]
    """(height, width) of the input picture, in pixels."""


def collect_inputs(inputs: Iterable[str], ext: str = "jpg") -> list[Path]:
    """Expand files, folders (``*.ext`` inside) and glob patterns into a sorted list of images.

    Outputs of earlier runs (``*_disp.jpeg`` ...) are skipped. A path that matches nothing is a DataError.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            matches = sorted(path.glob(f"*.{ext.lstrip('.')}"))
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(str(path))) if Path(p).is_file()]
            if not matches:
                raise DataError(f"no such file, folder or pattern: {item}")
        found.extend(p for p in matches if not p.name.endswith(OUTPUT_SUFFIXES))
    unique = list(dict.fromkeys(found))
    if not unique:
        raise DataError(f"no images to predict in {', '.join(map(str, inputs))} (looked for *.{ext.lstrip('.')})"
                        + _held_types(inputs))
    return unique


PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def _held_types(inputs: Iterable[str]) -> str:
    """``"; the folder holds 12 .png: add --ext png"``: the picture types the given folders do hold."""
    counts: dict[str, int] = {}
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            for child in path.iterdir():
                suffix = child.suffix.lower()
                if suffix in PICTURE_SUFFIXES and not child.name.endswith(OUTPUT_SUFFIXES):
                    counts[suffix] = counts.get(suffix, 0) + 1
    if not counts:
        return ""
    held = ", ".join(f"{count} {suffix}" for suffix, count in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"; it holds {held}: add --ext {max(counts, key=counts.get).lstrip('.')}"


def prepare_image(path: Path, width: int, height: int) -> Prepared:
    """The pipeline's preparation of a photo: decoded, LANCZOS-resized pixels (no torch: a worker thread)."""
    rgb = read_rgb(path)
    return Prepared(network_pixels(rgb, width, height), (rgb.height, rgb.width))


def read_rgb(path: Path) -> Image.Image:
    """A picture file as RGB; a DataError naming it when it cannot be read."""
    try:
        with Image.open(path) as image:
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")  # an RGB file: no copy
    except UNREADABLE_IMAGE as error:  # a decompression bomb too: one line, and a folder goes on
        raise DataError(f"cannot read image {path}: {error}") from None


def network_pixels(rgb: Image.Image, width: int, height: int) -> np.ndarray:
    """An RGB picture resized with LANCZOS (Pillow's old ANTIALIAS, the reference's filter) to the network's
    width x height: (height, width, 3) uint8."""
    return np.array(rgb.resize((width, height), Image.LANCZOS), dtype=np.uint8)


class PreparedAhead:
    """The first pictures of ``paths`` prepared one after another in a thread of their own, from now until
    :meth:`stop` (as many as :data:`AHEAD_BYTES` holds).

    The predict pipeline takes each one with :meth:`take` and prepares the others itself, so a picture is
    prepared once, by whichever comes first; failures (a DataError naming the file) are handed over the same
    way. The thread does nothing else, and ends within one picture of :meth:`stop`.
    """

    def __init__(self, paths: list[Path], width: int, height: int, budget: int = AHEAD_BYTES) -> None:
        self.width, self.height = width, height
        count = max(1, budget // (width * height * 3))
        self._changed = threading.Condition()
        self._done: dict[Path, Prepared | BaseException] = {}
        self._current: Path | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, args=(paths[:count],), daemon=True,
                                        name="md2-prepare-ahead")
        self._thread.start()

    def _run(self, paths: list[Path]) -> None:
        for path in paths:
            with self._changed:
                if self._stopping:
                    return
                self._current = path
            try:
                result: Prepared | BaseException = prepare_image(path, self.width, self.height)
            except BaseException as error:  # noqa: BLE001 -- handed to whoever takes this picture
                result = error
            with self._changed:
                self._done[path] = result
                self._current = None
                self._changed.notify_all()

    def take(self, path: Path) -> Prepared | None:
        """``path`` prepared (waiting if it is being prepared now), or None if it was not prepared ahead; raises
        what preparing it raised. Each picture is handed out once."""
        with self._changed:
            while self._current == path:
                self._changed.wait()
            result = self._done.pop(path, None)
        if isinstance(result, BaseException):
            raise result
        return result

    def stop(self) -> None:
        """Prepare nothing more after the picture in hand."""
        with self._changed:
            self._stopping = True

    def close(self) -> None:
        """:meth:`stop`, wait for the thread to end, and drop what nobody took."""
        self.stop()
        self._thread.join()
        with self._changed:
            self._done.clear()
