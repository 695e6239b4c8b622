"""KITTI readers: raw drives, odometry sequences, and raw drives with the depth benchmark's ground truth.

Layouts (DATA is ``data_path``; FRAME zero-padded; EXT ".jpg" or ".png"):

* raw (``kitti``): DATA/2011_09_26/2011_09_26_drive_0001_sync/image_0{2,3}/data/FRAME.EXT (10 digits);
  calibration in DATA/2011_09_26/; lidar in DATA/<drive>/velodyne_points/data/FRAME.bin.
* odometry (``kitti_odom``): DATA/sequences/09/image_{2,3}/FRAME.EXT (6 digits); no ground truth.
* depth benchmark (``kitti_depth``): images as raw; ground truth
  DATA/<drive>/proj_depth/groundtruth/image_0{2,3}/FRAME.png (uint16, depth = value / 256).

Training: ``KITTIRawDataset(data_path, lines, 192, 640, (0, -1, 1), is_train=True)``. Evaluation (frame 0 at the
model's size, no augmentation, no ground truth from the reader):
``KITTIRawDataset(data_path, lines, h, w, (0,), num_scales=1, load_depth=False)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from md2.data.calib import generate_depth_map
from md2.data.datasets.base import CAMERAS, FrameDataset
from md2.data.datasets.refs import FrameRef
from md2.data.sample import FrameId
from md2.errors import DataError, UsageError
from md2.images import UNREADABLE_IMAGE

KITTI_K = np.array([[0.58, 0, 0.5, 0],
                    [0, 1.92, 0.5, 0],
                    [0, 0, 1, 0],
                    [0, 0, 0, 1]], dtype=np.float32)
"""The reference's normalised intrinsics for all of KITTI (row 0 divided by the width, row 1 by the height)."""


class KITTIDataset(FrameDataset):
    """What the three KITTI readers share: the data folder, the image extension and the intrinsics.

    Args:
        data_path: the KITTI folder (DATA above).
        lines: split lines "FOLDER FRAME SIDE" (text or parsed).
        img_ext: ".jpg" or ".png".
        The others: as :class:`md2.data.datasets.base.FrameDataset`.
    """

    def __init__(self, data_path: Path | str, lines: Sequence, height: int, width: int,
                 frame_ids: Sequence[FrameId], num_scales: int = 4, is_train: bool = False,
                 img_ext: str = ".jpg", use_stereo: bool = False, load_depth: bool = True, seed: int = 0,
                 uint8_images: bool = False) -> None:
        if img_ext not in (".jpg", ".png"):
            raise UsageError(f"image extension must be .jpg or .png, got {img_ext!r}")
        self.data_path = Path(data_path).expanduser()
        self.img_ext = img_ext
        super().__init__(lines, height, width, frame_ids, KITTI_K, num_scales=num_scales, is_train=is_train,
                         use_stereo=use_stereo, load_depth=load_depth, seed=seed, uint8_images=uint8_images)

    @staticmethod
    def camera(ref: FrameRef) -> int:
        """KITTI camera number (2 or 3) of a split line's side."""
        if ref.side not in CAMERAS:
            raise DataError(f"split line '{ref}': side must be one of l, r, 2, 3, got {ref.side!r}")
        return CAMERAS[ref.side]


class KITTIRawDataset(KITTIDataset):
    """KITTI raw drives; ``depth_gt`` from the velodyne scan (camera 2 or 3, camera z depth)."""

    def image_path(self, ref: FrameRef, frame: int, camera: int | None) -> Path:
        camera = _require_camera(ref, camera)
        return self.data_path / ref.folder / f"image_0{camera}" / "data" / f"{frame:010d}{self.img_ext}"

    def velodyne_path(self, ref: FrameRef) -> Path:
        return self.data_path / ref.folder / "velodyne_points" / "data" / f"{ref.frame:010d}.bin"

    def has_depth(self, ref: FrameRef) -> bool:
        return self.velodyne_path(ref).is_file()

    def read_depth(self, ref: FrameRef) -> np.ndarray:
        velodyne = self.velodyne_path(ref)
        if not velodyne.is_file():
            raise DataError(f"missing velodyne scan {velodyne} (ground truth of split line '{ref}')")
        calib_dir = self.data_path / ref.folder.split("/")[0]
        return generate_depth_map(calib_dir, velodyne, cam=self.camera(ref), vel_depth=False)


class KITTIOdomDataset(KITTIDataset):
    """KITTI odometry sequences (the split's folder is the sequence number); no ground-truth depth."""

    def image_path(self, ref: FrameRef, frame: int, camera: int | None) -> Path:
        try:
            sequence = int(ref.folder)
        except ValueError:
            raise DataError(f"split line '{ref}': an odometry sequence is a number, got {ref.folder!r}") from None
        camera = _require_camera(ref, camera)
        return self.data_path / "sequences" / f"{sequence:02d}" / f"image_{camera}" / f"{frame:06d}{self.img_ext}"


class KITTIDepthDataset(KITTIRawDataset):
    """KITTI raw images with the depth benchmark's ground truth (projected, accumulated lidar) as ``depth_gt``."""

    def depth_path(self, ref: FrameRef) -> Path:
        return (self.data_path / ref.folder / "proj_depth" / "groundtruth" / f"image_0{self.camera(ref)}"
                / f"{ref.frame:010d}.png")

    def has_depth(self, ref: FrameRef) -> bool:
        return self.depth_path(ref).is_file()

    def read_depth(self, ref: FrameRef) -> np.ndarray:
        path = self.depth_path(ref)
        try:
            with Image.open(path) as image:
                stored = np.array(image)
        except FileNotFoundError:
            raise DataError(f"missing depth ground truth {path} (split line '{ref}')") from None
        except UNREADABLE_IMAGE as error:
            raise DataError(f"corrupt depth ground truth {path}: {error}") from None
        if stored.ndim != 2:
            raise DataError(f"depth ground truth {path} is not a single-channel 16-bit PNG")
        return stored.astype(np.float32) / 256


def _require_camera(ref: FrameRef, camera: int | None) -> int:
    if camera is None:
        raise DataError(f"split line '{ref}' has no side: KITTI needs l or r")
    return camera


DATASETS: dict[str, type[KITTIDataset]] = {
    "kitti": KITTIRawDataset,
    "kitti_odom": KITTIOdomDataset,
    "kitti_depth": KITTIDepthDataset,
}
"""Dataset name (``--dataset``) -> reader class."""
