"""Getting KITTI raw: the archives a split needs, downloaded in parallel, verified, unpacked, resumable.

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
from dataclasses import dataclass
from pathlib import Path

from md2.data.download import ProgressCallback, check_members, download_file, safe_extract, verify_zip
from md2.data.splits import calibration_dates, drives_for_splits, fetch_official
from md2.errors import DataError, DownloadError, MD2Error

KITTI_RAW_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/raw_data"
ARCHIVE_LIST = "kitti_archives_to_download.txt"
MARKERS = ".md2-extracted"
"""OUTPUT/.md2-extracted/<zip name>.done is written once an archive is completely extracted."""


@dataclass(frozen=True)
class Archive:
    """One KITTI raw zip: a drive ("2011_09_26_drive_0001") or a day's calibration ("2011_09_26")."""

    name: str

    @property
    def is_calibration(self) -> bool:
        return "_drive_" not in self.name

    @property
    def filename(self) -> str:
        return f"{self.name}_calib.zip" if self.is_calibration else f"{self.name}_sync.zip"

    def url(self, base_url: str = KITTI_RAW_URL) -> str:
        base = base_url.rstrip("/")
        return f"{base}/{self.filename}" if self.is_calibration else f"{base}/{self.name}/{self.filename}"

    def unpacked(self, output: Path) -> Path:
        """A path that exists once the archive is extracted into ``output``."""
        date = self.name[:10]
        return output / date / ("calib_cam_to_cam.txt" if self.is_calibration else f"{self.name}_sync")

    @classmethod
    def from_url(cls, url: str) -> "Archive":
        """``.../2011_09_26_calib.zip`` or ``.../2011_09_26_drive_0001_sync.zip`` -> its Archive."""
        filename = url.strip().rsplit("/", 1)[-1]
        for suffix in ("_calib.zip", "_sync.zip"):
            if filename.endswith(suffix):
                return cls(filename.removesuffix(suffix))
        raise DataError(f"not a KITTI raw archive: {url!r}")


class Reporter:
    """What a download run tells its user; the default says nothing. The CLI draws rich bars with it.
    Methods are called from worker threads (all but ``planned``)."""

    def planned(self, todo: list[tuple[Archive, int | None]], done: int) -> None:
        """The archives still to get with their sizes in bytes (None when unknown); ``done`` were skipped."""

    def started(self, archive: Archive, size: int | None) -> ProgressCallback | None:
        """An archive's download starts; the returned callback gets (bytes so far, total)."""
        return None

    def unpacking(self, archive: Archive) -> None:
        """The archive is downloaded and verified; extraction starts."""

    def finished(self, archive: Archive) -> None:
        """The archive is extracted and marked."""

    def failed(self, archive: Archive, message: str) -> None:
        """The archive failed (the run goes on with the others and reports the failures at the end)."""


def official_archives(splits_dir: Path | str | None = None, splits_url: str | None = None) -> list[Archive]:
    """The reference's kitti_archives_to_download.txt: from ``splits_dir`` when it holds one, else the
    hash-checked copy in md2's cache (fetched on first use)."""
    local = Path(splits_dir).expanduser() / ARCHIVE_LIST if splits_dir is not None else None
    path = local if local is not None and local.is_file() else fetch_official([ARCHIVE_LIST], splits_url)[0]
    return [Archive.from_url(line) for line in path.read_text().splitlines() if line.strip()]


def archives_for(splits: list[str] | None, splits_dir: Path | str | None = None,
                 splits_url: str | None = None) -> list[Archive]:
    """Calibration zips first, then drives: those the named splits use, or the official list (61 drives + 5
    calibration zips) when ``splits`` is empty."""
    if not splits:
        archives = official_archives(splits_dir, splits_url)
        return sorted(archives, key=lambda archive: (not archive.is_calibration, archive.name))
    if splits_dir is None:
        fetch_official([name for name in splits if name != ARCHIVE_LIST], splits_url)  # official ones, once
    drives = drives_for_splits(list(splits), splits_dir)
    return [Archive(date) for date in calibration_dates(drives)] + [Archive(drive) for drive in drives]


