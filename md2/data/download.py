"""Safe downloads: resumable HTTP with retries, zip verification, and extraction that cannot escape its folder.

Standard library only (urllib, zipfile). Everything here raises :class:`md2.errors.DownloadError` with the
URL or the file and what to do about it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from md2.errors import DownloadError

CHUNK = 1 << 20
ProgressCallback = Callable[[int, "int | None"], None]
"""Called with (bytes so far, total bytes or None) after every chunk. An exception it raises aborts the
download and keeps the ``.part`` file for a later resume (how callers cancel)."""

CONNECT_RETRIES = 2
"""Attempts after the first when the host cannot be reached at all (no network, refused, unknown host): a
user who is offline hears it within seconds. Failures once connected get the full ``retries``."""

RETRY_STATUS = (408, 429)
"""4xx answers that are worth retrying (request time-out, too many requests); every other 4xx is final."""

_NETWORK_ERRORS = (OSError, http.client.HTTPException)
"""Retried: URLError (no connection), resets, time-outs and truncated bodies are OSErrors; HTTPException
covers malformed answers and IncompleteRead."""


def _open(url: str, start: int, timeout: float) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "md2"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs from md2's tables


def _range_total(headers) -> int | None:
    """N of ``Content-Range: bytes a-b/N`` (or ``bytes */N``)."""
    match = re.search(r"/(\d+)\s*$", (headers or {}).get("Content-Range", "") or "")
    return int(match.group(1)) if match else None


def _resumed_from(response, start: int, part: Path) -> int:
    """Where the body starts in the file: ``start`` for a matching 206, 0 when the server ignored Range."""
    if response.status != 206:
        return 0
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    if not (match and int(match.group(1)) == start):
        part.unlink(missing_ok=True)
        raise ConnectionError(f"the server resumed at the wrong offset ({match and match.group(1)}, not {start})")
    return start


def _total_size(response, start: int) -> int | None:
    total = _range_total(response.headers)
    if total is not None:
        return total
    length = response.headers.get("Content-Length", "")
    return int(length) + start if length.isdigit() else None


@contextmanager
def _writing(part: Path):
    """Local file errors (disk full, permissions) are final, unlike network errors: no retry helps."""
    try:
        yield
    except OSError as error:
        raise DownloadError(f"cannot write {part}: {error.strerror or error}; free some space or choose another "
                            "folder") from None


def _append(response, part: Path, start: int, total: int | None, progress: ProgressCallback | None) -> int:
    """Copy the body to ``part`` (appending from ``start``); returns the file's size afterwards."""
    done = start
    with _writing(part):
        handle = open(part, "ab" if start else "wb")
    with handle:
        while chunk := response.read(CHUNK):  # network errors propagate to the retry loop
            with _writing(part):
                handle.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        with _writing(part):
            handle.flush()
            os.fsync(handle.fileno())
    return done


def _transfer(url: str, part: Path, timeout: float, progress: ProgressCallback | None) -> None:
    """One attempt: resume ``part`` with a Range request (or restart when the server ignores Range)."""
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing left after `start`: complete, or a stale larger file
            if _range_total(error.headers) == start:
                return
            part.unlink()
            raise ConnectionError("the partial file was larger than the remote one; restarting") from None
        raise
    with response:
        start = _resumed_from(response, start, part)
        total = _total_size(response, start)
        done = _append(response, part, start, total, progress)
    if total is not None and done < total:
        raise ConnectionError(f"connection closed after {done} of {total} bytes")


