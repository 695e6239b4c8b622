"""Getting KITTI: the archives a run needs, downloaded in parallel, verified, unpacked, resumable.

Which archives (see :mod:`md2.data.kitti_archives` for where each one's members land): the raw drives of the
splits (or of the reference's whole list) with their calibration; the depth benchmark's annotations for those
drives (asked for, or needed by a split evaluated on them: eigen_benchmark); the benchmark's test images (a split
with ``image N`` test lines: benchmark); the odometry archives (asked for, or a split of odometry lines: odom).

Each archive goes through: download (resumed with HTTP Range after an interruption, retried with back-off)
-> CRC check of every member -> extraction with path checks -> a marker file -> the zip deleted (unless
kept). A rerun skips the archives whose marker and folder exist, and resumes the rest.
"""

from __future__ import annotations

import shutil
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from md2.data.download import ProgressCallback, check_url, download_file
from md2.data.unzip import check_members, safe_extract, verify_zip
from md2.data.kitti_archives import (KITTI_RAW_URL, KITTI_URL, MARKERS, ODOMETRY_PARTS, OFFICIAL, Archive,
                                     DepthAnnotations, DepthSelection, KittiArchive, Mirror, OdometryArchive)
from md2.data.splits import calibration_dates, fetch_official, split_needs
from md2.errors import DataError, DownloadError, MD2Error, UsageError
from md2.files import make_folder

__all__ = ["ARCHIVE_LIST", "KITTI_RAW_URL", "KITTI_URL", "MARKERS", "ODOMETRY_PARTS", "Archive", "DepthAnnotations",
           "DepthSelection", "KittiArchive", "Mirror", "OdometryArchive", "Reporter", "archives_for",
           "check_free_space", "download_kitti", "fetch_archive", "plan", "space_needed"]

ARCHIVE_LIST = "kitti_archives_to_download.txt"
BENCHMARK_GT_SPLITS = ("eigen_benchmark",)
"""Splits evaluated on the depth benchmark's annotated maps (md2 export-gt's benchmark source): their drives
need data_depth_annotated.zip."""


class Reporter:
    """What a download run tells its user; the default says nothing. The CLI draws rich bars with it.
    Methods are called from worker threads (all but ``planned``)."""

    def planned(self, todo: list[tuple[KittiArchive, int | None]], done: int) -> None:
        """The archives still to get with their sizes in bytes (None when unknown); ``done`` were skipped."""

    def started(self, archive: KittiArchive, size: int | None) -> ProgressCallback | None:
        """An archive's download starts; the returned callback gets (bytes so far, total)."""
        return None

    def checking(self, archive: KittiArchive) -> ProgressCallback | None:
        """The archive is downloaded; the CRC check starts. The returned callback gets (bytes read, total)."""
        return None

    def unpacking(self, archive: KittiArchive) -> ProgressCallback | None:
        """The archive is verified; extraction starts. The returned callback gets (bytes written, total)."""
        return None

    def note(self, archive: KittiArchive, message: str) -> None:
        """Something the user should know about a finished archive (e.g. drives it has no maps for)."""

    def finished(self, archive: KittiArchive) -> None:
        """The archive is extracted and marked."""

    def failed(self, archive: KittiArchive, message: str) -> None:
        """The archive failed (the run goes on with the others and reports the failures at the end)."""


def official_archives(splits_dir: Path | str | None = None, splits_url: str | None = None) -> list[Archive]:
    """The reference's kitti_archives_to_download.txt: from ``splits_dir`` when it holds one, else the
    hash-checked copy in md2's cache (fetched on first use)."""
    local = Path(splits_dir).expanduser() / ARCHIVE_LIST if splits_dir is not None else None
    path = local if local is not None and local.is_file() else fetch_official([ARCHIVE_LIST], splits_url)[0]
    return [Archive.from_url(line) for line in path.read_text().splitlines() if line.strip()]


