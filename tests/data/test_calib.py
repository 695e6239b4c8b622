"""KITTI calibration parsing, velodyne scans, and the lidar-to-depth-map projection of the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from md2.data.calib import (generate_depth_map, load_velodyne_points, one_blas_thread, read_calib_file,
                            velodyne_to_image)
from md2.errors import DataError
from tests.data.reference_depth import reference_depth_map

REAL_CALIB = Path(__file__).resolve().parents[2].parent / "shared" / "kitti_calib" / "2011_09_26"
FX, FY, CX, CY, W, H = 100.0, 100.0, 50.0, 20.0, 100, 40
LIDAR_TO_CAMERA = "0 -1 0 0 0 -1 1 0 0"  # lidar x forward, y left, z up -> camera x right, y down, z forward


def write_calib(folder: Path, drop: str | None = None, velo_T: str = "0 0 0", R_rect: str = "1 0 0 0 1 0 0 0 1",
                right_tx: float = -54.0) -> Path:
    """A calibration pair with P_rect_02 = [[FX, 0, CX, 0], [0, FY, CY, 0], [0, 0, 1, 0]] (P_rect_03: tx)."""
    folder.mkdir(parents=True, exist_ok=True)
    cam = {"calib_time": "09-Jan-2012 13:57:47", "corner_dist": "9.950000e-02", "R_rect_00": R_rect,
           "P_rect_02": f"{FX} 0 {CX} 0 0 {FY} {CY} 0 0 0 1 0",
           "P_rect_03": f"{FX} 0 {CX} {right_tx} 0 {FY} {CY} 0 0 0 1 0", "S_rect_02": f"{W} {H}"}
    velo = {"calib_time": "15-Mar-2012 11:37:16", "R": LIDAR_TO_CAMERA, "T": velo_T,
            "delta_f": "0 0", "delta_c": "0 0"}
    for name, entries in (("calib_cam_to_cam.txt", cam), ("calib_velo_to_cam.txt", velo)):
        (folder / name).write_text("".join(f"{k}: {v}\n" for k, v in entries.items() if k != drop))
    return folder


def write_scan(path: Path, points) -> Path:
    """Lidar points (x, y, z) with reflectance 0.5, as a KITTI .bin file."""
    np.array([[*p, 0.5] for p in points], dtype=np.float32).reshape(-1, 4).tofile(path)
    return path


def test_calib_time_and_other_text_values_are_skipped(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("calib_time: 09-Jan-2012 13:57:47\nS_rect_02: 1.242000e+03 3.750000e+02\n\n"
                    "note: not numbers\nR: 1 0 0 0 1 0 0 0 1\n")
    calib = read_calib_file(path)
    assert sorted(calib) == ["R", "S_rect_02"]
    assert calib["S_rect_02"].tolist() == [1242.0, 375.0] and calib["R"].shape == (9,)


def test_missing_calibration_file_is_named(tmp_path):
    with pytest.raises(DataError, match="calib_cam_to_cam.txt"):
        read_calib_file(tmp_path / "calib_cam_to_cam.txt")


def test_velodyne_points_have_their_reflectance_replaced_by_one(tmp_path):
    scan = load_velodyne_points(write_scan(tmp_path / "s.bin", [(1.5, -2.0, 0.25), (3.0, 4.0, -1.0)]))
    assert scan.dtype == np.float32 and scan.shape == (2, 4)
    np.testing.assert_array_equal(scan[:, :3], [[1.5, -2.0, 0.25], [3.0, 4.0, -1.0]])
    np.testing.assert_array_equal(scan[:, 3], [1.0, 1.0])


def test_scan_whose_size_is_not_a_multiple_of_16_is_refused_with_its_size(tmp_path):
    path = tmp_path / "0000000003.bin"
    path.write_bytes(b"\0" * 20)
    with pytest.raises(DataError, match=r"0000000003\.bin.*20 bytes"):
        load_velodyne_points(path)


def test_missing_scan_is_named(tmp_path):
    with pytest.raises(DataError, match="nothere.bin"):
        load_velodyne_points(tmp_path / "nothere.bin")


@pytest.mark.parametrize("u, column", [(10.4, 9), (10.6, 10), (10.5, 9), (11.5, 11), (0.6, 0), (100.4, 99)])
def test_points_land_at_numpy_rounded_pixel_minus_one(tmp_path, u, column):
    """u = FX * (-y) / x + CX; column = round(u) - 1 with numpy's round half to even (10.5 -> 10, 11.5 -> 12).

    x = 1.5625 makes FX / x = 64, so the halves are exact in binary (and in float32)."""
    x = 1.5625
    y = -(u - CX) * x / FX
    scan = write_scan(tmp_path / "s.bin", [(x, y, -(12.5 - CY) * x / FY)])  # v = 12.5 -> round 12 -> row 11
    depth = generate_depth_map(write_calib(tmp_path / "c"), scan)
    assert depth.shape == (H, W)
    assert np.argwhere(depth).tolist() == [[11, column]]
    assert depth[11, column] == pytest.approx(x)


def test_nearest_point_wins_in_any_order(tmp_path):
    calib = write_calib(tmp_path / "c")
    for order in ([20.0, 10.0, 15.0], [10.0, 20.0, 15.0], [15.0, 20.0, 10.0]):
        depth = generate_depth_map(calib, write_scan(tmp_path / "s.bin", [(x, 0.0, 0.0) for x in order]))
        assert np.count_nonzero(depth) == 1 and depth.max() == pytest.approx(10.0)


def test_points_behind_the_lidar_or_outside_the_image_are_dropped(tmp_path):
    points = [(-10.0, 0.0, 0.0),          # behind (x < 0)
              (1.0, 5.0, 0.0),            # far left of the image
              (1.0, 0.0, -2.0),           # below the image
              (2.0, -(100.6 - CX) * 2.0 / FX, 0.0)]  # u = 100.6 -> column 100 = W: just outside
    depth = generate_depth_map(write_calib(tmp_path / "c"), write_scan(tmp_path / "s.bin", points))
    assert np.count_nonzero(depth) == 0


def test_vel_depth_stores_the_lidar_x_and_negative_depths_become_zero(tmp_path):
    calib = write_calib(tmp_path / "c", velo_T="0 0 -5")  # camera z = lidar x - 5
    scan = write_scan(tmp_path / "s.bin", [(8.0, 0.0, 0.0), (2.0, 0.1, 0.0)])  # two different pixels
    camera_z = generate_depth_map(calib, scan)
    lidar_x = generate_depth_map(calib, scan, vel_depth=True)
    assert sorted(camera_z[camera_z > 0].tolist()) == [3.0]  # 8 - 5; the point at z = 2 - 5 < 0 becomes 0
    assert sorted(lidar_x[lidar_x > 0].tolist()) == [2.0, 8.0]


def test_right_camera_uses_p_rect_03(tmp_path):
    calib = write_calib(tmp_path / "c", right_tx=-FX * 0.54)
    scan = write_scan(tmp_path / "s.bin", [(5.4, 0.0, 0.0)])
    left, right = generate_depth_map(calib, scan, cam=2), generate_depth_map(calib, scan, cam=3)
    (v2, u2), (v3, u3) = np.argwhere(left)[0], np.argwhere(right)[0]
    assert v2 == v3 and u2 - u3 == 10  # disparity = FX * 0.54 / 5.4


def test_rectifying_rotation_is_applied(tmp_path):
    angle = 0.05
    R_rect = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    calib = write_calib(tmp_path / "c", R_rect=" ".join(map(str, R_rect.reshape(-1))), velo_T="0.1 -0.2 0.3")
    rng = np.random.default_rng(1)
    points = np.stack([rng.uniform(-2, 30, 300), rng.uniform(-10, 10, 300), rng.uniform(-2, 1, 300)], 1)
    scan = write_scan(tmp_path / "s.bin", points)
    P = np.array([[FX, 0, CX, 0], [0, FY, CY, 0], [0, 0, 1, 0]]) @ np.block(
        [[R_rect, np.zeros((3, 1))], [np.zeros((1, 3)), 1]]) @ np.array(
        [[0, -1, 0, 0.1], [0, 0, -1, -0.2], [1, 0, 0, 0.3], [0, 0, 0, 1]])
    points32 = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)[:, :3].astype(np.float64)
    for vel_depth in (False, True):
        np.testing.assert_allclose(generate_depth_map(calib, scan, vel_depth=vel_depth),
                                   reference_depth_map(P, (H, W), points32, vel_depth), rtol=1e-12)


@pytest.mark.parametrize("key, file", [("R", "calib_velo_to_cam.txt"), ("T", "calib_velo_to_cam.txt"),
                                       ("R_rect_00", "calib_cam_to_cam.txt"), ("P_rect_02", "calib_cam_to_cam.txt"),
                                       ("S_rect_02", "calib_cam_to_cam.txt")])
def test_missing_calibration_key_names_the_file_and_key(tmp_path, key, file):
    calib = write_calib(tmp_path / "c", drop=key)
    scan = write_scan(tmp_path / "s.bin", [(5.0, 0.0, 0.0)])
    with pytest.raises(DataError, match=f"{file}.*{key}"):
        generate_depth_map(calib, scan)


@pytest.mark.skipif(not REAL_CALIB.exists(), reason="../shared/kitti_calib not present")
def test_real_kitti_calibration_matches_a_plain_loop_projection(tmp_path):
    P, shape = velodyne_to_image(REAL_CALIB, cam=2)
    assert shape == (375, 1242)
    rng = np.random.default_rng(0)
    count = 20000
    points = np.stack([rng.uniform(-5, 40, count), rng.uniform(-15, 15, count), rng.uniform(-2, 2, count)], 1)
    # Near-copies at other depths: many pixels receive several points.
    copies = points[:8000] * rng.uniform(0.5, 2.0, (8000, 1)) + rng.normal(0, 1e-4, (8000, 3))
    points = np.concatenate([points, copies])
    scan = write_scan(tmp_path / "s.bin", points)
    points32 = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)[:, :3].astype(np.float64)
    for cam in (2, 3):
        P, shape = velodyne_to_image(REAL_CALIB, cam=cam)
        for vel_depth in (False, True):
            expected = reference_depth_map(P, shape, points32, vel_depth)
            depth = generate_depth_map(REAL_CALIB, scan, cam=cam, vel_depth=vel_depth)
            assert depth.shape == (375, 1242) and np.count_nonzero(depth) > 5000
            np.testing.assert_allclose(depth, expected, rtol=1e-12)


def test_pixel_whose_nearest_point_is_behind_the_camera_becomes_zero(tmp_path):
    calib = write_calib(tmp_path / "c", velo_T="0 0 -5")  # camera z = lidar x - 5
    # Same pixel (straight ahead): z = 3 and z = -3; the smallest is negative, so the pixel is 0, as the
    # reference's min-then-zero rule gives.
    depth = generate_depth_map(calib, write_scan(tmp_path / "s.bin", [(8.0, 0.0, 0.0), (2.0, 0.0, 0.0)]))
    assert np.count_nonzero(depth) == 0


def test_rewritten_calibration_is_read_again(tmp_path):
    calib = write_calib(tmp_path / "c")
    scan = write_scan(tmp_path / "s.bin", [(5.4, 0.0, 0.0)])
    before = np.argwhere(generate_depth_map(calib, scan))
    write_calib(calib, right_tx=-54.0, R_rect="1 0 0 0 1 0 0 0 1")  # same contents: same pixel
    assert np.argwhere(generate_depth_map(calib, scan)).tolist() == before.tolist()
    cam_file = calib / "calib_cam_to_cam.txt"
    cam_file.write_text(cam_file.read_text().replace(f"P_rect_02: {FX} 0 {CX}", f"P_rect_02: {FX} 0 {CX + 7}"))
    after = np.argwhere(generate_depth_map(calib, scan))
    assert after[0, 1] == before[0, 1] + 7


@pytest.mark.skipif(not REAL_CALIB.exists(), reason="../shared/kitti_calib not present")
def test_float32_depth_map_is_the_float64_map_rounded(tmp_path):
    rng = np.random.default_rng(1)
    points = np.stack([rng.uniform(-5, 60, 30000), rng.uniform(-20, 20, 30000), rng.uniform(-2, 2, 30000)], 1)
    scan = write_scan(tmp_path / "s.bin", points)
    for vel_depth in (False, True):
        wide = generate_depth_map(REAL_CALIB, scan, vel_depth=vel_depth)
        narrow = generate_depth_map(REAL_CALIB, scan, vel_depth=vel_depth, dtype=np.float32)
        assert wide.dtype == np.float64 and narrow.dtype == np.float32 and np.count_nonzero(narrow) > 3000
        np.testing.assert_array_equal(narrow, wide.astype(np.float32))


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.mark.skipif(not REAL_CALIB.exists(), reason="../shared/kitti_calib not present")
def test_one_blas_thread_projects_the_same_map_and_gives_the_threads_back(tmp_path):
    if not _blas_threads():
        pytest.skip("no BLAS thread pool visible to threadpoolctl")
    rng = np.random.default_rng(2)
    points = np.stack([rng.uniform(-5, 60, 50000), rng.uniform(-20, 20, 50000), rng.uniform(-2, 2, 50000)], 1)
    scan = write_scan(tmp_path / "s.bin", points)
    with threadpool_limits(limits=2, user_api="blas"):  # the tests run with one thread: start from two
        pooled = generate_depth_map(REAL_CALIB, scan)
        with one_blas_thread():
            assert _blas_threads() == [1] * len(_blas_threads())
            alone = generate_depth_map(REAL_CALIB, scan)
        assert _blas_threads() == [2] * len(_blas_threads())
    np.testing.assert_array_equal(alone, pooled)


def point_at(row: int, column: int, x: float) -> tuple[float, float, float]:
    """A lidar point at forward distance ``x`` landing on pixel (row, column) of ``write_calib``'s camera."""
    return x, -(column + 1 - CX) * x / FX, -(row + 1 - CY) * x / FY


