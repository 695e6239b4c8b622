"""Getting KITTI raw: the archives a split needs, downloaded in parallel, verified, unpacked, resumable.

Each archive goes through: download (resumed with HTTP Range after an interruption) -> CRC check of every
member -> extraction with path checks -> a marker file -> the zip deleted (unless kept). A rerun skips the
archives whose marker exists and resumes the rest.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from md2.data.download import download_file, safe_extract, verify_zip
from md2.data.splits import RAW_SPLITS, drives_for_splits, fetch_official
from md2.errors import DataError, DownloadError

KITTI_RAW_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/raw_data"
MARKERS = ".md2-extracted"


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

    def url(self, base_url: str) -> str:
        base = base_url.rstrip("/")
        return f"{base}/{self.filename}" if self.is_calibration else f"{base}/{self.name}/{self.filename}"


def archives_for(splits: list[str] | None, splits_dir: Path | str | None = None) -> list[Archive]:
    """Calibration zips first, then drives: for the named splits, or every official raw split."""
    drives = drives_for_splits(list(splits) if splits else list(RAW_SPLITS), splits_dir)
    dates = sorted({drive[:10] for drive in drives})
    return [Archive(date) for date in dates] + [Archive(drive) for drive in drives]


def remote_size(url: str, timeout: float = 30.0) -> int | None:
    """Content-Length from a HEAD request; None when the server does not say or does not answer (the
    download itself then reports the problem, with retries)."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "md2"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None
    except (urllib.error.URLError, OSError):
        return None


def is_done(output: Path, archive: Archive) -> bool:
    return (output / MARKERS / f"{archive.filename}.done").is_file()


def plan(archives: list[Archive], output: Path, base_url: str, jobs: int = 4) -> list[tuple[Archive, int | None]]:
    """The archives still to get, with their sizes (HEAD requests in parallel)."""
    todo = [archive for archive in archives if not is_done(output, archive)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        sizes = list(pool.map(lambda archive: remote_size(archive.url(base_url)), todo))
    return list(zip(todo, sizes))


def check_free_space(output: Path, needed: int) -> None:
    """Refuse to start when the disk cannot hold the zips and their contents (about twice the zips)."""
    output.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(output).free
    if free < needed:
        raise DataError(f"{output} has {free / 1e9:.1f} GB free but the download needs about {needed / 1e9:.1f} GB "
                        "(zips plus their contents); free some space or choose another --output")


def fetch_archive(archive: Archive, output: Path, base_url: str, *, keep_zip: bool = False,
                  progress: Callable[[int, int | None], None] | None = None) -> None:
    """Download, verify, extract and mark one archive."""
    zip_path = output / archive.filename
    download_file(archive.url(base_url), zip_path, progress=progress)
    try:
        verify_zip(zip_path)
    except DownloadError:
        zip_path.unlink(missing_ok=True)  # a corrupt zip is never extracted, and is fetched again next time
        raise
    safe_extract(zip_path, output)
    marker = output / MARKERS / f"{archive.filename}.done"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(archive.url(base_url) + "\n")
    if not keep_zip:
        zip_path.unlink()


def download_kitti(output: Path | str, splits: list[str] | None = None, *, splits_dir: Path | str | None = None,
                   base_url: str | None = None, jobs: int = 4, keep_zips: bool = False,
                   on_plan: Callable[[list[tuple[Archive, int | None]]], None] | None = None,
                   progress_for: Callable[[Archive, int | None], Callable[[int, int | None], None]] | None = None,
                   on_done: Callable[[Archive], None] | None = None) -> list[Archive]:
    """Get every archive the splits need into ``output``; returns the archives fetched this time.

    Failures of single archives do not stop the others; the first failure is raised at the end (after the
    others finished), so a rerun resumes exactly what is missing.
    """
    output = Path(output).expanduser()
    base = base_url or KITTI_RAW_URL
    todo = plan(archives_for(splits, splits_dir), output, base, jobs)
    if on_plan is not None:
        on_plan(todo)
    check_free_space(output, 2 * sum(size or 0 for _, size in todo))
    errors: list[Exception] = []

    def work(item: tuple[Archive, int | None]) -> None:
        archive, size = item
        try:
            fetch_archive(archive, output, base, keep_zip=keep_zips,
                          progress=progress_for(archive, size) if progress_for else None)
            if on_done is not None:
                on_done(archive)
        except DownloadError as error:
            errors.append(error)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(work, todo))
    if errors:
        raise DownloadError(f"{len(errors)} of {len(todo)} archives failed (run again to resume); first: {errors[0]}")
    return [archive for archive, _ in todo]


def fetch_split_lists(base_url: str | None = None) -> list[Path]:
    """Every official split list into md2's cache (``--splits-only``)."""
    return fetch_official(None, base_url)