def archives_for(splits: list[str] | None, splits_dir: Path | str | None = None, splits_url: str | None = None,
                 *, raw: bool = True, depth_annotations: bool = False,
                 odometry_parts: tuple[str, ...] | list[str] = ()) -> list[KittiArchive]:
    """The archives of a run, in download order (see the module docstring).

    ``splits``: the splits whose data to get; empty: the reference's raw list (61 drives + 5 calibration zips).
    ``raw``: the raw drives and calibration (False: only the other archives). ``depth_annotations``: the
    annotated depth maps of every drive of the run. ``odometry_parts``: odometry archives ("color", "calib",
    "poses"); a split of odometry lines (odom) adds all three.
    """
    if splits and splits_dir is None:
        fetch_official([name for name in splits if name != ARCHIVE_LIST], splits_url)  # official ones, once
    needs = split_needs(list(splits), splits_dir) if splits else None
    raw_archives = _raw_archives(needs, splits_dir, splits_url) if raw or depth_annotations else []
    drives = [archive.name for archive in raw_archives if not archive.is_calibration]
    archives: list[KittiArchive] = list(raw_archives) if raw else []
    benchmark_gt = [name for name in splits or () if name in BENCHMARK_GT_SPLITS]
    annotated = drives if depth_annotations else split_needs(benchmark_gt, splits_dir).drives if benchmark_gt else ()
    if annotated:
        archives.append(DepthAnnotations(tuple(sorted(set(annotated)))))
    if needs is not None and needs.benchmark_images:
        archives.append(DepthSelection())
    parts = tuple(odometry_parts) or (ODOMETRY_PARTS if needs is not None and needs.odometry else ())
    archives += [OdometryArchive(part) for part in dict.fromkeys(parts)]
    if not archives:
        raise UsageError("nothing to download with --no-raw: add --depth-annotations, --odometry or a split that "
                         "needs them (eigen_benchmark, benchmark, odom)" if not raw else
                         f"nothing to download: splits {', '.join(splits or ())} name no KITTI raw drive, odometry "
                         "sequence or benchmark image")
    return archives


def _raw_archives(needs, splits_dir, splits_url) -> list[Archive]:
    """Calibration zips first, then drives: those the splits use, or the official list without splits."""
    if needs is None:
        archives = official_archives(splits_dir, splits_url)
        return sorted(archives, key=lambda archive: (not archive.is_calibration, archive.name))
    return [Archive(date) for date in calibration_dates(list(needs.drives))] + [Archive(d) for d in needs.drives]


def remote_size(url: str, timeout: float = 30.0) -> int | None:
    """Content-Length from a HEAD request; None when the server does not say or does not answer (the
    download itself then reports the problem, with retries)."""
    check_url(url)
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "md2"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length", "")
            return int(length) if length.isdigit() else None
    except (urllib.error.URLError, OSError):
        return None


def unreachable(url: str, timeout: float = 30.0) -> str | None:
    """Why the server of ``url`` cannot be reached (no network, unknown host, refused, timed out), or None when
    it answers anything at all (an HTTP error status is an answer)."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "md2"})
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as error:
        return str(getattr(error.reason, "strerror", None) or error.reason)
    except OSError as error:
        return error.strerror or str(error)


def plan(archives: list[KittiArchive], output: Path, mirror: Mirror = OFFICIAL,
         jobs: int = 4) -> list[tuple[KittiArchive, int | None]]:
    """What is still to get (whole archives, or the drives of the annotations not unpacked yet), with the
    zips' sizes in bytes (HEAD requests in parallel)."""
    todo = [rest for archive in archives if (rest := archive.remaining(output)) is not None]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        sizes = list(pool.map(lambda archive: remote_size(archive.url(mirror)), todo))
    return list(zip(todo, sizes))


def space_needed(todo: list[tuple[KittiArchive, int | None]], output: Path, jobs: int, keep_zips: bool) -> int:
    """Bytes the run needs on disk: the contents (about the zips' size: KITTI's PNGs do not compress; an upper
    bound for the archives only partly unpacked) plus the zips themselves (all when kept, else the ``jobs``
    largest at once), minus what is already downloaded."""
    sizes = sorted((size or 0 for _, size in todo), reverse=True)
    have = sum(path.stat().st_size for archive, _ in todo
               for path in (output / archive.filename, output / f"{archive.filename}.part") if path.is_file())
    return max(0, sum(sizes) + (sum(sizes) if keep_zips else sum(sizes[:jobs])) - have)


def check_free_space(output: Path, needed: int) -> None:
    """Refuse to start when the disk cannot hold what the run needs."""
    make_folder(output)
    free = shutil.disk_usage(output).free
    if free < needed:
        raise DataError(f"{output} has {free / 1e9:.1f} GB free but the download needs about {needed / 1e9:.1f} GB "
                        "(contents plus zips); free some space or choose another --output")