def _as_callback(progress) -> ProgressCallback | None:
    """Accept a callback or a ``(rich.progress.Progress, task_id)`` pair."""
    if progress is None or callable(progress):
        return progress
    bar, task = progress
    return lambda done, total: bar.update(task, completed=done, total=total)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def download_file(url: str, dest: Path | str, *, expected_size: int | None = None, sha256: str | None = None,
                  retries: int = 5, backoff: float = 0.5, progress=None, timeout: float = 30.0,
                  mirror_hint: str = "") -> Path:
    """Download ``url`` to ``dest`` safely; returns ``dest``.

    Bytes go to ``dest.part``, which a later call (this one's retries, or a rerun) resumes with an HTTP Range
    request; a server that ignores Range is handled by starting again. Connection errors, time-outs (seconds)
    and 5xx answers are retried with exponential back-off (``backoff`` * 2^k seconds); an attempt that made
    progress does not use up the budget. 404 and other 4xx answers are final. ``expected_size`` (bytes) and
    ``sha256`` (hex), when given, are checked before ``dest.part`` is renamed to ``dest``. ``progress`` is a
    :data:`ProgressCallback` or a ``(rich Progress, task id)`` pair. ``mirror_hint`` ends the error message
    when the host is unreachable (e.g. "or set MD2_ZOO_URL to a mirror").
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    callback, attempt = _as_callback(progress), 0
    while True:
        before = _size(part)
        try:
            _transfer(url, part, timeout, callback)
            break
        except urllib.error.HTTPError as error:
            if error.code not in RETRY_STATUS and error.code < 500:  # final; a partial file of it is stale
                part.unlink(missing_ok=True)
                raise DownloadError(_http_message(url, error.code, error.reason)) from None
            failure, connected = f"the server answered {error.code} {error.reason}", True
        except _NETWORK_ERRORS as error:
            failure = str(getattr(error, "reason", None) or error) or type(error).__name__
            connected = not isinstance(error, urllib.error.URLError)  # URLError: no connection at all
        attempt = 0 if _size(part) > before else attempt + 1
        if attempt > (retries if connected else min(retries, CONNECT_RETRIES)):
            raise DownloadError(_failure_message(url, failure, connected, _size(part), mirror_hint))
        time.sleep(backoff * 2 ** (attempt - 1))
    _verify(part, url, expected_size, sha256)
    os.replace(part, dest)
    return dest


def _http_message(url: str, code: int, reason: str) -> str:
    what = "not found" if code == 404 else f"refused ({code} {reason})"
    return f"{url}: {what}; check the name and the base URL (mirror), then run again"


def _failure_message(url: str, failure: str, connected: bool, kept: int, hint: str) -> str:
    host = urlsplit(url).netloc or url
    if not connected:
        text = f"could not reach {host}: {failure}; check your connection"
    else:
        text = f"downloading {url} failed: {failure}; run again later"
    if kept:
        text += f" (the {kept / 1e6:.1f} MB already received are kept and the download resumes)"
    return text + (f", {hint}" if hint else "")


def _verify(part: Path, url: str, expected_size: int | None, sha256: str | None) -> None:
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: received {size} bytes, expected {expected_size}; run again to download it again")
    if sha256 is not None:
        digest = file_sha256(part)
        if digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: sha256 {digest} does not match the expected {sha256}; the file or the "
                                "mirror is not the official one")


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError)
"""What a damaged zip raises: bad headers, bad deflate streams, truncation, encryption, unknown compression."""


def verify_zip(path: Path | str, progress: ProgressCallback | None = None) -> int:
    """Read every member and check its CRC; returns the number of members. A corrupt, truncated or
    unreadable archive raises DownloadError naming it (and the member). ``progress`` gets (uncompressed bytes
    read, their total) after every chunk."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total, done = sum(info.file_size for info in members), 0
            for info in members:
                with archive.open(info) as stream:  # zipfile checks the CRC when the last byte is read
                    try:
                        while chunk := stream.read(CHUNK):
                            done += len(chunk)
                            if progress is not None:
                                progress(done, total)
                    except zipfile.BadZipFile:
                        raise DownloadError(f"{path}: member {info.filename} is corrupt (CRC mismatch); delete it "
                                            "and download it again") from None
    except _ZIP_ERRORS as error:
        raise DownloadError(f"{path} is not a valid zip archive ({error}); delete it and download it again") from None
    return len(members)


