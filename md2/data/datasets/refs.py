"""Which frame a sample is about: one line of a split file, typed."""

from __future__ import annotations

from typing import NamedTuple

from md2.errors import DataError


class FrameRef(NamedTuple):
    """A sample's target frame: sequence folder (KITTI raw "2011_09_26/2011_09_26_drive_0001_sync", odometry
    sequence "9"), frame number, and side ("l"/"r" or "2"/"3"; None for a monocular source)."""

    folder: str
    frame: int
    side: str | None

    def __str__(self) -> str:
        """The split line: "FOLDER FRAME SIDE" (or "FOLDER FRAME")."""
        return f"{self.folder} {self.frame}" + (f" {self.side}" if self.side is not None else "")


def as_frame_ref(line) -> FrameRef:
    """A FrameRef from a split line: text "FOLDER [FRAME [SIDE]]" (the reference's reading: a missing frame
    is 0), a (folder, frame, side) tuple, or any object with ``folder``, ``frame`` and ``side`` attributes."""
    if isinstance(line, FrameRef):
        return line
    if isinstance(line, str):
        parts = line.split()
        if not 1 <= len(parts) <= 3:
            raise DataError(f"split line {line!r}: expected FOLDER FRAME SIDE")
        try:
            frame = int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            raise DataError(f"split line {line!r}: the frame {parts[1]!r} is not a number") from None
        return FrameRef(parts[0], frame, parts[2] if len(parts) == 3 else None)
    if isinstance(line, tuple) and len(line) == 3:
        return FrameRef(str(line[0]), int(line[1]), line[2])
    try:
        return FrameRef(str(line.folder), int(line.frame), line.side)
    except AttributeError:
        raise DataError(f"not a split line: {line!r}") from None
