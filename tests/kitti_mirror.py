"""A local copy of KITTI's download server for tests: zips built from md2's synthetic dataset with the real
archives' names, URL paths and inner paths.

``kitti_mirror(root)`` maps URL paths (as under https://s3.eu-central-1.amazonaws.com/avg-kitti) to zip bytes:

* /raw_data/DATE_calib.zip (DATE/calib_*.txt) and /raw_data/DRIVE/DRIVE_sync.zip (DATE/DRIVE_sync/..., without the
  proj_depth/ folder, which real raw drives do not have);
* /data_depth_annotated.zip: the first drive's maps as train/DRIVE_sync/proj_depth/groundtruth/image_0{2,3}/...,
  the others' under val/, and one drive the dataset does not have (:data:`UNKNOWN_DRIVE`), as in the real archive
  that covers more drives than a run asks for;
* /data_depth_selection.zip: depth_selection/test_depth_prediction_anonymous/{image,intrinsics}/ (the first
  drive's left images as the benchmark's test images) and depth_selection/val_selection_cropped/ (never unpacked);
* /data_odometry_color.zip, /data_odometry_calib.zip, /data_odometry_poses.zip: dataset/sequences/NN/{image_2,
  image_3}, dataset/sequences/NN/{calib.txt,times.txt}, dataset/poses/NN.txt.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

UNKNOWN_DRIVE = "2011_09_28_drive_0099"
"""A drive in the annotations archive that the synthetic dataset and its splits do not have."""


def zip_members(members: dict[str, bytes]) -> bytes:
    """Zip bytes holding ``members`` (inner path -> bytes), stored (KITTI's PNGs do not compress)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _files(folder: Path, under: str, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file below ``folder`` as ``under/relative path`` -> bytes, leaving out sub-folders named in ``skip``."""
    return {f"{under}/{path.relative_to(folder).as_posix()}": path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and not set(path.relative_to(folder).parts) & set(skip)}


def raw_archives(root: Path, skip: tuple[str, ...] = ("proj_depth",)) -> dict[str, bytes]:
    """The raw_data/ zips of every synthetic drive (without the folders in ``skip``) and their calibration."""
    mirror = {}
    for date in sorted(path for path in root.glob("2011_*") if path.is_dir()):
        calib = {f"{date.name}/{path.name}": path.read_bytes() for path in sorted(date.glob("calib_*.txt"))}
        mirror[f"/raw_data/{date.name}_calib.zip"] = zip_members(calib)
        for drive in sorted(date.glob("*_sync")):
            name = drive.name.removesuffix("_sync")
            mirror[f"/raw_data/{name}/{drive.name}.zip"] = zip_members(
                _files(drive, f"{date.name}/{drive.name}", skip))
    return mirror


def benchmark_archives(root: Path) -> dict[str, bytes]:
    """data_depth_annotated.zip and data_depth_selection.zip of the synthetic drives (see the module docstring)."""
    drives = sorted(root.glob("2011_*/*_sync"))
    annotated: dict[str, bytes] = {}
    for index, drive in enumerate(drives):
        annotated.update(_files(drive / "proj_depth", f"{'train' if index == 0 else 'val'}/{drive.name}/proj_depth"))
    some_map = next(iter(annotated.values()))
    annotated[f"train/{UNKNOWN_DRIVE}_sync/proj_depth/groundtruth/image_02/0000000005.png"] = some_map
    test = "depth_selection/test_depth_prediction_anonymous"
    images = sorted((drives[0] / "image_02" / "data").glob("*.png"))
    selection = {f"{test}/image/{index:010d}.png": path.read_bytes() for index, path in enumerate(images)}
    selection.update({f"{test}/intrinsics/{index:010d}.txt": b"1 0 0 0 1 0 0 0 1\n" for index in range(len(images))})
    selection["depth_selection/val_selection_cropped/image/a.png"] = images[0].read_bytes()
    return {"/data_depth_annotated.zip": zip_members(annotated), "/data_depth_selection.zip": zip_members(selection)}


def odometry_archives(root: Path) -> dict[str, bytes]:
    """data_odometry_{color,calib,poses}.zip of the synthetic odometry sequences."""
    color, calib = {}, {}
    for sequence in sorted((root / "sequences").iterdir()):
        for camera in ("image_2", "image_3"):
            color.update(_files(sequence / camera, f"dataset/sequences/{sequence.name}/{camera}"))
        for name in ("calib.txt", "times.txt"):
            calib[f"dataset/sequences/{sequence.name}/{name}"] = (sequence / name).read_bytes()
    return {"/data_odometry_color.zip": zip_members(color), "/data_odometry_calib.zip": zip_members(calib),
            "/data_odometry_poses.zip": zip_members(_files(root / "poses", "dataset/poses"))}


def kitti_mirror(root: Path) -> dict[str, bytes]:
    """Every archive above, for a synthetic dataset written with depth_benchmark=True and odometry=True."""
    return {**raw_archives(root), **benchmark_archives(root), **odometry_archives(root)}
