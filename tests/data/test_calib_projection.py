"""Calibration parsing and lidar projection on hand-placed points and on the real KITTI calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from md2.data.calib import generate_depth_map, load_velodyne_points, read_calib_file, velodyne_to_image
from md2.errors import DataError

REAL_CALIB = Path(__file__).resolve().parents[2].parent / "shared" / "kitti_calib" / "2011_09_26"
FX, CX, CY, W, H = 100.0, 50.0, 20.0, 100, 40


def write_calib(folder: Path, drop: str | None = None) -> Path:
    """Lidar x forward / y left / z up -> camera x right / y down / z forward; P_rect with fx = fy = 100."""
    folder.mkdir(parents=True, exist_ok=True)
    P = f"{FX} 0 {CX} 0 0 {FX} {CY} 0 0 0 1 0"
    cam_lines = {"calib_time": "09-Jan-2012 13:57:47", "R_rect_00": "1 0 0 0 1 0 0 0 1", "P_rect_02": P,
                 "P_rect_03": P, "S_rect_02": f"{W} {H}"}
    velo_lines = {"calib_time": "15-Mar-2012 11:37:16", "R": "0 -1 0 0 0 -1 1 0 0", "T": "0 0 0"}
    for name, lines in (("calib_cam_to_cam.txt", cam_lines), ("calib_velo_to_cam.txt", velo_lines)):
        (folder / name).write_text("".join(f"{k}: {v}\n" for k, v in lines.items() if k != drop))
    return folder


def write_scan(path: Path, points) -> Path:
    rows = np.array([[*p, 0.5] for p in points], dtype=np.float32)
    rows.tofile(path)
    return path


def pixel_of(x, y, z):
    """Lidar point -> (row, col) the reference writes it to: round(u) - 1, round(v) - 1."""
    u, v = FX * (-y) / x + CX, FX * (-z) / x + CY
    return int(np.round(v) - 1), int(np.round(u) - 1)


def test_calib_time_lines_are_skipped(tmp_path):
    calib = read_calib_file(write_calib(tmp_path) / "calib_cam_to_cam.txt")
    assert "calib_time" not in calib and calib["S_rect_02"].tolist() == [W, H]


def test_points_land_at_rounded_pixels_minus_one(tmp_path):
    calib = write_calib(tmp_path / "c")
    scan = write_scan(tmp_path / "s.bin", [(10.0, 0.3, 0.2), (5.0, -1.0, -0.4)])
    depth = generate_depth_map(calib, scan)
    for point in [(10.0, 0.3, 0.2), (5.0, -1.0, -0.4)]:
        assert depth[pixel_of(*point)] == pytest.approx(point[0])
    assert np.count_nonzero(depth) == 2


def test_nearest_point_wins_and_behind_or_outside_are_dropped(tmp_path):
    calib = write_calib(tmp_path / "c")
    scan = write_scan(tmp_path / "s.bin", [(20.0, 0.0, 0.0), (10.0, 0.0, 0.0), (15.0, 0.0, 0.0),
                                           (-10.0, 0.0, 0.0), (1.0, 5.0, 0.0)])
    depth = generate_depth_map(calib, scan)
    assert depth[pixel_of(10.0, 0.0, 0.0)] == pytest.approx(10.0)
    assert np.count_nonzero(depth) == 1


def test_vel_depth_stores_lidar_x(tmp_path):
    calib = write_calib(tmp_path / "c")
    scan = write_scan(tmp_path / "s.bin", [(8.0, 0.0, 0.0)])
    assert generate_depth_map(calib, scan, vel_depth=True).max() == pytest.approx(8.0)


def test_scan_size_not_multiple_of_16_is_refused(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(b"\0" * 20)
    with pytest.raises(DataError, match="bad.bin.*16"):
        load_velodyne_points(path)


def test_missing_calibration_key_is_named(tmp_path):
    calib = write_calib(tmp_path / "c", drop="P_rect_02")
    with pytest.raises(DataError, match="calib_cam_to_cam.txt.*P_rect_02"):
        velodyne_to_image(calib, cam=2)


@pytest.mark.skipif(not REAL_CALIB.exists(), reason="../shared/kitti_calib not present")
def test_real_kitti_calibration_projects_forward_points_into_the_image():
    P, (height, width) = velodyne_to_image(REAL_CALIB, cam=2)
    assert (height, width) == (375, 1242)
    point = P @ np.array([10.0, 0.0, 0.0, 1.0])
    u, v = point[0] / point[2], point[1] / point[2]
    assert 0 < u < width and 0 < v < height and 9 < point[2] < 11
