"""KITTI's archives as ``md2 download-kitti`` knows them: where each is served, where its members land, and the
marker that says it is done.

* KITTI raw (:class:`Archive`): ``raw_data/DRIVE/DRIVE_sync.zip`` and ``raw_data/DATE_calib.zip``, whose members
  (``DATE/DRIVE_sync/...``, ``DATE/calib_*.txt``) land as they are.
* The depth benchmark's annotations (:class:`DepthAnnotations`, ``data_depth_annotated.zip``, about 14 GB): members
  ``train/DRIVE_sync/proj_depth/groundtruth/image_0{2,3}/FRAME.png`` and ``val/...``; only the drives asked for are
  unpacked, into the raw drives' folders (``DATE/DRIVE_sync/proj_depth/...``), where the reference reads them.
* The depth benchmark's test images (:class:`DepthSelection`, ``data_depth_selection.zip``): only
  ``depth_selection/test_depth_prediction_anonymous/`` (what ``--eval-split benchmark`` reads) is unpacked.
* The odometry dataset (:class:`OdometryArchive`, ``data_odometry_{color,calib,poses}.zip``): members
  ``dataset/sequences/NN/...`` and ``dataset/poses/NN.txt`` land without their ``dataset/`` folder, as
  ``sequences/NN/image_2/...`` and ``poses/NN.txt``, beside the raw drives.

Every archive class is a frozen dataclass (hashable: progress reporters key on them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from md2.errors import DataError, UsageError

KITTI_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti"
KITTI_RAW_URL = f"{KITTI_URL}/raw_data"
MARKERS = ".md2-extracted"
"""OUTPUT/.md2-extracted/<zip name>.done is written once an archive is completely extracted."""

ODOMETRY_PARTS = ("color", "calib", "poses")
"""The odometry archives md2 reads: the colour images (image_2, image_3; about 65 GB), the calibration and
times (small), and the ground-truth poses of sequences 00-10 (small)."""


@dataclass(frozen=True)
class Mirror:
    """Where archives are downloaded from: ``raw`` is KITTI's raw_data folder (DRIVE/DRIVE_sync.zip and
    DATE_calib.zip), ``benchmarks`` the folder holding data_depth_*.zip and data_odometry_*.zip."""

    raw: str = KITTI_RAW_URL
    benchmarks: str = KITTI_URL

    @classmethod
    def of(cls, base_url: str | None = None, archives_url: str | None = None) -> "Mirror":
        """``--base-url`` and ``--archives-url``; without the latter, the folder above a base URL ending in
        ``raw_data`` (a mirror of KITTI's whole server), else KITTI's own server."""
        raw = (base_url or KITTI_RAW_URL).rstrip("/")
        if archives_url:
            benchmarks = archives_url
        elif base_url and raw.endswith("/raw_data"):
            benchmarks = raw.removesuffix("/raw_data")
        else:
            benchmarks = KITTI_URL
        return cls(raw, benchmarks.rstrip("/"))


OFFICIAL = Mirror()


class KittiArchive(ABC):
    """What every archive tells the download machinery (see the subclasses)."""

    filename: str

    def url(self, mirror: Mirror = OFFICIAL) -> str:
        return f"{mirror.benchmarks.rstrip('/')}/{self.filename}"

    def target(self, parts: tuple[str, ...]) -> tuple[str, ...] | None:
        """Where a member (its path components) goes below the output folder; None leaves it in the zip."""
        return parts

    @abstractmethod
    def unpacked(self, output: Path) -> Path:
        """A path that exists once the archive is extracted into ``output``."""

    def remaining(self, output: Path) -> "KittiArchive | None":
        """What is still to do in ``output``: this archive, a smaller selection of it, or None."""
        done = (output / MARKERS / f"{self.filename}.done").is_file() and self.unpacked(output).exists()
        return None if done else self

    def mark(self, output: Path, url: str, written: list[Path]) -> str | None:
        """Record the extraction as complete; returns a note for the user, or None."""
        _write_marker(output / MARKERS / f"{self.filename}.done", url)
        return None


@dataclass(frozen=True)
class Archive(KittiArchive):
    """One KITTI raw zip: a drive ("2011_09_26_drive_0001") or a day's calibration ("2011_09_26")."""

    name: str

    @property
    def is_calibration(self) -> bool:
        return "_drive_" not in self.name

    @property
    def filename(self) -> str:
        return f"{self.name}_calib.zip" if self.is_calibration else f"{self.name}_sync.zip"

    def url(self, mirror: Mirror = OFFICIAL) -> str:
        base = mirror.raw.rstrip("/")
        return f"{base}/{self.filename}" if self.is_calibration else f"{base}/{self.name}/{self.filename}"

    def unpacked(self, output: Path) -> Path:
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


@dataclass(frozen=True)
class DepthAnnotations(KittiArchive):
    """The depth benchmark's annotated depth maps of ``drives`` ("2011_09_26_drive_0002", ...), unpacked into
    OUTPUT/DATE/DRIVE_sync/proj_depth/groundtruth/image_0{2,3}/ (uint16 PNG, depth x 256).

    The archive holds every annotated drive (in ``train/`` or ``val/``); the others stay in the zip. Each drive
    gets its own marker, so a later run for more drives unpacks only those."""

    drives: tuple[str, ...]
    filename = "data_depth_annotated.zip"

    def target(self, parts: tuple[str, ...]) -> tuple[str, ...] | None:
        if len(parts) < 3 or parts[0] not in ("train", "val") or parts[2] != "proj_depth":
            return None
        drive = parts[1].removesuffix("_sync")
        return (drive[:10], parts[1], *parts[2:]) if drive in self.drives else None

    def unpacked(self, output: Path) -> Path:
        return output / self.drives[0][:10] / f"{self.drives[0]}_sync" / "proj_depth"

    def _marker(self, output: Path, drive: str, found: bool) -> Path:
        return output / MARKERS / "data_depth_annotated" / f"{drive}.{'done' if found else 'none'}"

    def remaining(self, output: Path) -> "DepthAnnotations | None":
        def done(drive: str) -> bool:
            maps = output / drive[:10] / f"{drive}_sync" / "proj_depth"
            return (self._marker(output, drive, True).is_file() and maps.is_dir()) or \
                self._marker(output, drive, False).is_file()

        todo = tuple(drive for drive in self.drives if not done(drive))
        return DepthAnnotations(todo) if todo else None

    def mark(self, output: Path, url: str, written: list[Path]) -> str | None:
        counts = Counter(path.relative_to(output).parts[1].removesuffix("_sync") for path in written)
        for drive in self.drives:
            _write_marker(self._marker(output, drive, counts[drive] > 0), f"{url}\n{counts[drive]} maps")
        missing = [drive for drive in self.drives if not counts[drive]]
        if not missing:
            return None
        return (f"{self.filename} has no depth maps for {len(missing)} of the {len(self.drives)} drives asked for "
                f"(first: {missing[0]})")


@dataclass(frozen=True)
class DepthSelection(KittiArchive):
    """The depth benchmark's 500 test images (``--eval-split benchmark``), unpacked as
    OUTPUT/depth_selection/test_depth_prediction_anonymous/image/NNNNNNNNNN.png (the validation and depth
    completion selections of the archive stay in the zip)."""

    filename = "data_depth_selection.zip"
    FOLDER = ("depth_selection", "test_depth_prediction_anonymous")

    def target(self, parts: tuple[str, ...]) -> tuple[str, ...] | None:
        return parts if parts[:2] == self.FOLDER and len(parts) > 2 else None

    def unpacked(self, output: Path) -> Path:
        return output.joinpath(*self.FOLDER, "image")


@dataclass(frozen=True)
class OdometryArchive(KittiArchive):
    """One archive of KITTI odometry ("color", "calib" or "poses"), unpacked without its ``dataset/`` folder:
    OUTPUT/sequences/NN/{image_2,image_3,calib.txt,times.txt} and OUTPUT/poses/NN.txt."""

    part: str

    def __post_init__(self) -> None:
        if self.part not in ODOMETRY_PARTS:
            raise UsageError(f"--odometry-parts takes {', '.join(ODOMETRY_PARTS)}, got {self.part!r}")

    @property
    def filename(self) -> str:
        return f"data_odometry_{self.part}.zip"

    def target(self, parts: tuple[str, ...]) -> tuple[str, ...] | None:
        inner = parts[1:] if parts[:1] == ("dataset",) else parts
        return inner or None

    def unpacked(self, output: Path) -> Path:
        return output / ("poses" if self.part == "poses" else "sequences")


def _write_marker(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text + "\n")
    temporary.replace(path)
