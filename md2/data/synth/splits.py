"""Split files for synthetic datasets, in the reference's formats."""

from __future__ import annotations

from pathlib import Path

from md2.data.synth.kitti_files import drive_name, write_text

ODOMETRY_FIRST_SEQUENCE = 9
"""Drive i is also written as odometry sequence 9 + i, so the first is 09, the reference's pose test sequence."""


def _write_lines(path: Path, lines: list[str]) -> None:
    write_text(path, "".join(f"{line}\n" for line in lines))


def write_splits(out: Path, drives: int, frames: int, odometry: bool = False) -> None:
    """Split files under OUT/splits, usable with ``--splits-dir OUT/splits``.

    * ``synth`` (raw layout, lines ``2011_09_26/2011_09_26_drive_0001_sync 5 l``): train_files.txt and
      val_files.txt hold frames 1 .. F-2 (both temporal neighbours exist) of both cameras, every fourth line
      going to val; test_files.txt holds frames 1 .. F-2 of the left camera (what evaluation and export-gt use).
    * with ``odometry``, ``odom`` as the reference's (lines ``9 5 l``, the sequence as an integer):
      train_files.txt / val_files.txt as above, and test_files_NN.txt per sequence with frames 0 .. F-2, the
      first frame of each consecutive pair (what ``md2 evaluate-pose --eval-split odom_9`` reads).
    """
    inner = range(1, frames - 1)
    lines = [f"{drive_name(d)} {f} {side}" for d in range(drives) for f in inner for side in "lr"]
    _write_lines(out / "splits" / "synth" / "train_files.txt", [x for i, x in enumerate(lines) if i % 4 != 3])
    _write_lines(out / "splits" / "synth" / "val_files.txt", [x for i, x in enumerate(lines) if i % 4 == 3])
    _write_lines(out / "splits" / "synth" / "test_files.txt",
                 [f"{drive_name(d)} {f} l" for d in range(drives) for f in inner])
    if odometry:
        sequences = [ODOMETRY_FIRST_SEQUENCE + d for d in range(drives)]
        odom = [f"{s} {f} {side}" for s in sequences for f in inner for side in "lr"]
        _write_lines(out / "splits" / "odom" / "train_files.txt", [x for i, x in enumerate(odom) if i % 4 != 3])
        _write_lines(out / "splits" / "odom" / "val_files.txt", [x for i, x in enumerate(odom) if i % 4 == 3])
        for s in sequences:
            _write_lines(out / "splits" / "odom" / f"test_files_{s:02d}.txt", [f"{s} {f} l" for f in range(frames - 1)])