def fetch_archive(archive: KittiArchive, output: Path, mirror: Mirror = OFFICIAL, *, keep_zip: bool = False,
                  progress: ProgressCallback | None = None, reporter: Reporter | None = None,
                  stop: threading.Event | None = None) -> None:
    """Download (or reuse a complete zip), verify, extract and mark one archive. ``progress`` gets the download's
    bytes; once ``stop`` is set, the next chunk read or file written raises (a kept zip or .part resumes later)."""
    reporter = reporter or Reporter()
    zip_path, url = output / archive.filename, archive.url(mirror)
    reused = zip_path.is_file()  # downloaded by an earlier run that stopped before the extraction finished
    if not reused:
        _download(url, zip_path, _guarded(progress, stop))
    try:
        _verify(zip_path, _guarded(reporter.checking(archive), stop))
    except DownloadError:
        if not reused:
            raise
        _download(url, zip_path, _guarded(progress, stop))  # the earlier zip was damaged (and is deleted): again
        _verify(zip_path, _guarded(reporter.checking(archive), stop))
    written = safe_extract(zip_path, output, select=archive.target,
                           progress=_guarded(reporter.unpacking(archive), stop))
    note = archive.mark(output, url, written)
    if note:
        reporter.note(archive, note)
    if not keep_zip:
        zip_path.unlink()


def _guarded(callback: ProgressCallback | None, stop: threading.Event | None) -> ProgressCallback | None:
    """``callback``, raising _Cancelled first once ``stop`` is set."""
    if stop is None:
        return callback

    def guarded(done: int, total: int | None) -> None:
        if stop.is_set():
            raise _Cancelled
        if callback is not None:
            callback(done, total)

    return guarded


def _download(url: str, zip_path: Path, progress: ProgressCallback | None) -> None:
    download_file(url, zip_path, progress=progress,
                  mirror_hint="or use --base-url / --archives-url for a mirror; run again to resume")


def _verify(zip_path: Path, progress: ProgressCallback | None = None) -> None:
    """CRCs and member paths; a bad zip is deleted (never extracted, fetched afresh next time)."""
    try:
        check_members(zip_path)
        verify_zip(zip_path, progress)
    except DownloadError:
        zip_path.unlink(missing_ok=True)
        raise


class _Cancelled(Exception):
    """Raised inside a worker's progress callback to stop its download, check or extraction (its .part or zip
    stays for a resume)."""


def download_kitti(output: Path | str, splits: list[str] | None = None, *, splits_dir: Path | str | None = None,
                   base_url: str | None = None, archives_url: str | None = None, splits_url: str | None = None,
                   jobs: int = 4, keep_zips: bool = False, raw: bool = True, depth_annotations: bool = False,
                   odometry_parts: tuple[str, ...] | list[str] = (),
                   reporter: Reporter | None = None) -> list[KittiArchive]:
    """Get every archive the run needs (see :func:`archives_for`) into ``output``; returns the archives fetched
    this time. ``base_url`` / ``archives_url``: mirrors (see :meth:`Mirror.of`).

    A failed archive does not stop the others; the failures are raised together at the end, so a rerun
    resumes exactly what is missing. Ctrl-C stops the downloads within a chunk (and checks and extractions
    within a chunk or a file), keeping the partial files.
    """
    output, reporter = Path(output).expanduser(), reporter or Reporter()
    mirror = Mirror.of(base_url, archives_url)
    archives = archives_for(splits, splits_dir, splits_url, raw=raw, depth_annotations=depth_annotations,
                            odometry_parts=odometry_parts)
    todo = plan(archives, output, mirror, jobs)
    reporter.planned(todo, len(archives) - len(todo))
    check_free_space(output, space_needed(todo, output, jobs, keep_zips))
    stop, errors = threading.Event(), []

    def work(archive: KittiArchive, size: int | None) -> None:
        try:
            fetch_archive(archive, output, mirror, keep_zip=keep_zips, progress=reporter.started(archive, size),
                          reporter=reporter, stop=stop)
        except MD2Error as error:
            errors.append(f"{archive.filename}: {error}")
            reporter.failed(archive, str(error))
            return
        reporter.finished(archive)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        for future in as_completed([pool.submit(work, archive, size) for archive, size in todo]):
            future.result()
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    if errors:
        raise DownloadError(f"{len(errors)} of {len(todo)} archives failed (run the same command again to resume); "
                            f"first: {errors[0]}")
    return [archive for archive, _ in todo]
