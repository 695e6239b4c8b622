"""Writing synthetic drives in the real KITTI layouts (raw drives, depth benchmark, odometry sequences)."""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from md2.data.convert import available_cpus
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
    return _scene(seed, index, frames).poses.copy()


PARALLEL_FROM = 8 * 1242 * 375
"""Pixels (frames x width x height) from which worker processes pay for their start-up (~1 s)."""


def generate_dataset(out: Path | str, options: SynthOptions | None = None,
                     on_frame: Callable[[], None] | None = None, *, jobs: int | None = 1, **fields) -> Path:
    """Write synthetic drives under ``out`` in the KITTI layouts; returns ``out`` as a Path.

    Options come as a :class:`SynthOptions` or as its fields: ``generate_dataset(out, drives=1, frames=5)``.
    ``on_frame`` is called after each frame is written (progress bars). ``jobs``: processes rendering frames
    at once (None: all cores); used only for datasets large enough to gain from it. The bytes written do not
    depend on ``jobs``.

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

    Every file is written under a temporary name and renamed.
    """
    options = options if options is not None else SynthOptions(**fields)
    out = Path(out)
    write_calibration(out / DATE, Camera(options.width, options.height))
    tasks = [(drive, frame) for drive in range(options.drives) for frame in range(options.frames)]
    jobs = min(jobs or available_cpus(), len(tasks))
    if jobs > 1 and len(tasks) * options.width * options.height >= PARALLEL_FROM:
        _write_in_parallel(out, options, tasks, jobs, on_frame)
    else:
        for drive, frame in tasks:
            _write_frame(out, options, drive, frame)
            if on_frame is not None:
                on_frame()
    if options.odometry:
        for drive in range(options.drives):
            poses = _scene(options.seed, drive, options.frames).poses
            write_odometry_files(out, ODOMETRY_FIRST_SEQUENCE + drive, poses, Camera(options.width, options.height))
    write_splits(out, options.drives, options.frames, options.odometry)
    return out


@functools.lru_cache(maxsize=2)
def _scene(seed: int, drive: int, frames: int) -> Scene:
    """drive_scene, built once per drive and process (frames are written drive by drive)."""
    return drive_scene(seed, drive, frames)


def _write_in_parallel(out: Path, options: SynthOptions, tasks: list[tuple[int, int]], jobs: int,
                       on_frame: Callable[[], None] | None) -> None:
    """_write_frame for every (drive, frame) in ``jobs`` fresh processes, at most 2 * jobs frames queued."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    queue, pending = iter(tasks), set[Future]()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method)) as pool:
        try:
            while True:
                for drive, frame in queue:
                    pending.add(pool.submit(_write_frame, out, options, drive, frame))
                    if len(pending) >= 2 * jobs:
                        break
                if not pending:
                    return
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()  # re-raises a worker's error here
                    if on_frame is not None:
                        on_frame()
        finally:
            for future in pending:
                future.cancel()


def _write_frame(out: Path, options: SynthOptions, drive: int, frame: int) -> None:
    """Both camera images (and their odometry copies), the exact depths and the scan of one frame."""
    from md2.data.calib import generate_depth_map

    scene = _scene(options.seed, drive, options.frames)
    camera = Camera(options.width, options.height)
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
