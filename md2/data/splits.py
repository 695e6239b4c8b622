"""Split files: parsing, where split folders live, and the official lists fetched on first use.

A split is a folder NAME holding train_files.txt / val_files.txt / test_files.txt (and, after
``md2 export-gt``, gt_depths.npz). Commands look for NAME under ``--splits-dir DIR`` when given, else in md2's
cache ($MD2_HOME/splits, default ~/.cache/md2/splits), where the official lists of the reference repository are
fetched on demand and checked against the sha256 in ``md2/splits_manifest.json`` (the lists themselves belong
to the reference project and are not shipped with md2). ``$MD2_SPLITS_URL`` replaces the lists' base URL.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from md2.errors import DataError, UsageError

SIDES = {"l": "l", "r": "r", "2": "l", "3": "r"}
"""Side column -> normalised side: the reference writes l/r, some lists 2/3 (the camera number)."""

RAW_SPLITS = ("eigen", "eigen_benchmark", "eigen_zhou", "eigen_full", "benchmark")
"""Official splits made of KITTI raw drives (odom is the odometry dataset). Their union is exactly the 61
drives of the reference's kitti_archives_to_download.txt; so is the union of eigen_full (train + val, 33
drives) and eigen (test, 28 drives), the full Eigen split: every other raw split is a subset of it."""


@dataclass(frozen=True)
class SplitLine:
    """One line of a split file, as written: FOLDER FRAME SIDE (side normalised to 'l'/'r'; None for the
    benchmark test lines). Parsing returns one of the typed subclasses below."""

    folder: str
    frame: int
    side: str | None

    def __str__(self) -> str:
        return " ".join(str(part) for part in (self.folder, self.frame, self.side) if part is not None)


@dataclass(frozen=True)
class RawLine(SplitLine):
    """KITTI raw: ``2011_09_26/2011_09_26_drive_0002_sync 69 l``."""

    @property
    def date(self) -> str:
        return self.folder.split("/")[0]

    @property
    def drive(self) -> str:
        """The drive's archive name, e.g. ``2011_09_26_drive_0002``."""
        return self.folder.split("/")[-1].removesuffix("_sync")


@dataclass(frozen=True)
class OdomLine(SplitLine):
    """KITTI odometry: ``9 0 l`` (folder holds the sequence number as written)."""

    @property
    def seq(self) -> int:
        return int(self.folder)


@dataclass(frozen=True)
class BenchmarkTestLine(SplitLine):
    """Depth-benchmark test image: ``image 17`` (folder 'image', frame = the image's index, no side)."""


@lru_cache(maxsize=1)
def manifest() -> dict:
    """The manifest of official split files: base URL, commit, and per file its sha256 (and line count)."""
    return json.loads(resources.files("md2").joinpath("splits_manifest.json").read_text())


def cache_root() -> Path:
    """$MD2_HOME/splits (default ~/.cache/md2/splits)."""
    return Path(os.environ.get("MD2_HOME") or "~/.cache/md2").expanduser() / "splits"


def official_split_names() -> set[str]:
    return {name.split("/")[0] for name in manifest()["files"] if "/" in name}


def parse_line(text: str, path: Path | str = "<split>", number: int = 0) -> SplitLine:
    """Parse one split line into a RawLine, OdomLine or BenchmarkTestLine; a malformed one raises DataError
    naming the file and the line number."""
    parts = text.split()
    where = f"{path}, line {number}"
    if len(parts) == 2 and parts[0] == "image" and parts[1].isdigit():
        return BenchmarkTestLine("image", int(parts[1]), None)
    if len(parts) != 3:
        raise DataError(f"{where}: expected 'FOLDER FRAME SIDE' or 'image N', got {text.strip()!r}")
    folder, frame, side = parts
    if not frame.lstrip("-").isdigit():
        raise DataError(f"{where}: frame must be a number, got {frame!r}")
    if side not in SIDES:
        raise DataError(f"{where}: side must be l, r, 2 or 3, got {side!r}")
    kind = OdomLine if folder.isdigit() else RawLine
    return kind(folder, int(frame), SIDES[side])


