"""Zip archives checked before use: every member's CRC, member paths that cannot leave the target folder, and
extraction that never leaves a file looking complete when it is not.

Standard library only (zipfile). Everything here raises :class:`md2.errors.DownloadError` naming the archive
(and the member) and what to do about it.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from md2.data.download import CHUNK, ProgressCallback
from md2.errors import DownloadError

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
