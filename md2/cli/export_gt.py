"""Export a test split's ground-truth depth maps to SPLIT/gt_depths.npz (the reference's export_gt_depth.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

NAME = "export-gt"
EPILOG = ("Examples:  md2 export-gt --data-path kitti_data --split eigen  |  "
          "md2 export-gt --data-path kitti_data --split eigen_benchmark  |  "
          "md2 export-gt --data-path synth_data --split synth --splits-dir synth_data/splits")


def command(
    data_path: Annotated[Path, typer.Option(help="The KITTI folder.")] = Path("kitti_data"),
    split: Annotated[str, typer.Option(help="eigen, eigen_benchmark, or your own split folder's name.")] = "eigen",
    splits_dir: Annotated[Optional[Path], typer.Option(
        help="Folder holding split folders (DIR/SPLIT/test_files.txt; default: md2's cache of the official "
             "lists).")] = None,
    source: Annotated[Optional[str], typer.Option(
        help="lidar (velodyne scans) or benchmark (proj_depth ground-truth PNGs) (default: benchmark for "
             "eigen_benchmark; lidar otherwise, or the PNGs when a split of your own has no scans).")] = None,
    jobs: Annotated[Optional[int], typer.Option(min=1, help="Frames read in parallel (default: all cores).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also the split folder and settings used.")]
    = False,
) -> None:
    """Export a test split's ground-truth depth maps to SPLIT/gt_depths.npz (the reference's export_gt_depth.py)."""
    import zipfile

    from rich.markup import escape

    from md2.cli.common import status_console
    from md2.data.convert import available_cpus
    from md2.data.groundtruth import export_gt
    from md2.data.splits import resolve_split_dir

    console = status_console(quiet, verbose)
    if verbose:
        split_dir = resolve_split_dir(split, splits_dir)
        console.print(f"split {split!r} in {escape(str(split_dir))}, data {escape(str(data_path))}, source "
                      f"{_resolved_source(split, split_dir, data_path, source)}, {jobs or available_cpus()} jobs",
                      soft_wrap=True)
    path = export_gt(data_path, split, splits_dir=splits_dir, source=source, jobs=jobs, progress=not quiet)
    with zipfile.ZipFile(path) as archive:  # the count as written, read from the archive's directory
        count = len(archive.namelist())
    console.print(
        f"wrote {count} ground-truth depth map{'s' if count != 1 else ''} to {escape(str(path))}", soft_wrap=True)


def _resolved_source(split: str, split_dir: Path, data_path: Path, source: str | None) -> str:
    """The source export_gt will use (as it chooses it from the split's first test line); "chosen by split"
    when that line cannot be read yet (export_gt then says why)."""
    from md2.data.groundtruth import choose_source
    from md2.data.splits import read_split_file
    from md2.errors import MD2Error

    try:
        lines = read_split_file(split_dir / "test_files.txt")
        return choose_source(split, Path(data_path).expanduser(), lines[0], source) if lines else "chosen by split"
    except (MD2Error, OSError, AttributeError):
        return source or "chosen by split"
