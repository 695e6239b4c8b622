"""KITTI camera PNG -> JPEG (quality 92, 4:2:0): parallel, resumable, and never losing an image.

Matches the reference's ``convert -quality 92 -sampling-factor 2x2,1x1,1x1``: Pillow (libjpeg) writes the IJG
quantisation tables scaled for quality 92 and, with ``subsampling=2``, sampling factors 2x2 (Y), 1x1 (Cb, Cr).
Grayscale PNGs (image_00/01) stay one-channel JPEGs, as ImageMagick writes them.

Safety: each JPEG is written under a unique temporary name, fsynced, re-opened and decoded in full at the PNG's
size, then renamed (so a .jpg is always complete); only after the folder is fsynced is the PNG deleted. Killed
at any moment, every frame is a valid PNG or a valid JPEG (at worst both, plus a stale temporary file that the
next run removes). Two runs on one tree at the same time are not supported (each removes the other's temporary
files at start).
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from md2.errors import DataError
from md2.files import give_new_file_mode
from md2.data.conversion_check import not_a_camera_image, why_not_its_conversion
from md2.images import UNREADABLE_IMAGE

QUALITY = 92
SUBSAMPLING_420 = 2
"""Pillow's code for 4:2:0 chroma subsampling (sampling factors 2x2, 1x1, 1x1)."""
BATCH = 4
"""Images per task sent to a worker: small, so the progress bar moves smoothly and an abort is quick."""

_RAW_CAMERA = re.compile(r"image_0[0-3]")
_ODOMETRY_CAMERA = re.compile(r"image_[0-3]")
_NEVER_IMAGES = {"proj_depth", "velodyne_points", "velodyne", "oxts"}
"""Folders never descended into: ground truth (proj_depth) and sensor data that holds no camera image."""
_TEMPORARY = re.compile(r"\..+\.jpg\.[^.]+\.tmp")


ProgressOption = bool | Callable[[int, int], None]
"""``progress=`` of the long-running data functions: True draws a bar on stderr, False nothing, a callable
receives (done, total)."""


