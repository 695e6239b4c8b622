"""Export the ground-truth depth maps of a test split to SPLIT/gt_depths.npz (the reference's export_gt_depth.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

NAME = "export-gt"
EPILOG = ("Examples:  md2 export-gt --data-path kitti_data --split eigen  |  "
          "md2 export-gt --data-path kitti_data --split eigen_benchmark  |  "
          "md2 export-gt --data-path synth_data --split synth --splits-dir synth_data/splits")


def command(
    data_path: Annotated[Path, typer.Option(help="The KITTI folder.")] = Path("kitti_data"),
    split: Annotated[str, typer.Option(help="eigen, eigen_benchmark, or your own split folder's name.")] = "eigen",
    splits_dir: Annotated[Optional[Path], typer.Option(help="Folder holding split folders.")] = None,
    source: Annotated[Optional[str], typer.Option(
        help="lidar (velodyne scans) or benchmark (proj_depth PNGs) [default: benchmark for eigen_benchmark, "
             "lidar otherwise].")] = None,
    jobs: Annotated[Optional[int], typer.Option(min=1, help="Frames read in parallel [default: all cores].")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Export the ground-truth depth maps of a test split to SPLIT/gt_depths.npz (the reference's export_gt_depth.py)."""
    from md2.data.groundtruth import export_gt

    console = Console(stderr=True, quiet=quiet)
    with Progress(TextColumn("export-gt"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=quiet, transient=True) as progress:
        task = progress.add_task("export", total=None)
        path, count = export_gt(data_path, split, splits_dir=splits_dir, source=source,
                                jobs=jobs or os.cpu_count() or 1,
                                on_frame=lambda total: progress.update(task, total=total, advance=1))
    console.print(f"wrote {count} ground-truth depth maps to {path}", highlight=False)
