"""Convert KITTI camera PNGs to JPEG (quality 92, 4:2:0) safely and resumably, deleting each PNG once verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

NAME = "convert-jpeg"
EPILOG = ("Examples:  md2 convert-jpeg kitti_data  |  md2 convert-jpeg kitti_data --jobs 8 --keep-png. "
          "Only camera images are converted (DATE/DRIVE/image_0x/data and sequences/NN/image_x), never the "
          "proj_depth ground truth. Interrupted? Run the same command again: it resumes.")


def command(
    data_path: Annotated[Path, typer.Argument(help="The KITTI folder (or any folder below it).")] = Path("kitti_data"),
    jobs: Annotated[Optional[int], typer.Option(min=1, help="Parallel processes (default: all cores).")] = None,
    keep_png: Annotated[bool, typer.Option("--keep-png", help="Keep each PNG beside its JPEG.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also the folder and settings used.")] = False,
) -> None:
    """Convert KITTI camera PNGs to JPEG (quality 92, 4:2:0) safely and resumably, deleting each PNG once verified."""
    from md2.cli.common import status_console
    from md2.data.convert import available_cpus, convert_tree
    from md2.errors import DataError

    console = status_console(quiet, verbose)
    report = convert_tree(data_path, jobs=jobs, keep_png=keep_png, progress=not quiet)
    if report.failed:  # one line: the failure, with the summary in it
        count = len(report.failed)
        left = "PNGs not converted, left as they are" if count > 1 else "PNG not converted, left as it is"
        raise DataError(f"{count} {left} ({report.converted} converted, {report.skipped} already done); first: "
                        f"{report.failed[0]}")
    saved = f"{report.bytes_saved / 1e6:.1f} MB " + ("smaller as JPEG (PNGs kept)" if keep_png else "saved")
    console.print(f"{report.converted} images converted to JPEG, {report.skipped} already done, 0 failed; {saved}",
                  soft_wrap=True)
    if verbose:
        console.print(f"data folder {data_path.expanduser().resolve()}, {jobs or available_cpus()} jobs, "
                      f"PNGs {'kept' if keep_png else 'deleted once their JPEG is verified'}", soft_wrap=True)
