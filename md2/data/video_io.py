"""Video files in and out (OpenCV's FFmpeg): frames read one at a time, frames written to a file that is
either complete and playable or absent.

:class:`VideoReader` opens anything OpenCV reads (mp4, avi, mkv, mov, webm ...) and yields RGB frames with
their numbers, within a range and every N-th. :class:`VideoWriter` encodes MPEG-4 Part 2 (``mp4v``, the
encoder every OpenCV build has) into a hidden temporary file and renames it into place on ``close``, so a
reader never sees a half-written file under the final name; ``discard`` removes it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# FFmpeg and OpenCV print their own diagnostics on stderr (a missing codec, a broken stream); md2 reports
# one line of its own instead. Read when the video backend starts, so set before the first capture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from md2.errors import DataError, UsageError  # noqa: E402
from md2.files import make_folder

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
"""File names md2 predict reads as videos (any container and codec OpenCV's FFmpeg decodes)."""
FOURCC = "mp4v"


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class FrameRange:
    """Which frames to take: ``start`` <= number < ``end`` (None: to the end), every ``every``-th.

    ``start`` and ``end`` are given as :func:`parse_position` reads them: seconds, or frame numbers."""

    start: str | None = None
    end: str | None = None
    every: int = 1


def parse_position(text: str, fps: float, option: str) -> int:
    """``"12.5"`` or ``"12.5s"`` (seconds) or ``"300f"`` (frame 300) -> a frame number at ``fps``."""
    value = text.strip().lower()
    try:
        if value.endswith("f"):
            frame = int(value[:-1])
        else:
            frame = int(round(float(value.removesuffix("s")) * fps))
    except (ValueError, OverflowError):  # OverflowError: "infs" or "1e999" seconds, infinitely many frames
        raise UsageError(f"{option} takes seconds (12.5 or 12.5s) or a frame number (300f), got {text!r}") from None
    if frame < 0:
        raise UsageError(f"{option} must not be negative, got {text!r}")
    return frame


class VideoReader:
    """One video file opened for reading: its size, frame rate and frame count, and its frames in order."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"no such video: {self.path}")
        self.capture = cv2.VideoCapture(str(self.path))
        if not self.capture.isOpened():
            raise DataError(f"cannot read video {self.path}: not a video OpenCV can decode (unknown container "
                            "or codec, or a damaged file)")
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if np.isfinite(fps) and fps > 0 else 30.0  # some streams carry no rate
        self.frame_count = max(0, int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        """As the container states it (an estimate for some formats); 0 when unknown."""
        if self.width <= 0 or self.height <= 0:
            self.close()
            raise DataError(f"cannot read video {self.path}: it has no video stream")

    def selection(self, frames: FrameRange) -> tuple[int, int | None, int]:
        """(first, end or None, step) in frame numbers, checked."""
        if frames.every < 1:
            raise UsageError(f"--every must be at least 1, got {frames.every}")
        first = parse_position(frames.start, self.fps, "--start") if frames.start else 0
        end = parse_position(frames.end, self.fps, "--end") if frames.end else None
        if end is not None and end <= first:
            raise UsageError(f"--end ({frames.end}) must come after --start ({frames.start or 0})")
        return first, end, frames.every

    def expected(self, frames: FrameRange) -> int | None:
        """How many frames :meth:`frames` should yield (from the stated count; None when unknown)."""
        first, end, step = self.selection(frames)
        last = self.frame_count if end is None else min(end, self.frame_count or end)
        if not last:
            return None
        return max(0, (last - first + step - 1) // step)

    def frames(self, frames: FrameRange = FrameRange()) -> Iterator[tuple[int, np.ndarray]]:
        """(frame number, (H, W, 3) uint8 RGB) for the selected frames, decoded one at a time.

        Frames before ``start`` and between the taken ones are decoded and dropped (``grab``), not seeked to,
        so the numbering is exact whatever the codec's keyframes."""
        first, end, step = self.selection(frames)
        number = 0
        while end is None or number < end:
            if number < first or (number - first) % step:
                if not self.capture.grab():
                    return
            else:
                ok, bgr = self.capture.read()
                if not ok or bgr is None:
                    return
                yield number, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            number += 1

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """An MPEG-4 video being written: frames go to a hidden temporary file beside ``path``; :meth:`close`
    finishes the file (playable) and renames it onto ``path``; :meth:`discard` deletes it."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        self.path = Path(path)
        self.frames = 0
        self.pending = False
        try:
            make_folder(self.path.parent)
        except OSError as error:
            raise DataError(f"cannot write {self.path}: {error.strerror or error}") from None
        self.temporary = self.path.with_name(f".{self.path.stem}.{secrets.token_hex(4)}.tmp{self.path.suffix}")
        if not os.access(self.path.parent, os.W_OK):
            raise DataError(f"cannot write {self.path}: permission denied")
        self.writer = cv2.VideoWriter(str(self.temporary), cv2.VideoWriter_fourcc(*FOURCC), float(fps),
                                      (int(width), int(height)))
        if not self.writer.isOpened():
            self.temporary.unlink(missing_ok=True)
            raise DataError(f"cannot write {self.path}: OpenCV cannot encode {FOURCC} video here")
        self.size = (int(height), int(width))

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame of the size given at opening."""
        if rgb.shape[:2] != self.size:
            raise ValueError(f"frame of {rgb.shape[:2]}, the video is {self.size}")
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        self.pending = True  # Ctrl-C may land after the encoder took the frame and before it is counted
        self.writer.write(bgr)
        self.frames += 1
        self.pending = False

    def close(self) -> Path | None:
        """Finish the file and rename it onto ``path`` (None, and no file, when no frame was written)."""
        self.writer.release()
        if self.frames == 0:
            self.temporary.unlink(missing_ok=True)
            return None
        # OpenCV reports no write errors: read the finished file's frame count back before it takes the name.
        check = cv2.VideoCapture(str(self.temporary))
        found = int(check.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if check.isOpened() else 0
        check.release()
        if self.pending and found == self.frames + 1:
            self.frames = found  # the frame being written when Ctrl-C came is in the file
        try:
            if found != self.frames:
                raise OSError(f"the encoded file holds {found} of {self.frames} frames (disk full?)")
            os.replace(self.temporary, self.path)
        except OSError as error:
            self.temporary.unlink(missing_ok=True)
            raise DataError(f"cannot write {self.path}: {error.strerror or error}") from None
        return self.path

    def discard(self) -> None:
        self.writer.release()
        self.temporary.unlink(missing_ok=True)
