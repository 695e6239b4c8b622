"""Download KITTI raw (all of it, or only the drives your splits use): resumable, verified, unpacked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

NAME = "download-kitti"
EPILOG = ("Examples:  md2 download-kitti --split eigen --dry-run  |  md2 download-kitti --output kitti_data "
          "--split eigen --split eigen_zhou --convert-jpeg  |  md2 download-kitti --splits-only")


def command(
    output: Annotated[Path, typer.Option(help="Where KITTI goes.")] = Path("kitti_data"),
    split: Annotated[Optional[list[str]], typer.Option(
        help="Only the drives this split uses (repeatable) [default: all 61 drives of the official splits].")] = None,
    splits_dir: Annotated[Optional[Path], typer.Option(help="Folder holding split folders.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Archives downloaded in parallel.")] = 4,
    base_url: Annotated[Optional[str], typer.Option(help="A mirror of KITTI's raw_data folder.")] = None,
    keep_zips: Annotated[bool, typer.Option(help="Keep the zips after a verified extraction.")] = False,
    convert_jpeg: Annotated[bool, typer.Option(help="Then convert the PNGs to JPEG (md2 convert-jpeg).")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the archives and the total size, download nothing.")] = False,
    splits_only: Annotated[bool, typer.Option(help="Only fetch the official split lists into md2's cache.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Download KITTI raw (all of it, or only the drives your splits use): resumable, verified, unpacked."""
    from md2.data import kitti_download as kd

    console = Console(stderr=True, quiet=quiet)
    if splits_only:
        paths = kd.fetch_split_lists()
        console.print(f"{len(paths)} official split files in {paths[0].parents[1] if paths else '-'}")
        return
    if dry_run:
        todo = kd.plan(kd.archives_for(split, splits_dir), output, base_url or kd.KITTI_RAW_URL, jobs)
        for archive, size in todo:
            typer.echo(f"{archive.url(base_url or kd.KITTI_RAW_URL)}\t{_size(size)}")
        total = sum(size or 0 for _, size in todo)
        typer.echo(f"{len(todo)} archives to download, {_size(total)} in total (about twice that while unpacking)")
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=console, disable=quiet) as progress:
        overall = progress.add_task("KITTI archives", total=None)

        def progress_for(archive, size):
            task = progress.add_task(archive.filename, total=size)
            return lambda done, total: progress.update(task, completed=done, total=total)

        fetched = kd.download_kitti(output, split, splits_dir=splits_dir, base_url=base_url, jobs=jobs,
                                    keep_zips=keep_zips, on_plan=lambda todo: progress.update(overall, total=len(todo)),
                                    progress_for=progress_for, on_done=lambda _: progress.advance(overall))
    console.print(f"{len(fetched)} archives downloaded and unpacked into {output}", highlight=False)
    if convert_jpeg:
        from md2.data.convert import convert_tree

        report = convert_tree(output, jobs=os.cpu_count())
        console.print(f"{report.converted} images converted to JPEG", highlight=False)


def _size(size: int | None) -> str:
    return "unknown size" if size is None else f"{size / 1e9:.2f} GB"
