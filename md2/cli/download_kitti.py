"""Download KITTI raw (all of it, or only the drives your splits use): resumable, verified, unpacked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from md2.cli.common import status_console
from md2.data import kitti_download as kd
from md2.errors import DataError

NAME = "download-kitti"
EPILOG = ("Examples:  md2 download-kitti --split eigen --dry-run  |  md2 download-kitti --output kitti_data "
          "--split eigen --split eigen_zhou --convert-jpeg  |  md2 download-kitti --splits-only")


def command(
    output: Annotated[Path, typer.Option(help="Where KITTI goes (DATE/DRIVE_sync/... as the reference expects).")]
    = Path("kitti_data"),
    split: Annotated[Optional[list[str]], typer.Option(
        help="Only the drives this split uses, plus their calibration (repeatable) "
             "(default: the reference's whole list, 61 drives and 5 calibration zips, about 175 GB).")] = None,
    splits_dir: Annotated[Optional[Path], typer.Option(
        help="Folder holding split folders (DIR/NAME/*_files.txt; default: md2's cache of the official lists).")]
    = None,
    jobs: Annotated[int, typer.Option(min=1, help="Archives downloaded in parallel.")] = 4,
    base_url: Annotated[Optional[str], typer.Option(
        help="A mirror of KITTI's raw_data folder (DRIVE/DRIVE_sync.zip and DATE_calib.zip under it).")] = None,
    splits_url: Annotated[Optional[str], typer.Option(
        envvar="MD2_SPLITS_URL", help="A mirror of the reference's splits/ folder, for the official lists.")] = None,
    keep_zips: Annotated[bool, typer.Option(help="Keep the zips after a verified extraction.")] = False,
    convert_jpeg: Annotated[bool, typer.Option(
        help="Then convert the PNGs to JPEG as the reference expects (md2 convert-jpeg).")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the archives and the total size, download nothing.")] = False,
    splits_only: Annotated[bool, typer.Option(help="Only fetch the official split lists into md2's cache.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also the settings used and one line per archive.")]
    = False,
) -> None:
    """Download KITTI raw (all of it, or only the drives your splits use): resumable, verified, unpacked."""
    from md2.data.splits import cache_root, fetch_official

    console = status_console(quiet, verbose)
    if verbose:
        console.print(f"output {output}, splits {', '.join(split) if split else 'all of the reference list'}, "
                      f"mirror {base_url or kd.KITTI_RAW_URL}, {jobs} jobs", soft_wrap=True)
    if splits_only:
        paths = fetch_official(None, splits_url)
        console.print(f"{len(paths)} official split files in {cache_root()}")
        return
    if dry_run:
        _dry_run(kd.archives_for(split, splits_dir, splits_url), output.expanduser(), base_url or kd.KITTI_RAW_URL,
                 jobs, keep_zips)
        return
    with _RichReporter(console, quiet, verbose) as reporter:
        fetched = kd.download_kitti(output, split, splits_dir=splits_dir, base_url=base_url, splits_url=splits_url,
                                    jobs=jobs, keep_zips=keep_zips, reporter=reporter)
    console.print(f"{len(fetched)} archives downloaded and unpacked into {output}"
                  + (f" ({reporter.skipped} were already there)" if reporter.skipped else ""))
    if convert_jpeg:
        _convert(output, console, quiet)


def _dry_run(archives, output: Path, base: str, jobs: int, keep_zips: bool) -> None:
    todo = kd.plan(archives, output, base, jobs)
    for archive, size in todo:
        typer.echo(f"{archive.url(base)}\t{_size(size)}")
    total = sum(size or 0 for _, size in todo)
    unknown = sum(size is None for _, size in todo)
    typer.echo(f"{len(todo)} archives to download ({len(archives) - len(todo)} already done), {_size(total)} in "
               f"total{f' plus {unknown} of unknown size' if unknown else ''}; about "
               f"{_size(kd.space_needed(todo, output, jobs, keep_zips))} of disk needed")


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

    def unpacking(self, archive) -> None:
        self.bar.update(self.tasks[archive], description=f"unpacking {archive.filename}")

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

