"""Writing synthetic scenes in the real KITTI layouts (raw drives, odometry sequences, depth benchmark)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from md2.data.synth.render import BASELINE, LIDAR_IN_CAMERA, LIDAR_TO_CAMERA, Camera, lidar_scan, render_view, \
    right_camera_pose
from md2.data.synth.scene import build_scene
from md2.files import atomic_path

DATE = "2011_09_26"


@dataclass(frozen=True)
class SynthOptions:
    """What to generate. Sizes are the full-resolution frames (KITTI's are 1242 x 375)."""

    drives: int = 2
    frames: int = 20
    seed: int = 0
    width: int = 1242
    height: int = 375
    ext: str = "png"
    lidar: bool = True
    depth_benchmark: bool = False
    odometry: bool = False


def drive_name(index: int) -> str:
    """Folder of drive ``index`` (0-based) relative to the data root: 2011_09_26/2011_09_26_drive_0001_sync."""
    return f"{DATE}/{DATE}_drive_{index + 1:04d}_sync"


def drive_seed(seed: int, index: int) -> int:
    return seed * 1000 + index


def drive_poses(seed: int, index: int, frames: int) -> np.ndarray:
    """Exact left-camera poses (F, 4, 4), camera-to-world, of drive ``index`` of a dataset made with ``seed``."""
    return build_scene(drive_seed(seed, index), frames).poses


def _row(values: np.ndarray) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(values, dtype=np.float64).reshape(-1))