def remote_size(url: str, timeout: float = 30.0) -> int | None:
    """Content-Length from a HEAD request; None when the server does not say or does not answer (the
    download itself then reports the problem, with retries)."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "md2"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length", "")
            return int(length) if length.isdigit() else None
    except (urllib.error.URLError, OSError):
        return None


def is_done(output: Path, archive: Archive) -> bool:
    return (output / MARKERS / f"{archive.filename}.done").is_file() and archive.unpacked(output).exists()


def plan(archives: list[Archive], output: Path, base_url: str, jobs: int = 4) -> list[tuple[Archive, int | None]]:
    """The archives still to get, with their sizes in bytes (HEAD requests in parallel)."""
    todo = [archive for archive in archives if not is_done(output, archive)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        sizes = list(pool.map(lambda archive: remote_size(archive.url(base_url)), todo))
    return list(zip(todo, sizes))


def space_needed(todo: list[tuple[Archive, int | None]], output: Path, jobs: int, keep_zips: bool) -> int:
    """Bytes the run needs on disk: the contents (about the zips' size: KITTI's PNGs do not compress) plus the
    zips themselves (all when kept, else the ``jobs`` largest at once), minus what is already downloaded."""
    sizes = sorted((size or 0 for _, size in todo), reverse=True)
    have = sum(path.stat().st_size for archive, _ in todo
               for path in (output / archive.filename, output / f"{archive.filename}.part") if path.is_file())
    return max(0, sum(sizes) + (sum(sizes) if keep_zips else sum(sizes[:jobs])) - have)


def check_free_space(output: Path, needed: int) -> None:
    """Refuse to start when the disk cannot hold what the run needs."""
    output.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(output).free
    if free < needed:
        raise DataError(f"{output} has {free / 1e9:.1f} GB free but the download needs about {needed / 1e9:.1f} GB "
                        "(contents plus zips); free some space or choose another --output")


def fetch_archive(archive: Archive, output: Path, base_url: str, *, keep_zip: bool = False,
                  progress: ProgressCallback | None = None, reporter: Reporter | None = None) -> None:
    """Download (or reuse a complete zip), verify, extract and mark one archive."""
    zip_path = output / archive.filename
    if zip_path.is_file():  # downloaded by an earlier run that stopped before the extraction finished
        try:
            _verify(zip_path)
        except DownloadError:
            pass  # deleted: downloaded again below
    if not zip_path.is_file():
        download_file(archive.url(base_url), zip_path, progress=progress,
                      mirror_hint="or use --base-url for a mirror; run again to resume")
        _verify(zip_path)
    if reporter is not None:
        reporter.unpacking(archive)
    safe_extract(zip_path, output)
    marker = output / MARKERS / f"{archive.filename}.done"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.with_suffix(".tmp").write_text(archive.url(base_url) + "\n")
    marker.with_suffix(".tmp").replace(marker)
    if not keep_zip:
        zip_path.unlink()


def _verify(zip_path: Path) -> None:
    """CRCs and member paths; a bad zip is deleted (never extracted, fetched afresh next time)."""
    try:
        verify_zip(zip_path)
        check_members(zip_path)
    except DownloadError:
        zip_path.unlink(missing_ok=True)
        raise


class _Cancelled(Exception):
    """Raised inside a worker's progress callback to stop its download (its .part stays for a resume)."""


def download_kitti(output: Path | str, splits: list[str] | None = None, *, splits_dir: Path | str | None = None,
                   base_url: str | None = None, splits_url: str | None = None, jobs: int = 4,
                   keep_zips: bool = False, reporter: Reporter | None = None) -> list[Archive]:
    """Get every archive the splits need (all official ones when ``splits`` is empty) into ``output``;
    returns the archives fetched this time.

    A failed archive does not stop the others; the failures are raised together at the end, so a rerun
    resumes exactly what is missing. Ctrl-C stops the downloads within a chunk, keeping the partial files.
    """
    output, base, reporter = Path(output).expanduser(), base_url or KITTI_RAW_URL, reporter or Reporter()
    archives = archives_for(splits, splits_dir, splits_url)
    todo = plan(archives, output, base, jobs)
    reporter.planned(todo, len(archives) - len(todo))
    check_free_space(output, space_needed(todo, output, jobs, keep_zips))
    stop, errors = threading.Event(), []

    def work(archive: Archive, size: int | None) -> None:
        report = reporter.started(archive, size)

        def progress(done: int, total: int | None) -> None:
            if stop.is_set():
                raise _Cancelled
            if report is not None:
                report(done, total)

        try:
            fetch_archive(archive, output, base, keep_zip=keep_zips, progress=progress, reporter=reporter)
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
