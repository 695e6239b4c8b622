"""Download KITTI (raw, depth benchmark annotations and test images, odometry): resumable, verified, unpacked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from md2.cli.common import parse_str_list, status_console
from md2.cli.options import check_url_options
from md2.data import kitti_download as kd
from md2.errors import DataError, DownloadError

NAME = "download-kitti"
EPILOG = ("Examples:  md2 download-kitti --split eigen --dry-run  |  md2 download-kitti --output kitti_data "
          "--split eigen --split eigen_zhou --convert-jpeg  |  md2 download-kitti --depth-annotations --odometry  |  "
          "md2 download-kitti --no-raw --odometry --odometry-parts poses  |  md2 download-kitti --splits-only")
_WHAT = "what to get"
_WHERE = "sources"


def command(
    output: Annotated[Path, typer.Option(
        help="Where KITTI goes: DATE/DRIVE_sync/... as the reference expects, and the odometry dataset's sequences/ "
             "and poses/ beside them.")] = Path("kitti_data"),
    split: Annotated[Optional[list[str]], typer.Option(
        help="Only what this split uses (repeatable): its drives and their calibration; eigen_benchmark adds the "
             "drives' depth annotations, benchmark the benchmark's test images, odom the odometry dataset "
             "(default: the reference's whole raw list, 61 drives and 5 calibration zips, about 175 GB).",
        rich_help_panel=_WHAT)] = None,
    depth_annotations: Annotated[bool, typer.Option(
        "--depth-annotations", help="Also the depth benchmark's annotated maps (data_depth_annotated.zip, about 14 GB) "
        "of every drive of the run, unpacked into DATE/DRIVE_sync/proj_depth/ (export-gt eigen_benchmark, "
        "--dataset kitti_depth).", rich_help_panel=_WHAT)] = False,
    odometry: Annotated[bool, typer.Option(
        "--odometry", help="Also the KITTI odometry dataset (colour images about 65 GB, calibration, poses) as "
        "sequences/NN/image_2 and poses/NN.txt (train --dataset kitti_odom, evaluate-pose).",
        rich_help_panel=_WHAT)] = False,
    odometry_parts: Annotated[Optional[str], typer.Option(
        help="Which odometry archives, comma-separated: color, calib, poses (default: all three; implies "
             "--odometry).", rich_help_panel=_WHAT)] = None,
    raw: Annotated[bool, typer.Option(
        help="The raw drives and calibration; --no-raw gets only the other archives.", rich_help_panel=_WHAT)] = True,
    splits_dir: Annotated[Optional[Path], typer.Option(
        help="Folder holding split folders (DIR/NAME/*_files.txt; default: md2's cache of the official lists).",
        rich_help_panel=_WHERE)] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Archives downloaded in parallel.")] = 4,
    base_url: Annotated[Optional[str], typer.Option(
        help="A mirror of KITTI's raw_data folder (DRIVE/DRIVE_sync.zip and DATE_calib.zip under it).",
        rich_help_panel=_WHERE)] = None,
    archives_url: Annotated[Optional[str], typer.Option(
        help="A mirror of the folder holding data_depth_*.zip and data_odometry_*.zip (default: the folder above "
             "--base-url when it ends in raw_data, else KITTI's server).", rich_help_panel=_WHERE)] = None,
    splits_url: Annotated[Optional[str], typer.Option(
        envvar="MD2_SPLITS_URL", help="A mirror of the reference's splits/ folder, for the official lists.",
        rich_help_panel=_WHERE)] = None,
    keep_zips: Annotated[bool, typer.Option(help="Keep the zips after a verified extraction.")] = False,
    convert_jpeg: Annotated[bool, typer.Option(
        help="Then convert the camera PNGs to JPEG as the reference expects (md2 convert-jpeg).")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the archives and the total size, download nothing.")] = False,
    splits_only: Annotated[bool, typer.Option(help="Only fetch the official split lists into md2's cache.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also the settings used and one line per archive.")]
    = False,
) -> None:
    """Download KITTI (raw, depth benchmark annotations and test images, odometry): resumable, verified, unpacked."""
    from md2.data.splits import cache_root, fetch_official

    console = status_console(quiet, verbose)
    check_url_options({"--base-url": base_url, "--archives-url": archives_url,
                       "--splits-url (or MD2_SPLITS_URL)": splits_url})
    mirror = kd.Mirror.of(base_url, archives_url)
    parts = tuple(parse_str_list(odometry_parts, "--odometry-parts")) if odometry_parts is not None else \
        kd.ODOMETRY_PARTS if odometry else ()
    if verbose:
        console.print(f"output {output}, splits {', '.join(split) if split else 'all of the reference list'}, "
                      f"raw {'yes' if raw else 'no'}, depth annotations {'yes' if depth_annotations else 'no'}, "
                      f"odometry {', '.join(parts) or 'no'}, mirrors {mirror.raw} and {mirror.benchmarks}, "
                      f"{jobs} jobs", soft_wrap=True)
    if splits_only:
        paths = fetch_official(None, splits_url)
        console.print(f"{len(paths)} official split files in {cache_root()}")
        return
    selection = {"raw": raw, "depth_annotations": depth_annotations, "odometry_parts": parts}
    if dry_run:
        _dry_run(kd.archives_for(split, splits_dir, splits_url, **selection), output.expanduser(), mirror, jobs,
                 keep_zips)
        return
    with _RichReporter(console, quiet, verbose) as reporter:
        fetched = kd.download_kitti(output, split, splits_dir=splits_dir, base_url=base_url, archives_url=archives_url,
                                    splits_url=splits_url, jobs=jobs, keep_zips=keep_zips, reporter=reporter,
                                    **selection)
    console.print(f"{len(fetched)} archives downloaded and unpacked into {escape(str(output))}"
                  + (f" ({reporter.skipped} were already there)" if reporter.skipped else ""))
    if convert_jpeg:
        _convert(output, console, quiet)


def _dry_run(archives, output: Path, mirror, jobs: int, keep_zips: bool) -> None:
    todo = kd.plan(archives, output, mirror, jobs)
    for archive, size in todo:
        typer.echo("\t".join([archive.url(mirror), _size(size), *filter(None, [_contents(archive)])]))
    total = sum(size or 0 for _, size in todo)
    unknown = sum(size is None for _, size in todo)
    if todo and unknown == len(todo):
        url = todo[0][0].url(mirror)
        reason = kd.unreachable(url)
        if reason is not None:  # offline: no "0.00 GB in total" as if it were a size
            raise DownloadError(f"the dry run lists {len(todo)} archives but cannot tell their sizes: the server "
                                f"of {url} could not be reached ({reason})")
    typer.echo(f"{len(todo)} archives to download ({len(archives) - len(todo)} already done), {_size(total)} in "
               f"total{f' plus {unknown} of unknown size' if unknown else ''}; about "
               f"{_size(kd.space_needed(todo, output, jobs, keep_zips))} of disk needed")


def _contents(archive) -> str:
    """What of a non-raw archive is unpacked, and where."""
    if isinstance(archive, kd.DepthAnnotations):
        return f"depth maps of {len(archive.drives)} drives -> DATE/DRIVE_sync/proj_depth/"
    if isinstance(archive, kd.DepthSelection):
        return "benchmark test images -> depth_selection/test_depth_prediction_anonymous/"
    if isinstance(archive, kd.OdometryArchive):
        return "odometry -> " + ("poses/" if archive.part == "poses" else "sequences/")
    return ""


def _convert(output: Path, console: Console, quiet: bool) -> None:
    from md2.data.convert import convert_tree

    report = convert_tree(output, keep_png=False, progress=not quiet)
    console.print(f"{report.converted} images converted to JPEG, {report.skipped} already done, "
                  f"{(report.bytes_before - report.bytes_after) / 1e9:.2f} GB saved")
    if report.failed:
        raise DataError(f"{len(report.failed)} images could not be converted (run again to retry); first: "
                        f"{report.failed[0]}")


def _size(size: int | None) -> str:
    return "unknown size" if size is None else f"{size / 1e9:.2f} GB"


class _RichReporter(kd.Reporter):
    """Rich bars for md2.data.kitti_download.Reporter: one for all bytes, one per archive in flight."""

    def __init__(self, console: Console, quiet: bool, verbose: bool = False) -> None:
        self.console, self.verbose = console, verbose
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), console=console, disable=quiet or not console.is_terminal)
        self.overall = self.bar.add_task("KITTI", total=None)
        self.tasks, self.done, self.count, self.finished_count, self.skipped = {}, {}, 0, 0, 0

    def __enter__(self) -> "_RichReporter":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def planned(self, todo, done: int) -> None:
        self.count, self.skipped = len(todo), done
        self.done = {archive: 0 for archive, _ in todo}
        total = sum(size or 0 for _, size in todo)
        self.bar.update(self.overall, total=total or None, description=self._overall_text())

    def started(self, archive, size):
        task = self.bar.add_task(archive.filename, total=size)
        self.tasks[archive] = task

        def report(done: int, total: int | None) -> None:
            self.done[archive] = done
            self.bar.update(task, completed=done, total=total)
            self.bar.update(self.overall, completed=sum(self.done.values()))

        return report

    def checking(self, archive):
        return self._stage(archive, "checking")

    def unpacking(self, archive):
        return self._stage(archive, "unpacking")

    def _stage(self, archive, verb: str):
        """The archive's bar restarts for the CRC check or the extraction, in bytes."""
        task = self.tasks[archive]
        self.bar.reset(task, total=None, description=f"{verb} {archive.filename}")  # also its speed samples
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def note(self, archive, message: str) -> None:
        self.bar.console.print(f"[yellow]note:[/yellow] {escape(message)}")

    def finished(self, archive) -> None:
        self.finished_count += 1
        if self.verbose:
            self.bar.console.print(f"  unpacked {archive.filename}")
        self.bar.update(self.tasks[archive], visible=False)
        self.bar.update(self.overall, description=self._overall_text())

    def failed(self, archive, message: str) -> None:
        if archive in self.tasks:
            self.bar.update(self.tasks[archive], visible=False)

    def _overall_text(self) -> str:
        return f"KITTI ({self.finished_count}/{self.count} archives)"