def projection_matrices(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """P_rect_02 and P_rect_03 (3x4). KITTI's projections give 1-based pixel coordinates (the reference
    subtracts 1 after rounding), so the principal point is written one pixel further than md2's 0-based cx."""
    K = np.array([[camera.fx, 0, camera.cx + 1], [0, camera.fy, camera.cy + 1], [0, 0, 1]])
    left = np.hstack([K, np.zeros((3, 1))])
    right = left.copy()
    right[0, 3] = -camera.fx * BASELINE
    return left, right


def write_calibration(folder: Path, camera: Camera) -> None:
    """calib_cam_to_cam.txt, calib_velo_to_cam.txt and calib_imu_to_velo.txt in KITTI's format."""
    folder.mkdir(parents=True, exist_ok=True)
    left, right = projection_matrices(camera)
    size = _row([camera.width, camera.height])
    cam = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    for index, P in enumerate((left, left, left, right)):
        cam += [f"S_0{index}: {size}", f"K_0{index}: {_row(P[:, :3])}", f"D_0{index}: {_row(np.zeros(5))}",
                f"R_0{index}: {_row(np.eye(3))}", f"T_0{index}: {_row(P[:, 3] / camera.fx)}",
                f"S_rect_0{index}: {size}", f"R_rect_0{index}: {_row(np.eye(3))}", f"P_rect_0{index}: {_row(P)}"]
    velo = ["calib_time: 15-Mar-2012 11:37:16", f"R: {_row(LIDAR_TO_CAMERA)}", f"T: {_row(LIDAR_IN_CAMERA)}",
            "delta_f: 0.000000e+00 0.000000e+00", "delta_c: 0.000000e+00 0.000000e+00"]
    imu = ["calib_time: 25-May-2012 16:47:16", f"R: {_row(np.eye(3))}", f"T: {_row(np.zeros(3))}"]
    for name, lines in (("calib_cam_to_cam.txt", cam), ("calib_velo_to_cam.txt", velo), ("calib_imu_to_velo.txt", imu)):
        with atomic_path(folder / name) as temporary:
            temporary.write_text("\n".join(lines) + "\n")


def save_image(path: Path, pixels: np.ndarray) -> None:
    """PNG, or JPEG with the reference's conversion settings (quality 92, 4:2:0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        if path.suffix == ".png":
            Image.fromarray(pixels).save(temporary, format="PNG", compress_level=1)
        else:
            Image.fromarray(pixels).save(temporary, format="JPEG", quality=92, subsampling=2)


def save_array(path: Path, array: np.ndarray, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        if how == "npy":
            np.save(temporary, array)
        elif how == "bin":
            array.tofile(temporary)
        else:  # 16-bit depth PNG, depth x 256, 0 = unknown
            encoded = np.clip(np.round(array * 256.0), 0, 65535).astype(np.uint16)
            Image.fromarray(encoded).save(temporary, format="PNG")


def generate_dataset(out: Path | str, options: SynthOptions | None = None,
                     on_frame: Callable[[], None] | None = None, **fields) -> Path:
    """Write ``options.drives`` synthetic drives of ``options.frames`` frames under ``out``; returns ``out``.

    Raw layout (always): OUT/2011_09_26/calib_*.txt; OUT/<drive>/image_02/data/0000000000.png (and image_03),
    velodyne_points/data/0000000000.bin, rendered_depth/image_0{2,3}/0000000000.npy (exact z-depth, float32,
    metres), with ``depth_benchmark`` proj_depth/groundtruth/image_02/0000000000.png (the lidar projection,
    uint16 x 256). Split files: OUT/splits/synth/{train,val,test}_files.txt. With ``odometry`` also
    OUT/sequences/NN/{image_2,image_3}/000000.png, calib.txt, times.txt, OUT/poses/NN.txt (sequences 09, 10,
    ...) and OUT/splits/odom/test_files_NN.txt.

    Options come as a :class:`SynthOptions` or as its fields: ``generate_dataset(out, drives=1, frames=5)``.
    """
    options = options if options is not None else SynthOptions(**fields)
    from md2.data.calib import generate_depth_map
    from md2.data.synth.splits import write_splits

    out = Path(out)
    camera = Camera(options.width, options.height)
    write_calibration(out / DATE, camera)
    for drive in range(options.drives):
        scene = build_scene(drive_seed(options.seed, drive), options.frames)
        folder = out / drive_name(drive)
        sequence = out / "sequences" / f"{9 + drive:02d}"
        for frame, pose in enumerate(scene.poses):
            for cam, view_pose in ((2, pose), (3, right_camera_pose(pose))):
                image, depth = render_view(scene, camera, view_pose)
                save_image(folder / f"image_0{cam}" / "data" / f"{frame:010d}.{options.ext}", image)
                save_array(folder / "rendered_depth" / f"image_0{cam}" / f"{frame:010d}.npy", depth, "npy")
                if options.odometry:
                    save_image(sequence / f"image_{cam}" / f"{frame:06d}.{options.ext}", image)
            if options.lidar or options.depth_benchmark:
                scan_path = folder / "velodyne_points" / "data" / f"{frame:010d}.bin"
                save_array(scan_path, lidar_scan(scene, pose), "bin")
                if options.depth_benchmark:
                    projected = generate_depth_map(out / DATE, scan_path, cam=2)
                    save_array(folder / "proj_depth" / "groundtruth" / "image_02" / f"{frame:010d}.png", projected, "png")
            if on_frame is not None:
                on_frame()
        if options.odometry:
            write_odometry_files(out, sequence, 9 + drive, scene.poses, camera)
    write_splits(out, options)
    return out


def write_odometry_files(out: Path, sequence: Path, number: int, poses: np.ndarray, camera: Camera) -> None:
    """calib.txt (P0..P3, Tr), times.txt and poses/NN.txt (camera-0-to-world 3x4 per frame) of a sequence."""
    left, right = projection_matrices(camera)
    tr = np.hstack([LIDAR_TO_CAMERA, LIDAR_IN_CAMERA[:, None]])
    calib = [f"P0: {_row(left)}", f"P1: {_row(right)}", f"P2: {_row(left)}", f"P3: {_row(right)}", f"Tr: {_row(tr)}"]
    with atomic_path(sequence / "calib.txt") as temporary:
        temporary.write_text("\n".join(calib) + "\n")
    with atomic_path(sequence / "times.txt") as temporary:
        temporary.write_text("".join(f"{0.1 * k:.6e}\n" for k in range(len(poses))))
    (out / "poses").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "poses" / f"{number:02d}.txt") as temporary:
        temporary.write_text("".join(_row(pose[:3, :]) + "\n" for pose in poses))