P_TEST = np.array([[FX, 0, CX, 0], [0, FY, CY, 0], [0, 0, 1, 0]]) @ np.array(
    [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
RIGHT_END, NEXT_START = (7, W - 1), (8, 0)  # the reference's keys join these two pixels

# (pixel, lidar x) in scan order, and what the reference leaves at (7, W-1) and (8, 0).
JOINED_PIXEL_CASES = {
    "right end first: it gets the smaller depth of both": ([(RIGHT_END, 10.0), (NEXT_START, 5.0)], (5.0, 5.0)),
    "next row's start first: it keeps the smaller": ([(NEXT_START, 5.0), (RIGHT_END, 10.0)], (10.0, 5.0)),
    "next row's start first, larger: it takes the other's": ([(NEXT_START, 10.0), (RIGHT_END, 5.0)], (5.0, 5.0)),
    "several points each: the second pixel keeps its last point, not its nearest":
        ([(NEXT_START, 30.0), (RIGHT_END, 10.0), (NEXT_START, 4.0), (RIGHT_END, 20.0)], (20.0, 4.0)),
    "several points each, right end first": ([(RIGHT_END, 12.0), (RIGHT_END, 9.0), (NEXT_START, 6.0),
                                              (NEXT_START, 8.0)], (6.0, 8.0)),
    "one pixel alone keeps its nearest": ([(RIGHT_END, 12.0), (RIGHT_END, 9.0), (RIGHT_END, 11.0)], (9.0, 0.0)),
}


@pytest.mark.parametrize("case", JOINED_PIXEL_CASES)
def test_pixels_whose_reference_keys_collide_get_the_reference_depths(tmp_path, case):
    hits, (right_end, next_start) = JOINED_PIXEL_CASES[case]
    # Interior pixels with several points around them: they keep their nearest point whatever the order.
    hits = [((3, 40), 9.0), *hits, ((3, 40), 7.0), ((3, 40), 8.0), ((20, 0), 6.0), ((20, 0), 3.0)]
    points = [point_at(*pixel, x) for pixel, x in hits]
    scan = write_scan(tmp_path / "s.bin", points)
    depth = generate_depth_map(write_calib(tmp_path / "c"), scan, vel_depth=True)
    assert (depth[RIGHT_END], depth[NEXT_START]) == (right_end, next_start)
    assert depth[3, 40] == 7.0 and depth[20, 0] == 3.0 and np.count_nonzero(depth) == 2 + (next_start > 0) + 1
    points32 = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
    for vel_depth in (True, False):
        np.testing.assert_array_equal(generate_depth_map(tmp_path / "c", scan, vel_depth=vel_depth),
                                      reference_depth_map(P_TEST, (H, W), points32, vel_depth))


def test_random_scans_crowding_the_border_columns_match_the_reference_rule(tmp_path):
    rng = np.random.default_rng(5)
    calib = write_calib(tmp_path / "c", velo_T="0 0 -3")  # some camera depths negative
    for trial in range(4):
        count = 3000
        rows = rng.integers(-1, H + 1, count)
        columns = rng.choice([-1, 0, 1, W - 2, W - 1, W, 30], count)
        x = rng.uniform(0.5, 9.0, count).round(2)
        points = [point_at(r, c, d) for r, c, d in zip(rows, columns, x)]
        points += [(-1.0, 0.0, 0.0)] * 5
        scan = write_scan(tmp_path / "s.bin", points)
        points32 = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
        P = np.array([[FX, 0, CX, 0], [0, FY, CY, 0], [0, 0, 1, 0]]) @ np.array(
            [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, -3], [0, 0, 0, 1]], dtype=float)
        for vel_depth in (True, False):
            for dtype in (np.float64, np.float32):
                expected = reference_depth_map(P, (H, W), points32, vel_depth).astype(dtype)
                np.testing.assert_array_equal(generate_depth_map(calib, scan, vel_depth=vel_depth, dtype=dtype),
                                              expected, err_msg=f"trial {trial}, vel_depth {vel_depth}")


def test_p_rect_with_text_values_is_named_as_not_numbers(tmp_path):
    calib = write_calib(tmp_path / "c")
    cam_file = calib / "calib_cam_to_cam.txt"
    text = cam_file.read_text()
    cam_file.write_text("\n".join("P_rect_02: 1 2 abc" if line.startswith("P_rect_02") else line
                                  for line in text.splitlines()) + "\n")
    with pytest.raises(DataError, match=r"calib_cam_to_cam\.txt: 'P_rect_02' must be 12 numbers, got '1 2 abc'"):
        generate_depth_map(calib, write_scan(tmp_path / "s.bin", [(5.0, 0.0, 0.0)]))


def test_p_rect_with_too_few_numbers_gives_the_count(tmp_path):
    calib = write_calib(tmp_path / "c")
    cam_file = calib / "calib_cam_to_cam.txt"
    cam_file.write_text(cam_file.read_text().replace(f"P_rect_02: {FX} 0 {CX} 0 ", "P_rect_02: "))
    with pytest.raises(DataError, match=r"'P_rect_02' has 8 values, expected 12"):
        generate_depth_map(calib, write_scan(tmp_path / "s.bin", [(5.0, 0.0, 0.0)]))


@pytest.mark.parametrize("size", [1001, 17, 1, 15])
def test_scan_size_is_reported_as_the_file_size(tmp_path, size):
    path = tmp_path / "0000000001.bin"
    path.write_bytes(b"\1" * size)
    with pytest.raises(DataError, match=rf"0000000001\.bin has {size} bytes, not a multiple of 16"):
        load_velodyne_points(path)


def test_empty_scan_reads_as_no_points(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    assert load_velodyne_points(path).shape == (0, 4)
    assert np.count_nonzero(generate_depth_map(write_calib(tmp_path / "c"), path)) == 0
