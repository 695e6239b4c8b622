"""Write a synthetic dataset in the KITTI layout: street scenes with stereo, lidar and exact depth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

NAME = "synth"
EPILOG = ("Writes OUT/2011_09_26/calib_*.txt, OUT/2011_09_26/<drive>/image_02|image_03/data/*.png, "
          "velodyne_points/data/*.bin, rendered_depth/image_02|image_03/*.npy (exact depth, metres) and split "
          "files OUT/splits/synth/{train,val,test}_files.txt (--odometry: OUT/sequences, OUT/poses, "
          "OUT/splits/odom).  Examples:  md2 synth synth_data  |  md2 synth synth_data --drives 4 --frames 40 "
          "--width 640 --height 192  |  md2 synth synth_odom --odometry --depth-benchmark  |  then: md2 train "
          "--data-path synth_data --splits-dir synth_data/splits --split synth --png")

PROGRESS_FROM = 5
"""Frames to write from which a progress bar is shown."""


def command(
    out: Annotated[Path, typer.Argument(help="Folder to write (the KITTI data root).")],
    drives: Annotated[int, typer.Option(min=1, help="Number of drives.")] = 2,
    frames: Annotated[int, typer.Option(min=3, help="Frames per drive (about one metre apart).")] = 20,
    seed: Annotated[int, typer.Option(min=0, help="Random seed: the same seed writes the same bytes.")] = 0,
    width: Annotated[int, typer.Option(min=8, help="Image width (KITTI: 1242).")] = 1242,
    height: Annotated[int, typer.Option(min=8, help="Image height (KITTI: 375).")] = 375,
    jpeg: Annotated[bool, typer.Option("--jpeg", help="Write JPEG (quality 92, 4:2:0) instead of PNG.")] = False,
    lidar: Annotated[bool, typer.Option("--lidar/--no-lidar", help="Write the velodyne scans.")] = True,
    odometry: Annotated[bool, typer.Option(help="Also the odometry layout: sequences/NN and poses/NN.txt.")] = False,
    depth_benchmark: Annotated[bool, typer.Option(help="Also proj_depth/groundtruth PNGs.")] = False,
    jobs: Annotated[Optional[int], typer.Option(min=1, help="Parallel processes (default: all cores).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also every setting used, and the drives written.")]
    = False,
) -> None:
    """Write a synthetic dataset in the KITTI layout: street scenes with stereo, lidar and exact depth."""
    from md2.cli.common import status_console
    from md2.data.synth import SynthOptions, drive_name, generate_dataset
    from md2.errors import DataError, UsageError

    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file: give a folder to write the dataset into")
    options = SynthOptions(drives=drives, frames=frames, seed=seed, width=width, height=height,
                           ext="jpg" if jpeg else "png", lidar=lidar, depth_benchmark=depth_benchmark,
                           odometry=odometry)
    console = status_console(quiet, verbose)
    if verbose:
        from md2.data.convert import available_cpus

        console.print(f"settings: {options}, up to {min(jobs or available_cpus(), drives * frames)} jobs",
                      soft_wrap=True)
    total = drives * frames
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  disable=quiet or total < PROGRESS_FROM or not console.is_terminal, transient=True) as progress:
        task = progress.add_task("synth", total=total)
        try:
            generate_dataset(out, options, on_frame=lambda: progress.advance(task), jobs=jobs)
        except OSError as error:  # a full disk, no permission, a file where a folder goes
            where = error.filename or out
            raise DataError(f"cannot write the synthetic dataset to {out}: {error.strerror or error} "
                            f"({where})") from None
    if verbose:
        for index in range(drives):
            console.print(f"  {out / drive_name(index)}", soft_wrap=True)
    console.print(f"wrote {drives} drives x {frames} frames ({width}x{height}) to {out}; "
                  f"splits in {out / 'splits'}", highlight=False, soft_wrap=True)