def _member_path(info: zipfile.ZipInfo, zip_path: Path) -> tuple[str, ...]:
    """The member's path components, refusing absolute paths, drive letters, ``..`` and symbolic links."""
    name = info.filename
    parts = tuple(part for part in re.split(r"[\\/]+", name) if part not in ("", "."))
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DownloadError(f"{zip_path}: refusing member {name!r}, which would be written outside the target "
                            "folder; the archive is not a genuine one")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise DownloadError(f"{zip_path}: refusing symbolic link {name!r}; the archive is not a genuine one")
    return parts


def _check_members(archive: zipfile.ZipFile, zip_path: Path) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every member checked before anything is written. The check is lexical (no ``..``, not absolute), not
    ``resolve()``: a user's own symlinked sub-folders inside the target stay usable."""
    members = [(info, _member_path(info, zip_path)) for info in archive.infolist()]
    return [(info, parts) for info, parts in members if parts]


def check_members(zip_path: Path | str) -> None:
    """Raise DownloadError when :func:`safe_extract` would refuse the archive (a member leaving the target
    folder, an absolute path, a symbolic link), without extracting anything."""
    with _open_zip(Path(zip_path)) as archive:
        _check_members(archive, Path(zip_path))


def _open_zip(zip_path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except _ZIP_ERRORS as error:
        raise DownloadError(f"{zip_path} is not a valid zip archive ({error}); delete it and download it again") \
            from None


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, zip_path: Path) -> None:
    """Write one member to a hidden temporary name beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.md2-partial")
    try:
        with archive.open(info) as source, open(temporary, "wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK)  # the CRC is checked when the member's last byte is read
        os.replace(temporary, target)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        temporary.unlink(missing_ok=True)
        raise DownloadError(f"{zip_path}: member {info.filename} is corrupt ({error}); delete the zip and download "
                            "it again") from None
    except OSError as error:  # disk full, permissions: the archive is fine, the target is not
        temporary.unlink(missing_ok=True)
        raise DownloadError(f"cannot write {target}: {error.strerror or error}; free some space or choose "
                            "another folder") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


MemberMap = Callable[[tuple[str, ...]], "tuple[str, ...] | None"]
"""A member's path components -> where it goes below the target folder, or None to leave it in the archive."""


def _mapped(members, select: MemberMap | None, zip_path: Path) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The members to write and their target components (checked again: a map must not leave the folder)."""
    if select is None:
        return members
    chosen = []
    for info, parts in members:
        target = select(parts)
        if target is None:
            continue
        if not target or any(part in ("", ".", "..") or "/" in part or "\\" in part for part in target):
            raise DownloadError(f"{zip_path}: member {info.filename!r} maps to an unsafe path {target!r}")
        chosen.append((info, tuple(target)))
    return chosen


def safe_extract(zip_path: Path | str, dest: Path | str, *, select: MemberMap | None = None,
                 progress: ProgressCallback | None = None) -> list[Path]:
    """Extract a zip into ``dest``; returns the files written.

    Every member is checked before anything is written: absolute paths, drive letters, ``..`` components and
    symbolic links are refused (DownloadError naming the member). Each file is written under a hidden
    temporary name in its final folder and renamed when complete, so an interrupted extraction never leaves a
    file that looks complete (and the rename never crosses file systems, even when ``dest`` is a mount point).
    ``select`` places (or leaves out) each member by its path components, e.g. to drop a leading folder;
    ``progress`` gets (bytes written, bytes to write) after every file.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    written = []
    with _open_zip(zip_path) as archive:
        members = _mapped(_check_members(archive, zip_path), select, zip_path)
        total, done = sum(info.file_size for info, _ in members if not info.is_dir()), 0
        dest.mkdir(parents=True, exist_ok=True)
        for info, parts in members:
            target = dest.joinpath(*parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            _extract_member(archive, info, target, zip_path)
            written.append(target)
            done += info.file_size
            if progress is not None:
                progress(done, total)
    return written
