"""Safe downloads: resumable HTTP with retries, sizes and hashes checked before the file gets its name.

Standard library only (urllib). Everything here raises :class:`md2.errors.DownloadError` with the URL or the
file and what to do about it. Zips are checked and unpacked by :mod:`md2.data.unzip`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from md2.errors import DownloadError
from md2.files import make_folder

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


URL_SCHEMES = ("http", "https", "ftp", "file")
"""What urllib can download (a mirror may be a local folder as file:///...)."""


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be downloaded from (no scheme, an unknown one, no host), or None when it can."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in URL_SCHEMES:
        return f"{url!r} is not a URL md2 can download from (it must start with http://, https://, ftp:// or file://)"
    if parts.scheme.lower() != "file" and not parts.netloc:
        return f"{url!r} has no host name"
    return None


def check_url(url: str) -> str:
    """``url``, or a DownloadError saying why it cannot be downloaded from (urllib's ValueError otherwise)."""
    problem = url_problem(url)
    if problem is not None:
        raise DownloadError(problem)
    return url


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
    check_url(url)
    dest = Path(dest)
    make_folder(dest.parent)
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
