"""Split files for synthetic datasets, in the reference's formats."""

from __future__ import annotations

from pathlib import Path

from md2.files import atomic_path


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text("".join(f"{line}\n" for line in lines))


def write_splits(out: Path, options) -> None:
    """OUT/splits/synth/{train,val,test}_files.txt for the raw drives; OUT/splits/odom/... for sequences.

    Training lines use frames 1 .. F-2 (both temporal neighbours exist) and both cameras; every fourth line
    goes to val. Test lines are frames 1 .. F-2 of the left camera (export-gt and evaluation use camera 2).
    """
    from md2.data.synth.writer import drive_name

    inner = range(1, options.frames - 1)
    everything = [f"{drive_name(d)} {f} {side}" for d in range(options.drives) for f in inner for side in "lr"]
    _write_lines(out / "splits" / "synth" / "train_files.txt", [l for i, l in enumerate(everything) if i % 4 != 3])
    _write_lines(out / "splits" / "synth" / "val_files.txt", [l for i, l in enumerate(everything) if i % 4 == 3])
    _write_lines(out / "splits" / "synth" / "test_files.txt",
                 [f"{drive_name(d)} {f} l" for d in range(options.drives) for f in inner])
    if options.odometry:
        sequences = [9 + d for d in range(options.drives)]
        odom = [f"{s} {f} {side}" for s in sequences for f in inner for side in "lr"]
        _write_lines(out / "splits" / "odom" / "train_files.txt", [l for i, l in enumerate(odom) if i % 4 != 3])
        _write_lines(out / "splits" / "odom" / "val_files.txt", [l for i, l in enumerate(odom) if i % 4 == 3])
        for s in sequences:
            _write_lines(out / "splits" / "odom" / f"test_files_{s:02d}.txt",
                         [f"{s} {f} l" for f in range(options.frames - 1)])
