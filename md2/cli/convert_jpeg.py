"""Convert KITTI camera PNGs to JPEG (quality 92, 4:2:0) safely and resumably, deleting each PNG once verified."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

NAME = "convert-jpeg"
EPILOG = "Examples:  md2 convert-jpeg kitti_data  |  md2 convert-jpeg kitti_data --jobs 8 --keep-png"


def command(
    data_path: Annotated[Path, typer.Argument(help="The KITTI folder.")] = Path("kitti_data"),
    jobs: Annotated[Optional[int], typer.Option(min=1, help="Parallel processes [default: all cores].")] = None,
    keep_png: Annotated[bool, typer.Option(help="Keep the PNGs beside the JPEGs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Convert KITTI camera PNGs to JPEG (quality 92, 4:2:0) safely and resumably, deleting each PNG once verified."""
    from md2.data.convert import convert_tree
    from md2.errors import DataError

    console = Console(stderr=True, quiet=quiet)
    with Progress(TextColumn("convert-jpeg"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=quiet, transient=True) as progress:
        task = progress.add_task("convert", total=None)

        def advance(total: int) -> None:
            progress.update(task, total=total, advance=1)

        report = convert_tree(data_path, jobs=jobs or os.cpu_count(), keep_png=keep_png, on_image=advance)
    saved = (report.bytes_before - report.bytes_after) / 1e6
    console.print(f"{report.converted} converted, {report.skipped} already done, {len(report.failed)} failed; "
                  f"{saved:.1f} MB saved" + (" (PNGs kept)" if keep_png else ""), highlight=False)
    if report.failed:
        raise DataError(f"{len(report.failed)} images failed, first: {report.failed[0]}")
