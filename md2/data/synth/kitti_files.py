"""KITTI's file formats for synthetic scenes: calibration text files, odometry files, images, scans, depth PNGs.

Every file is written under a temporary name and renamed, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from md2.data.synth.render import BASELINE, LIDAR_IN_CAMERA, LIDAR_TO_CAMERA, Camera
from md2.files import atomic_path

DATE = "2011_09_26"
"""The calibration date folder of every synthetic drive."""


def _rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """(3,) axis * angle (radians) -> (3, 3) rotation."""
    angle = np.linalg.norm(axis_angle)
    x, y, z = axis_angle / angle
    skew = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


RECT_ROTATION = _rodrigues(np.array([0.0045, -0.0021, -0.0098]))
"""R_rect_00: a small real rotation (~0.6 degrees) from the unrectified to the rectified camera frame, as in real
calibrations, so that a lidar projection that forgets R_rect lands off the rendered pixels."""


def drive_name(index: int) -> str:
    """Folder of drive ``index`` (0-based) relative to the data root: 2011_09_26/2011_09_26_drive_0001_sync."""
    return f"{DATE}/{DATE}_drive_{index + 1:04d}_sync"


def _row(values: np.ndarray) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(values, dtype=np.float64).reshape(-1))


def projection_matrices(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """P_rect_02 and P_rect_03 (3x4), rectified camera coordinates -> pixels.

    KITTI's projections give 1-based pixel coordinates (the reference subtracts 1 after rounding), so the
    principal point written is md2's 0-based (cx, cy) + 1: a lidar point then lands, through
    ``generate_depth_map``, on the pixel whose centre is nearest to its true projection.
    """
    K = np.array([[camera.fx, 0, camera.cx + 1], [0, camera.fy, camera.cy + 1], [0, 0, 1]])
    left = np.hstack([K, np.zeros((3, 1))])
    right = left.copy()
    right[0, 3] = -camera.fx * BASELINE
    return left, right


def write_calibration(folder: Path, camera: Camera) -> None:
    """calib_cam_to_cam.txt, calib_velo_to_cam.txt and calib_imu_to_velo.txt in KITTI's raw format.

    Cameras 0 and 2 are the left camera, 1 and 3 the right one (BASELINE to the right). The images are
    rendered already rectified, undistorted (D = 0) and of size S = S_rect = (W, H). velo_to_cam maps the lidar
    frame into the unrectified camera frame, so that P_rect_0x @ R_rect_00 @ velo_to_cam is the lidar-to-pixel
    projection, as in the real files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    left, right = projection_matrices(camera)
    size = _row([camera.width, camera.height])
    cam = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    for index, P in enumerate((left, right, left, right)):
        cam += [f"S_0{index}: {size}", f"K_0{index}: {_row(P[:, :3])}", f"D_0{index}: {_row(np.zeros(5))}",
                f"R_0{index}: {_row(np.eye(3))}", f"T_0{index}: {_row(P[:, 3] / camera.fx)}",
                f"S_rect_0{index}: {size}", f"R_rect_0{index}: {_row(RECT_ROTATION)}", f"P_rect_0{index}: {_row(P)}"]
    velo = ["calib_time: 15-Mar-2012 11:37:16", f"R: {_row(RECT_ROTATION.T @ LIDAR_TO_CAMERA)}",
            f"T: {_row(RECT_ROTATION.T @ LIDAR_IN_CAMERA)}", "delta_f: 0.000000e+00 0.000000e+00",
            "delta_c: 0.000000e+00 0.000000e+00"]
    imu = ["calib_time: 25-May-2012 16:47:16", f"R: {_row(np.eye(3))}", f"T: {_row([-0.81, 0.32, -0.80])}"]
    for name, lines in (("calib_cam_to_cam.txt", cam), ("calib_velo_to_cam.txt", velo),
                        ("calib_imu_to_velo.txt", imu)):
        write_text(folder / name, "\n".join(lines) + "\n")


def write_odometry_files(out: Path, sequence: int, poses: np.ndarray, camera: Camera) -> None:
    """OUT/sequences/NN/calib.txt (P0..P3, Tr: velodyne -> rectified camera 0), times.txt (10 Hz) and
    OUT/poses/NN.txt: per frame the 12 numbers of the 3x4 camera-0-to-world pose, row-major."""
    folder = out / "sequences" / f"{sequence:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    left, right = projection_matrices(camera)
    tr = np.hstack([LIDAR_TO_CAMERA, LIDAR_IN_CAMERA[:, None]])
    calib = [f"P0: {_row(left)}", f"P1: {_row(right)}", f"P2: {_row(left)}", f"P3: {_row(right)}", f"Tr: {_row(tr)}"]
    write_text(folder / "calib.txt", "\n".join(calib) + "\n")
    write_text(folder / "times.txt", "".join(f"{0.1 * k:.6e}\n" for k in range(len(poses))))
    (out / "poses").mkdir(parents=True, exist_ok=True)
    write_text(out / "poses" / f"{sequence:02d}.txt", "".join(_row(pose[:3, :]) + "\n" for pose in poses))


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def encode_image(pixels: np.ndarray, ext: str) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes, or JPEG with the reference's conversion settings (quality 92, 4:2:0)."""
    buffer = io.BytesIO()
    if ext == "png":
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    else:
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=92, subsampling=2)
    return buffer.getvalue()


def encode_depth_png(depth: np.ndarray) -> bytes:
    """(H, W) metres -> KITTI depth-benchmark PNG bytes: uint16 of round(depth * 256), 0 = no data."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(depth * 256.0), 0, 65535).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        np.save(temporary, array)
