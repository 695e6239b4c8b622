"""KITTI PNG -> JPEG conversion (quality 92, 4:2:0), parallel, resumable, and never losing an image.

Matches the reference's ``convert -quality 92 -sampling-factor 2x2,1x1,1x1``: Pillow writes the IJG quantisation
tables scaled for quality 92 and, with ``subsampling=2``, 2x2 luma / 1x1 chroma sampling factors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from md2.errors import DataError

QUALITY = 92
CAMERA_PATTERNS = ("*/image_0[0-3]/data/*.png", "sequences/*/image_[0-3]/*.png")
"""Camera images in the raw layout (DATE/DRIVE/image_0x/data) and the odometry layout (sequences/NN/image_x);
never the proj_depth ground truth or anything else."""


@dataclass
class ConvertReport:
    converted: int = 0
    skipped: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    failed: list[str] = field(default_factory=list)


def camera_pngs(root: Path) -> list[Path]:
    """Every camera PNG under ``root`` (raw drives at any depth below root, and odometry sequences)."""
    found: set[Path] = set()
    for pattern in CAMERA_PATTERNS:
        found.update(root.glob(pattern))
        found.update(root.glob("*/" + pattern))
    return sorted(p for p in found if "proj_depth" not in p.parts)


def _decodes_at(path: Path, size: tuple[int, int]) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
            return image.size == size
    except (OSError, SyntaxError, ValueError):
        return False


def convert_one(png: Path, keep_png: bool = False, quality: int = QUALITY) -> tuple[str, int, int]:
    """Convert one PNG; returns (outcome, bytes before, bytes after), outcome "converted" or "skipped".

    The JPEG is written to a temporary name, synced, renamed, then re-opened and fully decoded at the PNG's
    size; only then is the PNG deleted. A JPEG left by an earlier run that decodes at the right size is kept.
    """
    jpeg = png.with_suffix(".jpg")
    try:
        with Image.open(png) as image:
            image.load()
            rgb, size = image.convert("RGB"), image.size
    except FileNotFoundError:
        return "skipped", 0, 0  # removed by a concurrent run after the listing
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot read {png}: {error}") from None
    before = png.stat().st_size
    outcome = "skipped"
    if not _decodes_at(jpeg, size):
        temporary = jpeg.with_name(f".{jpeg.name}.{os.getpid()}.tmp")
        try:
            rgb.save(temporary, format="JPEG", quality=quality, subsampling=2)
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, jpeg)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise DataError(f"cannot write {jpeg}: {error.strerror or error}") from None
        if not _decodes_at(jpeg, size):
            raise DataError(f"{jpeg} does not decode back at {size[0]}x{size[1]}; {png} kept")
        outcome = "converted"
    if not keep_png:
        png.unlink()
    return outcome, before, jpeg.stat().st_size


def _remove_stale_temporaries(root: Path) -> None:
    for pattern in ("**/image_0[0-3]/data/.*.tmp", "**/image_[0-3]/.*.tmp"):
        for stale in root.glob(pattern):
            stale.unlink(missing_ok=True)


def _work(args: tuple[Path, bool, int]) -> tuple[str, int, int, str | None]:
    png, keep_png, quality = args
    try:
        return (*convert_one(png, keep_png, quality), None)
    except DataError as error:
        return "failed", 0, 0, str(error)


def convert_tree(root: Path | str, *, jobs: int | None = None, keep_png: bool = False, quality: int = QUALITY,
                 on_image: Callable[[int], None] | None = None) -> ConvertReport:
    """Convert every camera PNG under ``root``; ``on_image(total)`` is called once per image (progress)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    _remove_stale_temporaries(root)
    pngs = camera_pngs(root)
    report = ConvertReport()
    for outcome, before, after, error in _run(pngs, jobs, keep_png, quality):
        if outcome == "failed":
            report.failed.append(error)
        else:
            setattr(report, outcome, getattr(report, outcome) + 1)
            report.bytes_before += before
            report.bytes_after += after
        if on_image is not None:
            on_image(len(pngs))
    return report


def _run(pngs: list[Path], jobs: int | None, keep_png: bool, quality: int) -> Iterator[tuple]:
    work = [(png, keep_png, quality) for png in pngs]
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(work) < 8:
        yield from map(_work, work)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(_work, work, chunksize=16)
