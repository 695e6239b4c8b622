"""Writing synthetic drives in the real KITTI layouts (raw drives, depth benchmark, odometry sequences)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from md2.data.synth.kitti_files import DATE, drive_name, encode_depth_png, encode_image, save_npy, write_bytes, \
    write_calibration, write_odometry_files
from md2.data.synth.render import Camera, lidar_scan, render_view, right_camera_pose
from md2.data.synth.scene import Scene, build_scene
from md2.data.synth.splits import ODOMETRY_FIRST_SEQUENCE, write_splits
from md2.errors import UsageError


@dataclass(frozen=True)
class SynthOptions:
    """What :func:`generate_dataset` writes.

    drives: number of drives (folders 2011_09_26_drive_0001_sync, ...); frames: frames per drive (>= 3, so
    that some frames have both temporal neighbours); seed: the same seed writes the same bytes (drive i of
    seed s is the scene :func:`drive_scene` (s, i)); width, height: image size (KITTI's is 1242 x 375; the
    intrinsics scale with it); ext: "png" or "jpg" (quality 92, 4:2:0, as md2 convert-jpeg); lidar: write the
    velodyne scans; depth_benchmark: also proj_depth/groundtruth PNGs (implies the scans); odometry: also the
    odometry layout (sequences 09, 10, ... and poses).
    """

    drives: int = 2
    frames: int = 20
    seed: int = 0
    width: int = 1242
    height: int = 375
    ext: str = "png"
    lidar: bool = True
    depth_benchmark: bool = False
    odometry: bool = False

    def __post_init__(self) -> None:
        for name, value, least in (("drives", self.drives, 1), ("frames", self.frames, 3), ("seed", self.seed, 0),
                                   ("width", self.width, 8), ("height", self.height, 8)):
            if int(value) != value or value < least:
                raise UsageError(f"synthetic data: {name} must be an integer >= {least}, got {value!r}")
        if self.ext not in ("png", "jpg"):
            raise UsageError(f"synthetic data: ext must be 'png' or 'jpg', got {self.ext!r}")


def drive_scene(seed: int, index: int, frames: int) -> Scene:
    """The scene of drive ``index`` (0-based) of a dataset written with ``seed`` and ``frames`` per drive."""
    return build_scene((seed, index), frames)


def drive_poses(seed: int, index: int, frames: int) -> np.ndarray:
    """Exact left-camera (image_02) poses (F, 4, 4), camera-to-world, of drive ``index`` (0-based) of a dataset
    written with ``seed`` and ``frames``. The world is the first frame's camera (x right, y down, z forward), so
    poses[0] is the identity and the relative pose taking frame j's camera coordinates to frame k's is
    inv(poses[k]) @ poses[j]."""
    return drive_scene(seed, index, frames).poses


def generate_dataset(out: Path | str, options: SynthOptions | None = None,
                     on_frame: Callable[[], None] | None = None, **fields) -> Path:
    """Write synthetic drives under ``out`` in the KITTI layouts; returns ``out`` as a Path.

    Options come as a :class:`SynthOptions` or as its fields: ``generate_dataset(out, drives=1, frames=5)``.
    ``on_frame`` is called after each frame is written (progress bars).

    Written (DRIVE = 2011_09_26/2011_09_26_drive_00NN_sync, FRAME = 10 digits, EXT = png or jpg):

    * OUT/2011_09_26/calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt;
    * OUT/DRIVE/image_02/data/FRAME.EXT (left) and image_03 (right, 0.54 m to the right);
    * OUT/DRIVE/velodyne_points/data/FRAME.bin (float32 x, y, z, reflectance; lidar frame) unless ``lidar``
      is False;
    * OUT/DRIVE/rendered_depth/image_0{2,3}/FRAME.npy: the exact z-depth, float32 (H, W), metres;
    * with ``depth_benchmark``: OUT/DRIVE/proj_depth/groundtruth/image_0{2,3}/FRAME.png (uint16 depth * 256,
      0 = no data): the scan projected by ``md2.data.calib.generate_depth_map`` (sparse, like KITTI's);
    * with ``odometry``: drive i also as sequence 9 + i: OUT/sequences/NN/image_{2,3}/NNNNNN.EXT,
      calib.txt, times.txt, and OUT/poses/NN.txt;
    * split files: see :func:`md2.data.synth.splits.write_splits`.
    """
    options = options if options is not None else SynthOptions(**fields)
    out = Path(out)
    camera = Camera(options.width, options.height)
    write_calibration(out / DATE, camera)
    for drive in range(options.drives):
        scene = drive_scene(options.seed, drive, options.frames)
        for frame in range(options.frames):
            _write_frame(out, drive, frame, scene, camera, options)
            if on_frame is not None:
                on_frame()
        if options.odometry:
            write_odometry_files(out, ODOMETRY_FIRST_SEQUENCE + drive, scene.poses, camera)
    write_splits(out, options.drives, options.frames, options.odometry)
    return out


def _write_frame(out: Path, drive: int, frame: int, scene: Scene, camera: Camera, options: SynthOptions) -> None:
    """Both camera images (and their odometry copies), the exact depths and the scan of one frame."""
    from md2.data.calib import generate_depth_map

    folder = out / drive_name(drive)
    sequence = out / "sequences" / f"{ODOMETRY_FIRST_SEQUENCE + drive:02d}"
    pose = scene.poses[frame]
    for cam, view_pose in ((2, pose), (3, right_camera_pose(pose))):
        image, depth = render_view(scene, camera, view_pose)
        encoded = encode_image(image, options.ext)
        write_bytes(folder / f"image_0{cam}" / "data" / f"{frame:010d}.{options.ext}", encoded)
        if options.odometry:
            write_bytes(sequence / f"image_{cam}" / f"{frame:06d}.{options.ext}", encoded)
        save_npy(folder / "rendered_depth" / f"image_0{cam}" / f"{frame:010d}.npy", depth)
    if options.lidar or options.depth_benchmark:
        scan_path = folder / "velodyne_points" / "data" / f"{frame:010d}.bin"
        write_bytes(scan_path, lidar_scan(scene, pose).tobytes())
        if options.depth_benchmark:
            for cam in (2, 3):
                projected = generate_depth_map(out / DATE, scan_path, cam=cam)
                write_bytes(folder / "proj_depth" / "groundtruth" / f"image_0{cam}" / f"{frame:010d}.png",
                            encode_depth_png(projected))