def read_split_file(path: Path | str) -> list[SplitLine]:
    """All lines of a split file (blank lines skipped), typed."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"split file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read split file {path}: {error}") from None
    return [parse_line(line, path, number) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def resolve_split_dir(name: str, splits_dir: Path | str | None = None, *, fetch: bool = True) -> Path:
    """Folder of split ``name``.

    With ``splits_dir``: SPLITS_DIR/NAME, which must exist (DataError listing what is there). Without: md2's
    cache, where the official lists are fetched (and hash-checked) on first use when ``fetch``; a name that
    is neither official nor a folder in the cache raises UsageError.
    """
    if splits_dir is not None:
        root = Path(splits_dir).expanduser()
        folder = root / name
        if not folder.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise DataError(f"no split {name!r} in {root} (found: {', '.join(present) or 'nothing'})")
        return folder
    folder = cache_root() / name
    if name in official_split_names():
        if fetch:
            fetch_official([name])
        return folder
    if folder.is_dir():
        return folder
    raise UsageError(f"unknown split {name!r}: official splits are {', '.join(sorted(official_split_names()))}; "
                     f"a split of your own is a folder in --splits-dir (or in {cache_root()})")


def split_file(name: str, which: str = "train", splits_dir: Path | str | None = None) -> Path:
    """Path of NAME/{which}_files.txt for which in train, val, test; other values name the file itself
    (``test_files_09`` or ``test_files_09.txt`` for the odometry tests)."""
    filename = f"{which}_files.txt" if which in ("train", "val", "test") else which
    path = resolve_split_dir(name, splits_dir) / (filename if filename.endswith(".txt") else f"{filename}.txt")
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    return path


def splits_base_url(base_url: str | None = None) -> str:
    """Where the official lists are downloaded from: ``base_url``, $MD2_SPLITS_URL, or the manifest's."""
    return (base_url or os.environ.get("MD2_SPLITS_URL") or manifest()["base_url"]).rstrip("/") + "/"


def fetch_official(names: list[str] | None = None, base_url: str | None = None) -> list[Path]:
    """Make sure the official files of the splits ``names`` (or files, e.g. "kitti_archives_to_download.txt";
    all when None) are in the cache, downloading missing or altered ones and checking their sha256. Returns
    their paths."""
    from md2.data.download import download_file, file_sha256

    files = manifest()["files"]
    wanted = [f for f in files if names is None or f.split("/")[0] in names or f in names]
    paths = []
    for relative in wanted:
        path = cache_root() / relative
        expected = files[relative]["sha256"]
        if not (path.is_file() and file_sha256(path) == expected):
            path.parent.mkdir(parents=True, exist_ok=True)
            # A private temporary name: several processes (DDP ranks) may fetch the same list at once.
            temporary = Path(tempfile.mkdtemp(prefix=".fetch-", dir=path.parent)) / path.name
            try:
                download_file(splits_base_url(base_url) + relative, temporary, sha256=expected, retries=2,
                              mirror_hint="or set MD2_SPLITS_URL to a mirror; offline, copy the reference's "
                                          "splits/ folder and pass --splits-dir")
                os.replace(temporary, path)
            finally:
                shutil.rmtree(temporary.parent, ignore_errors=True)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class SplitNeeds:
    """What the lines of some splits read: KITTI raw drives ("2011_09_26_drive_0001", sorted), odometry
    sequences (``9 0 l`` lines) and the depth benchmark's test images (``image 17`` lines)."""

    drives: tuple[str, ...]
    odometry: bool
    benchmark_images: bool


def split_needs(names: list[str], splits_dir: Path | str | None = None) -> SplitNeeds:
    """The data the splits' *_files*.txt name (see :class:`SplitNeeds`)."""
    drives: set[str] = set()
    odometry = benchmark_images = False
    for name in names:
        folder = resolve_split_dir(name, splits_dir)
        for path in sorted(folder.glob("*_files*.txt")):
            lines = read_split_file(path)
            drives.update(line.drive for line in lines if isinstance(line, RawLine) and "/" in line.folder)
            odometry = odometry or any(isinstance(line, OdomLine) for line in lines)
            benchmark_images = benchmark_images or any(isinstance(line, BenchmarkTestLine) for line in lines)
    return SplitNeeds(tuple(sorted(drives)), odometry, benchmark_images)


def drives_for_splits(names: list[str], splits_dir: Path | str | None = None) -> list[str]:
    """Sorted KITTI raw drives ("2011_09_26_drive_0001") named by the splits' *_files*.txt. Each drive needs
    its date's calibration archive too (see :func:`md2.data.kitti_download.archives_for`)."""
    drives = split_needs(names, splits_dir).drives
    if not drives:
        raise DataError(f"splits {', '.join(names)} name no KITTI raw drive")
    return list(drives)


def calibration_dates(drives: list[str]) -> list[str]:
    """Sorted dates ("2011_09_26") whose calibration archives the drives need."""
    return sorted({drive[:10] for drive in drives})