@contextlib.contextmanager
def count_progress(label: str, progress: ProgressOption) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a (done, total) callback for ``progress`` (see :data:`ProgressOption`), or None for no progress."""
    if callable(progress) or not progress:
        yield progress or None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:  # logs and pipes get no bar (nor the blank line a transient bar leaves)
        yield None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def available_cpus() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _exit_with(parent: int) -> None:
    """Worker initialiser: leave when the parent process is gone (killed with SIGKILL, it cannot say so)."""

    def watch() -> None:
        while True:
            time.sleep(0.2)
            try:
                os.kill(parent, 0)
            except OSError:  # no such process (or, the pid reused, someone else's): the parent is gone
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def parallel_batches(work: Callable[..., list], batches: Sequence[list], extra: tuple, jobs: int) -> Iterator[list]:
    """Yield ``work(batch, *extra)`` for each batch as it finishes, ``jobs`` processes at a time.

    At most 2 * jobs batches are queued, so an error (re-raised here) stops the run after the batches in hand.
    Workers are started fresh (forkserver or spawn, never a fork of a threaded parent) and exit with it.
    """
    jobs = max(1, min(jobs, len(batches)))
    if jobs == 1:
        yield from (work(batch, *extra) for batch in batches)
        return
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method), initializer=_exit_with,
                               initargs=(os.getpid(),))
    queue, pending = iter(batches), set[Future]()
    try:
        while True:
            for batch in queue:
                pending.add(pool.submit(work, batch, *extra))
                if len(pending) >= 2 * jobs:
                    break
            if not pending:
                return
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    except BrokenProcessPool:
        raise DataError("a worker process died (killed, or out of memory?); run the same command again to "
                        "resume") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class ConvertReport:
    """What a conversion did.

    converted: JPEGs written by this run; skipped: PNGs whose verified JPEG an earlier run had already written
    (the PNG deleted now unless keep_png); failed: one message per PNG left in place (unreadable,
    not an 8-bit camera image, or beside a JPEG that is another picture);
    bytes_before / bytes_after: total size of the PNGs / JPEGs of the converted and skipped images.
    """

    converted: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after


@dataclass(frozen=True)
class ImageResult:
    """Outcome of one PNG: "converted", "skipped" or "failed" (with ``message``), and the two file sizes."""

    outcome: str
    png_bytes: int = 0
    jpeg_bytes: int = 0
    message: str = ""


def is_camera_folder(folder: Path) -> bool:
    """True for DATE/DRIVE/image_0x/data (raw) and sequences/NN/image_x (odometry), never below proj_depth."""
    parts = folder.parts
    if "proj_depth" in parts:
        return False
    raw = len(parts) >= 2 and parts[-1] == "data" and _RAW_CAMERA.fullmatch(parts[-2]) is not None
    odometry = len(parts) >= 3 and parts[-3] == "sequences" and _ODOMETRY_CAMERA.fullmatch(parts[-1]) is not None
    return raw or odometry


def scan_tree(root: Path | str) -> tuple[list[Path], list[Path]]:
    """(camera PNGs, stale temporary JPEGs) under ``root``, each sorted; ``root`` may itself be a camera folder."""
    pngs: list[Path] = []
    stale: list[Path] = []
    root = Path(root).absolute()
    seen = {os.path.realpath(root)}
    # Symlinked folders are followed (a camera folder linked from another disk is converted where it lives, as
    # training reads it through the link); each real folder once, so a link to an ancestor is no loop.
    for folder, subfolders, files in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(subfolders):
            real = os.path.realpath(os.path.join(folder, name))
            if name not in _NEVER_IMAGES and real not in seen:
                seen.add(real)
                kept.append(name)
        subfolders[:] = kept
        folder = Path(folder)
        if not is_camera_folder(folder):
            continue
        pngs.extend(folder / name for name in sorted(files) if name.endswith(".png"))
        stale.extend(folder / name for name in sorted(files) if _TEMPORARY.fullmatch(name))
    return pngs, stale


def camera_pngs(root: Path | str) -> list[Path]:
    """Every camera PNG under ``root`` (see :func:`is_camera_folder`), sorted."""
    return scan_tree(root)[0]


def _decodes_at(path: Path, size: tuple[int, int]) -> bool:
    """True when ``path`` is an image that decodes completely at ``size`` (width, height)."""
    try:
        with Image.open(path) as image:
            image.load()  # a truncated file raises here (Pillow's LOAD_TRUNCATED_IMAGES is off by default)
            return image.size == size
    except UNREADABLE_IMAGE:
        return False


def encode_jpeg(image: Image.Image, quality: int = QUALITY) -> bytes:
    """``image`` as JPEG bytes (quality, 4:2:0): deterministic for a given Pillow / libjpeg."""
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=quality, subsampling=SUBSAMPLING_420)
    return encoded.getvalue()


def _fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable before PNGs are deleted (a power cut cannot then lose both names);
    a no-op where folders cannot be opened (Windows)."""
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def write_jpeg(image: Image.Image, jpeg: Path, quality: int = QUALITY, encoded: bytes | None = None) -> None:
    """Write ``image`` to ``jpeg`` (quality, 4:2:0; or its bytes ``encoded`` already): encoded in memory,
    written to a unique temporary name, fsynced, re-opened and decoded in full at the image's size, and only
    then renamed to ``jpeg``.

    So a file named ``jpeg`` is always a complete JPEG. Any failure (disk full, permission, a folder in the way,
    bytes that do not decode back) raises DataError naming ``jpeg`` and removes the temporary file.
    """
    # Encoding into memory first: Pillow writing straight to a file descriptor does not notice a short write
    # (a full disk), whereas Python's file object raises it as an OSError.
    encoded = encode_jpeg(image, quality) if encoded is None else encoded
    try:
        handle, name = tempfile.mkstemp(prefix=f".{jpeg.name}.", suffix=".tmp", dir=jpeg.parent)
    except OSError as error:
        raise DataError(f"cannot write {jpeg}: {error.strerror or error}") from None
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as stream:
            give_new_file_mode(stream.fileno())  # readable as the PNG beside it, not by its owner only
            stream.write(encoded)
            stream.flush()
            os.fsync(stream.fileno())
        if not _decodes_at(temporary, image.size):
            raise DataError(f"cannot write {jpeg}: the written file does not decode back at "
                            f"{image.size[0]}x{image.size[1]}")
        os.replace(temporary, jpeg)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise DataError(f"cannot write {jpeg}: {error.strerror or error}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def prepare_jpeg(png: Path, quality: int = QUALITY) -> ImageResult:
    """Make sure PNG.with_suffix(".jpg") holds this PNG as a verified JPEG; the PNG itself is left in place.

    A JPEG already there counts as done (outcome "skipped") only when it is this PNG's conversion (see
    :func:`md2.data.conversion_check.why_not_its_conversion`); one that does not decode at the PNG's size is
    rewritten ("converted"); any other is a different picture, and both files are kept (outcome "failed",
    saying so). A PNG that cannot be read, or is not an 8-bit camera image (16 bits, alpha), is left alone
    ("failed"). A write failure raises DataError naming the JPEG.
    """
    jpeg = png.with_suffix(".jpg")
    try:
        png_bytes = png.lstat().st_size if not png.is_symlink() else 0  # deleting a link frees nothing
        with Image.open(png) as image:
            refused = not_a_camera_image(png, image)
            if refused is not None:
                return ImageResult("failed", message=refused)
            existing = _decodes_at(jpeg, image.size)
            image.load()
            pixels = image.copy() if image.mode in ("RGB", "L") else image.convert("RGB")
    except FileNotFoundError:
        return ImageResult("skipped")  # removed since the tree was scanned: nothing left to do
    except UNREADABLE_IMAGE as error:
        return ImageResult("failed", message=f"cannot read {png}: {error}")
    encoded = encode_jpeg(pixels, quality)
    if existing:
        why_not = why_not_its_conversion(jpeg, png, encoded, pixels)
        if why_not is None:
            return ImageResult("skipped", png_bytes, jpeg.stat().st_size)
        return ImageResult("failed", message=why_not)
    write_jpeg(pixels, jpeg, quality, encoded)
    return ImageResult("converted", png_bytes, jpeg.stat().st_size)


def convert_batch(pngs: list[Path], keep_png: bool = False, quality: int = QUALITY) -> list[ImageResult]:
    """:func:`prepare_jpeg` for each PNG in order, then (unless ``keep_png``) one fsync per folder so the new
    names are durable, then the deletion of every PNG whose JPEG is verified. One task of the process pool."""
    results = [prepare_jpeg(png, quality) for png in pngs]
    if not keep_png:
        done = [png for png, result in zip(pngs, results) if result.outcome != "failed"]
        for folder in sorted({png.parent for png in done}):
            _fsync_folder(folder)
        for png in done:
            png.unlink(missing_ok=True)
    return results


def convert_tree(root: Path | str, *, jobs: int | None = None, keep_png: bool = False, quality: int = QUALITY,
                 progress: ProgressOption = True, on_image: Callable[[int], None] | None = None) -> ConvertReport:
    """Convert every camera PNG under ``root`` to JPEG, ``jobs`` processes at a time (default: all cores).

    progress: True draws a bar on stderr, a callable receives (done, total) images, False shows nothing.
    on_image: called with the total once per image (for callers drawing their own bar; then no bar is drawn).
    Raises DataError when ``root`` is missing or a JPEG cannot be written (the run stops; every PNG not yet
    verified as JPEG is intact). Unreadable PNGs do not stop the run: they are listed in ``report.failed``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    pngs, stale = scan_tree(root)
    for temporary in stale:
        temporary.unlink(missing_ok=True)
    batches = [pngs[start:start + BATCH] for start in range(0, len(pngs), BATCH)]
    report = ConvertReport()
    done = 0
    with count_progress("converting to JPEG", progress if on_image is None else False) as advance:
        for results in parallel_batches(convert_batch, batches, (keep_png, quality), jobs or available_cpus()):
            for result in results:
                _add(report, result)
                if on_image is not None:
                    on_image(len(pngs))
            done += len(results)
            if advance is not None:
                advance(done, len(pngs))
    return report


def _add(report: ConvertReport, result: ImageResult) -> None:
    if result.outcome == "failed":
        report.failed.append(result.message)
        return
    setattr(report, result.outcome, getattr(report, result.outcome) + 1)
    report.bytes_before += result.png_bytes
    report.bytes_after += result.jpeg_bytes

