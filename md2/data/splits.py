"""Split files: parsing, where split folders live, and the official lists fetched on first use.

A split is a folder NAME holding train_files.txt / val_files.txt / test_files.txt (and, after
``md2 export-gt``, gt_depths.npz). Commands look for NAME under ``--splits-dir DIR`` when given, else in md2's
cache ($MD2_HOME/splits, default ~/.cache/md2/splits), where the official lists of the reference repository are
fetched on demand and checked against the hashes in ``md2/splits_manifest.json`` (the lists themselves belong
to the reference project and are not shipped with md2).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from md2.errors import DataError, UsageError

SIDES = {"l": "l", "r": "r", "2": "l", "3": "r"}
RAW_SPLITS = ("eigen", "eigen_benchmark", "eigen_zhou", "eigen_full", "benchmark")
"""Official splits made of KITTI raw drives; their union is the reference's list of 61 drives."""


@dataclass(frozen=True)
class SplitLine:
    """One line of a split file: ``FOLDER FRAME SIDE`` (raw: folder "2011_09_26/..._sync"; odometry: the
    sequence number) or ``image N`` (benchmark test files, side None)."""

    folder: str
    frame: int
    side: str | None

    def __str__(self) -> str:
        return " ".join(str(part) for part in (self.folder, self.frame, self.side) if part is not None)


@lru_cache(maxsize=1)
def manifest() -> dict:
    """The manifest of official split files: base URL, commit, and per file its sha256 (and line count)."""
    return json.loads((Path(__file__).resolve().parents[1] / "splits_manifest.json").read_text())


def cache_root() -> Path:
    return Path(os.environ.get("MD2_HOME", "~/.cache/md2")).expanduser() / "splits"


def official_split_names() -> set[str]:
    return {name.split("/")[0] for name in manifest()["files"] if "/" in name}


def parse_line(text: str, path: Path | str = "<split>", number: int = 0) -> SplitLine:
    """Parse one split line; a malformed one raises DataError naming the file and line number."""
    parts = text.split()
    where = f"{path}, line {number}"
    if len(parts) == 2 and parts[0] == "image" and parts[1].isdigit():
        return SplitLine("image", int(parts[1]), None)
    if len(parts) != 3:
        raise DataError(f"{where}: expected 'FOLDER FRAME SIDE', got {text.strip()!r}")
    folder, frame, side = parts
    if not frame.lstrip("-").isdigit():
        raise DataError(f"{where}: frame must be a number, got {frame!r}")
    if side not in SIDES:
        raise DataError(f"{where}: side must be l, r, 2 or 3, got {side!r}")
    return SplitLine(folder, int(frame), SIDES[side])


def read_split_file(path: Path | str) -> list[SplitLine]:
    """All lines of a split file (blank lines skipped)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"split file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read split file {path}: {error}") from None
    return [parse_line(line, path, number) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def resolve_split_dir(name: str, splits_dir: Path | str | None = None, *, fetch: bool = True) -> Path:
    """Folder of split ``name``: SPLITS_DIR/NAME when ``splits_dir`` is given, else md2's cache, where the
    official lists are fetched (and checked) on first use."""
    if splits_dir is not None:
        folder = Path(splits_dir).expanduser() / name
        if not folder.is_dir():
            present = sorted(p.name for p in Path(splits_dir).expanduser().iterdir() if p.is_dir()) \
                if Path(splits_dir).expanduser().is_dir() else []
            raise DataError(f"no split {name!r} in {splits_dir} (found: {', '.join(present) or 'nothing'})")
        return folder
    folder = cache_root() / name
    if name in official_split_names():
        if fetch:
            fetch_official([name])
        return folder
    if folder.is_dir():
        return folder
    raise UsageError(f"unknown split {name!r}: official splits are {', '.join(sorted(official_split_names()))}; "
                     "a split of your own is a folder given with --splits-dir")


def split_file(name: str, which: str = "train", splits_dir: Path | str | None = None) -> Path:
    """Path of NAME/{which}_files.txt (which: train, val, test, or e.g. test_files_09 for odometry)."""
    filename = which if which.endswith(".txt") else (which if which.startswith("test_files_") else f"{which}_files")
    path = resolve_split_dir(name, splits_dir) / (filename if filename.endswith(".txt") else f"{filename}.txt")
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    return path


def fetch_official(names: list[str] | None = None, base_url: str | None = None, progress=None) -> list[Path]:
    """Make sure the official files of ``names`` (all when None) are in the cache, downloading and
    hash-checking missing ones. Returns the files' paths."""
    from md2.data.download import download_file, file_sha256

    files = manifest()["files"]
    base = (base_url or os.environ.get("MD2_SPLITS_URL") or manifest()["base_url"]).rstrip("/") + "/"
    wanted = [f for f in files if names is None or f.split("/")[0] in names or f in names]
    paths = []
    for relative in wanted:
        path = cache_root() / relative
        expected = files[relative]["sha256"]
        if not (path.is_file() and file_sha256(path) == expected):
            try:
                download_file(base + relative, path, sha256=expected, retries=2)
            except Exception as error:
                raise type(error)(f"{error}. md2 fetches the official split lists on first use; offline, copy "
                                  f"the reference's splits/ folder and pass --splits-dir") from None
        paths.append(path)
    return paths


def drives_for_splits(names: list[str], splits_dir: Path | str | None = None) -> list[str]:
    """Sorted raw drives ("2011_09_26_drive_0001") used by the given splits' train/val/test files."""
    drives: set[str] = set()
    for name in names:
        folder = resolve_split_dir(name, splits_dir)
        for path in sorted(folder.glob("*_files*.txt")):
            for line in read_split_file(path):
                if "/" in line.folder:
                    drives.add(line.folder.split("/")[1].removesuffix("_sync"))
    if not drives:
        raise DataError(f"splits {', '.join(names)} name no KITTI raw drive")
    return sorted(drives)
