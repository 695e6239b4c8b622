"""The pinhole intrinsics of a photo, in its own pixels, and where they came from.

In order of preference: ``--intrinsics fx,fy,cx,cy``; ``--fov`` (horizontal, degrees); the photo's EXIF
focal length in 35 mm equivalent (FocalLengthIn35mmFilm); else KITTI's normalised intrinsics scaled to the
photo (fx = 0.58 W, fy = 1.92 H, cx = 0.5 W, cy = 0.5 H, the reference's K). Pixel (u, v) = (column, row)
has its centre at integer u, v, as the reference's back-projection grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from md2.errors import UsageError

KITTI_K = (0.58, 1.92, 0.5, 0.5)
"""The reference's normalised intrinsics (fx / W, fy / H, cx / W, cy / H)."""
FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)
"""A 35 mm frame's diagonal (43.27 mm): the 35 mm equivalent focal length scales with the diagonal (CIPA
DC-008), so it holds for any aspect ratio and for portrait photos alike."""
EXIF_IFD = 0x8769
FOCAL_35MM_TAG = 0xA405
"""EXIF FocalLengthIn35mmFilm (millimetres), in the Exif sub-IFD (some writers put it in IFD0)."""

SOURCES = {"given": "--intrinsics", "fov": "--fov", "exif": "the photo's EXIF 35 mm focal length",
           "kitti": "KITTI's intrinsics scaled to the photo"}


@dataclass(frozen=True)
class Intrinsics:
    """fx, fy (pixels), cx, cy (pixels, 0-based centres) and ``source``, a key of :data:`SOURCES`."""

    fx: float
    fy: float
    cx: float
    cy: float
    source: str = "given"

    def describe(self) -> str:
        return (f"fx {self.fx:.2f}, fy {self.fy:.2f}, cx {self.cx:.2f}, cy {self.cy:.2f} px "
                f"({SOURCES[self.source]})")


@dataclass(frozen=True)
class CameraChoice:
    """What the user asked for: ``--intrinsics`` (parsed) or ``--fov`` or neither (EXIF, then KITTI)."""

    given: tuple[float, float, float, float] | None = None
    fov: float | None = None

    def resolve(self, width: int, height: int, exif_focal_35mm: float | None = None) -> Intrinsics:
        """The intrinsics of a ``width`` x ``height`` photo (see the module docstring for the order)."""
        if self.given is not None:
            return Intrinsics(*self.given, source="given")
        if self.fov is not None:
            focal = width / (2.0 * math.tan(math.radians(self.fov) / 2.0))
            return Intrinsics(focal, focal, 0.5 * width, 0.5 * height, "fov")
        if exif_focal_35mm is not None:
            focal = exif_focal_35mm * math.hypot(width, height) / FILM_DIAGONAL_MM
            return Intrinsics(focal, focal, 0.5 * width, 0.5 * height, "exif")
        fx, fy, cx, cy = KITTI_K
        return Intrinsics(fx * width, fy * height, cx * width, cy * height, "kitti")

    def resolve_for(self, path: Path, width: int, height: int) -> Intrinsics:
        """:meth:`resolve` for the photo file ``path``, reading its EXIF only when it is needed."""
        exif = exif_focal_35mm(path) if self.given is None and self.fov is None else None
        return self.resolve(width, height, exif)


def camera_choice(intrinsics: str | None, fov: float | None) -> CameraChoice:
    """The command line's ``--intrinsics`` text and ``--fov``, checked: a UsageError (exit 2) for anything else
    than four finite numbers with positive focal lengths, for a field of view outside (0, 180), or both."""
    if intrinsics is not None and fov is not None:
        raise UsageError("give --intrinsics or --fov, not both")
    if fov is not None and not (math.isfinite(fov) and 0.0 < fov < 180.0):
        raise UsageError(f"--fov must be a horizontal field of view in degrees between 0 and 180, got {fov}")
    if intrinsics is None:
        return CameraChoice(None, fov)
    try:
        values = tuple(float(part) for part in intrinsics.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise UsageError(f"--intrinsics must be four finite numbers fx,fy,cx,cy in the photo's pixels, got "
                         f"{intrinsics!r}")
    if values[0] <= 0 or values[1] <= 0:
        raise UsageError(f"--intrinsics: the focal lengths fx, fy must be positive, got {values[0]}, {values[1]}")
    return CameraChoice(values, None)  # type: ignore[arg-type]


def exif_focal_35mm(path: Path) -> float | None:
    """The photo's EXIF FocalLengthIn35mmFilm in millimetres, or None (no EXIF, no tag, 0 = unknown, garbage)."""
    try:
        with Image.open(path) as image:
            exif = image.getexif()
            value = exif.get_ifd(EXIF_IFD).get(FOCAL_35MM_TAG, exif.get(FOCAL_35MM_TAG))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError):
        return None
    try:
        focal = float(value)
    except (TypeError, ValueError):
        return None
    return focal if math.isfinite(focal) and 0.0 < focal < 10000.0 else None
