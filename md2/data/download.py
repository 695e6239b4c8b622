"""Safe downloads: resumable HTTP with retries, zip verification and extraction that cannot escape its folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from md2.errors import DownloadError

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None)."""


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "md2"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs from md2's tables


def _total_size(response, start: int) -> int | None:
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) + (start if response.status == 206 else 0) if length and length.isdigit() else None


def _transfer(url: str, part: Path, timeout: float, progress: Progress | None) -> int | None:
    """One attempt: append to ``part`` from where it ends (Range), or restart when the server ignores Range."""
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # the partial file is already complete (or bigger than the file)
            return start
        raise
    with response:
        if start and response.status != 206:
            start = 0  # Range ignored: the body is the whole file
        total = _total_size(response, start)
        with open(part, "ab" if start else "wb") as handle:
            done = start
            while chunk := response.read(CHUNK):
                handle.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            handle.flush()
            os.fsync(handle.fileno())
    if total is not None and done < total:
        raise ConnectionError(f"connection closed after {done} of {total} bytes")
    return total


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def download_file(url: str, dest: Path | str, *, expected_size: int | None = None, sha256: str | None = None,
                  retries: int = 5, backoff: float = 0.5, timeout: float = 30.0,
                  progress: Progress | None = None) -> Path:
    """Download ``url`` to ``dest`` safely.

    The data goes to ``dest.part`` first, which a later call resumes with an HTTP Range request. Connection
    errors, time-outs and 5xx answers are retried ``retries`` times with exponential back-off; 4xx answers
    are final. The size and sha256, when given, are checked before ``dest.part`` is renamed to ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout, progress)
            break
        except urllib.error.HTTPError as error:
            if error.code < 500:  # 404, 403...: retrying will not help, and the partial file is stale
                part.unlink(missing_ok=True)
            if error.code < 500 or attempt == retries:
                raise DownloadError(f"{url}: the server answered {error.code} {error.reason}") from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, OSError) as error:
            if attempt == retries:
                reason = getattr(error, "reason", error)
                raise DownloadError(
                    f"could not download {url} from {_host(url)} ({reason}); check your connection and run "
                    "the command again to resume, or use a mirror") from None
        time.sleep(backoff * 2 ** attempt)
    _verify(part, url, expected_size, sha256)
    os.replace(part, dest)
    return dest


def _verify(part: Path, url: str, expected_size: int | None, sha256: str | None) -> None:
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: got {size} bytes, expected {expected_size}; run again to retry")
    if sha256 is not None:
        digest = file_sha256(part)
        if digest != sha256:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: sha256 {digest} does not match the expected {sha256}")


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def verify_zip(path: Path | str) -> None:
    """Check every member's CRC; a corrupt or truncated archive raises DownloadError naming it."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DownloadError(f"{path} is not a valid zip archive ({error}); delete it and download again") from None
    if bad is not None:
        raise DownloadError(f"{path}: member {bad} is corrupt (CRC mismatch); delete it and download again")


def _safe_member(name: str, archive: Path) -> PurePosixPath:
    member = PurePosixPath(name)
    if member.is_absolute() or ".." in member.parts or name.startswith(("/", "\\")) or ":" in member.parts[0]:
        raise DownloadError(f"{archive}: refusing member {name!r}, which would be written outside the target folder")
    return member


def safe_extract(zip_path: Path | str, dest: Path | str) -> list[Path]:
    """Extract a zip into ``dest``, refusing absolute paths, ``..`` and symbolic links.

    Members are checked before anything is written, then extracted into a temporary folder beside ``dest``
    and moved into place, so an interrupted extraction never leaves a file that looks complete.
    Returns the extracted files.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        for info in members:
            _safe_member(info.filename, zip_path)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise DownloadError(f"{zip_path}: refusing symbolic link {info.filename!r}")
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(os.path.join(dest, f".extracting-{zip_path.name}"))
        shutil.rmtree(staging, ignore_errors=True)
        try:
            archive.extractall(staging)
            written = []
            for info in members:
                if info.is_dir():
                    continue
                target = dest / _safe_member(info.filename, zip_path)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / info.filename, target)
                written.append(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return written
