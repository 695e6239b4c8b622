"""Atomic file writes: outputs appear complete under their final name, or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from md2.errors import DataError

OUTPUT_SUFFIXES = ("_disp.jpeg", "_disp.jpg", "_disp.png", "_depth.png", "_disp.mp4")
"""Names md2 predict (and the reference) write beside their inputs: never taken as inputs (pictures to
predict, frames to train on) on a later run."""


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The temporary name keeps ``path``'s suffix (or ``suffix``) so writers that choose a format by extension
    (Pillow, numpy) still work. On any error the temporary file is removed and ``path`` is untouched; an
    ``OSError`` (disk full, permission) becomes a :class:`DataError` naming ``path``.
    """
    path = Path(path)
    keep = suffix if suffix is not None else path.suffix
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{keep}", dir=path.parent)
    except OSError as error:
        raise DataError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        give_new_file_mode(handle)
    finally:
        os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise DataError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def give_new_file_mode(handle: int) -> None:
    """Give the open file ``handle`` the permissions any new file gets here (0666 less the umask).

    tempfile.mkstemp creates files readable by their owner only; an output written under such a name and
    renamed into place should look as if it had been written in place. Where the file system has no such
    permissions (it refuses the change), the file is written as it is."""
    if hasattr(os, "fchmod"):
        with contextlib.suppress(OSError):
            os.fchmod(handle, 0o666 & ~umask())


def give_new_folder_mode(path: Path) -> None:
    """:func:`give_new_file_mode` for a folder (0777 less the umask), e.g. one made by tempfile.mkdtemp."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o777 & ~umask())


def umask() -> int:
    """The process's umask, read without changing it where the system shows it (Linux); elsewhere set and
    restored at once (new folders get 0777 less it, new files 0666 less it)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_folder(path: Path | str) -> Path:
    """Create the output folder ``path`` and its parents (nothing to do if it exists): the one place md2 makes
    output folders, so a file in the way, a read-only file system or a missing permission is a DataError
    naming ``path`` rather than a traceback."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"cannot create folder {path}: {_file_in_the_way(path)} is a file, not a folder") from None
    except OSError as error:
        raise DataError(f"cannot create folder {path}: {error.strerror or error}") from None
    return path


def check_folder_can_be_made(path: Path | str) -> None:
    """Raise the DataError :func:`make_folder` would, without creating anything: ``path`` is a folder already,
    or its nearest existing ancestor is a folder this process may write into (a pre-flight check before long
    work whose outputs appear only with the first result)."""
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise DataError(f"cannot create folder {path}: {existing} is a file, not a folder")
    writable = path if existing == path else existing
    if existing != path and not os.access(writable, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(writable) else "permission denied"
        raise DataError(f"cannot create folder {path}: {reason} ({writable})")


def _file_in_the_way(path: Path) -> Path:
    """The first of ``path`` and its ancestors that exists and is not a folder (``path`` itself if none)."""
    for candidate in (path, *path.parents):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return path


def _read_only(path: Path) -> bool:
    """Whether ``path`` lies on a file system mounted read-only (where the OS says; False elsewhere)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False
