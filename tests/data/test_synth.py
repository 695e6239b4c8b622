"""md2's synthetic KITTI scenes: layout, calibration, lidar, geometric and photometric consistency, determinism."""

from __future__ import annotations

import hashlib
import re
import time

import numpy as np
import pytest
from PIL import Image

from md2.data.calib import generate_depth_map, load_velodyne_points, read_calib_file
from md2.data.synth import BASELINE, Camera, SynthOptions, drive_name, drive_poses, drive_scene, generate_dataset
from md2.data.synth.render import lidar_scan, render_view, right_camera_pose
from md2.errors import UsageError
from tests.cli.test_app import run_md2
from tests.conftest import SYNTH_RAW

DATE = "2011_09_26"
FRAMES, WIDTH, HEIGHT = SYNTH_RAW.frames, SYNTH_RAW.width, SYNTH_RAW.height
CAMERA = Camera(WIDTH, HEIGHT)


def image(root, drive: int, frame: int, cam: int = 2) -> np.ndarray:
    with Image.open(root / drive_name(drive) / f"image_0{cam}" / "data" / f"{frame:010d}.png") as file:
        return np.asarray(file.convert("RGB"), dtype=np.float64) / 255


def rendered(root, drive: int, frame: int, cam: int = 2) -> np.ndarray:
    return np.load(root / drive_name(drive) / "rendered_depth" / f"image_0{cam}" / f"{frame:010d}.npy")


def warp_into_target(source, source_depth, target_depth, T, camera=CAMERA):
    """Source image sampled (bilinearly) where the target's pixels land in the source camera, given the target's
    depth and T (target camera -> source camera coordinates). Returns (warped (H, W, 3), usable mask): pixels
    that land inside the source image, at least 4 pixels from its border, and are not occluded there."""
    height, width = target_depth.shape
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    z = target_depth.astype(np.float64)
    points = np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z])
    moved = np.einsum("ij,jhw->ihw", T[:3, :3], points) + T[:3, 3, None, None]
    us = camera.fx * moved[0] / moved[2] + camera.cx
    vs = camera.fy * moved[1] / moved[2] + camera.cy
    usable = (moved[2] > 0) & (us >= 4) & (us <= width - 5) & (vs >= 4) & (vs <= height - 5)
    us, vs = np.clip(us, 0, width - 1.001), np.clip(vs, 0, height - 1.001)
    u0, v0 = np.floor(us).astype(int), np.floor(vs).astype(int)
    a, b = (us - u0)[..., None], (vs - v0)[..., None]
    warped = ((1 - a) * (1 - b) * source[v0, u0] + a * (1 - b) * source[v0, u0 + 1]
              + (1 - a) * b * source[v0 + 1, u0] + a * b * source[v0 + 1, u0 + 1])
    seen = source_depth[np.round(vs).astype(int), np.round(us).astype(int)]
    usable &= np.abs(seen - moved[2]) < 0.02 * moved[2]  # the same surface, not an occluder
    return warped, usable


# --- layout ---------------------------------------------------------------------------------------------------------

def test_raw_layout_has_every_file_with_kitti_names(synth_raw):
    for drive in range(SYNTH_RAW.drives):
        folder = synth_raw / drive_name(drive)
        assert folder.parent.name == DATE and folder.name == f"{DATE}_drive_{drive + 1:04d}_sync"
        names = [f"{frame:010d}" for frame in range(FRAMES)]
        for sub, ext in (("image_02/data", "png"), ("image_03/data", "png"), ("velodyne_points/data", "bin"),
                         ("rendered_depth/image_02", "npy"), ("rendered_depth/image_03", "npy"),
                         ("proj_depth/groundtruth/image_02", "png"), ("proj_depth/groundtruth/image_03", "png")):
            assert sorted(p.name for p in (folder / sub).iterdir()) == [f"{n}.{ext}" for n in names], sub
    assert not list(synth_raw.rglob("*.tmp*")), "temporary files left behind"


def test_calibration_files_have_kitti_s_keys(synth_raw):
    cam = read_calib_file(synth_raw / DATE / "calib_cam_to_cam.txt")
    expected = {"corner_dist"} | {f"{k}_0{i}" for i in range(4)
                                  for k in ("S", "K", "D", "R", "T", "S_rect", "R_rect", "P_rect")}
    assert set(cam) == expected
    assert set(read_calib_file(synth_raw / DATE / "calib_velo_to_cam.txt")) == {"R", "T", "delta_f", "delta_c"}
    assert set(read_calib_file(synth_raw / DATE / "calib_imu_to_velo.txt")) == {"R", "T"}
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        assert (synth_raw / DATE / name).read_text().startswith("calib_time: ")


def test_calibration_matches_md2_s_intrinsics_and_kitti_s_baseline(synth_raw):
    cam = read_calib_file(synth_raw / DATE / "calib_cam_to_cam.txt")
    p2, p3 = cam["P_rect_02"].reshape(3, 4), cam["P_rect_03"].reshape(3, 4)
    # KITTI's P gives 1-based pixels (the reference subtracts 1), so the principal point is md2's cx, cy + 1.
    np.testing.assert_allclose(p2[:, :3], [[0.58 * WIDTH, 0, 0.5 * WIDTH + 1], [0, 1.92 * HEIGHT, 0.5 * HEIGHT + 1],
                                           [0, 0, 1]])
    assert p3[0, 3] - p2[0, 3] == pytest.approx(-0.58 * WIDTH * 0.54)
    assert cam["S_rect_02"].tolist() == [WIDTH, HEIGHT]
    R_rect = cam["R_rect_00"].reshape(3, 3)
    np.testing.assert_allclose(R_rect @ R_rect.T, np.eye(3), atol=1e-9)
    assert 0 < np.abs(R_rect - np.eye(3)).max() < 0.05  # a small real rotation, so forgetting it shows


def test_split_files_use_frames_with_both_neighbours(synth_raw):
    splits = synth_raw / "splits" / "synth"
    read = {name: (splits / f"{name}_files.txt").read_text().splitlines() for name in ("train", "val", "test")}
    pattern = re.compile(rf"^{DATE}/{DATE}_drive_000[12]_sync [1-6] [lr]$")
    assert all(pattern.match(line) for lines in read.values() for line in lines)
    everything = {f"{drive_name(d)} {f} {s}" for d in range(2) for f in range(1, FRAMES - 1) for s in "lr"}
    assert set(read["train"]) | set(read["val"]) == everything and not set(read["train"]) & set(read["val"])
    assert read["test"] == [f"{drive_name(d)} {f} l" for d in range(2) for f in range(1, FRAMES - 1)]


def test_odometry_layout_poses_and_splits(synth_raw):
    for drive, sequence in enumerate(("09", "10")):
        folder = synth_raw / "sequences" / sequence
        assert sorted(p.name for p in (folder / "image_3").iterdir()) == [f"{k:06d}.png" for k in range(FRAMES)]
        assert (folder / "image_2" / "000004.png").read_bytes() == \
            (synth_raw / drive_name(drive) / "image_02" / "data" / "0000000004.png").read_bytes()
        assert set(read_calib_file(folder / "calib.txt")) == {"P0", "P1", "P2", "P3", "Tr"}
        assert len((folder / "times.txt").read_text().splitlines()) == FRAMES
        rows = np.loadtxt(synth_raw / "poses" / f"{sequence}.txt")
        assert rows.shape == (FRAMES, 12)
        np.testing.assert_allclose(rows.reshape(-1, 3, 4), drive_poses(0, drive, FRAMES)[:, :3], atol=1e-9)
    odom = synth_raw / "splits" / "odom"
    assert (odom / "test_files_09.txt").read_text().splitlines() == [f"9 {k} l" for k in range(FRAMES - 1)]
    train = (odom / "train_files.txt").read_text().splitlines()
    assert train and all(re.match(r"^(9|10) [1-6] [lr]$", line) for line in train)


# --- motion and geometry ----------------------------------------------------------------------------------------------

def test_camera_moves_forward_about_a_metre_per_frame_with_gentle_turns():
    poses = drive_poses(3, 1, 40)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    rotations = poses[:, :3, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (40, 3, 3)),
                               atol=1e-12)
    steps = np.linalg.inv(poses[:-1]) @ poses[1:]  # frame k+1 in frame k's camera coordinates
    assert np.all((steps[:, 2, 3] > 0.85) & (steps[:, 2, 3] < 1.15))  # forward (z) about a metre
    assert np.all(np.abs(steps[:, 0, 3]) < 0.05) and np.all(np.abs(steps[:, 1, 3]) < 1e-9)  # flat road
    yaw = np.arctan2(steps[:, 0, 2], steps[:, 2, 2])
    assert np.all(np.abs(yaw) < 0.03) and np.abs(yaw).max() > 0.001  # gentle, but turning
    assert not np.allclose(poses, drive_poses(3, 0, 40))  # drives differ


def test_every_depth_is_finite_and_within_80_m_for_a_20_frame_drive():
    scene, camera = drive_scene(5, 0, 20), Camera(64, 24)
    for pose in scene.poses[::3]:
        for view in (pose, right_camera_pose(pose)):
            depth = render_view(scene, camera, view)[1]
            assert np.isfinite(depth).all() and depth.min() > 0.5 and depth.max() < 80


def test_long_drives_keep_every_camera_inside_the_backdrop():
    scene = drive_scene(0, 0, 250)
    depth = render_view(scene, Camera(32, 12), scene.poses[-1])[1]
    assert np.isfinite(depth).all() and depth.min() > 0


def test_lidar_scan_format_beams_and_ground_height(synth_raw):
    path = synth_raw / drive_name(0) / "velodyne_points" / "data" / "0000000003.bin"
    assert path.stat().st_size % 16 == 0
    scan = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    assert ((scan[:, 3] >= 0) & (scan[:, 3] <= 1)).all() and np.ptp(scan[:, 3]) > 0.1
    elevation = np.degrees(np.arctan2(scan[:, 2], np.hypot(scan[:, 0], scan[:, 1])))
    assert elevation.min() > -25.0 and elevation.max() < 2.1
    assert len(np.unique(np.round(elevation, 1))) == 64
    azimuth = np.degrees(np.arctan2(scan[:, 1], scan[:, 0]))
    assert np.histogram(azimuth, bins=12, range=(-180, 180))[0].min() > 1000  # all around
    # The lidar sits 1.73 m above the ground (camera 1.65 m, lidar 8 cm higher): the lowest points are ground.
    assert scan[:, 2].min() == pytest.approx(-1.73, abs=1e-4)


@pytest.mark.parametrize("cam", [2, 3])
def test_lidar_projection_agrees_with_the_rendered_depth(synth_raw, cam):
    for drive, frame in ((0, 0), (0, 5), (1, 3)):
        scan = synth_raw / drive_name(drive) / "velodyne_points" / "data" / f"{frame:010d}.bin"
        lidar = generate_depth_map(synth_raw / DATE, scan, cam=cam)
        truth = rendered(synth_raw, drive, frame, cam)
        valid = lidar > 0
        assert valid.mean() > 0.2
        relative = np.abs(lidar[valid] - truth[valid]) / truth[valid]
        assert np.median(relative) < 0.01 and np.mean(relative < 0.05) > 0.9


def test_lidar_points_lie_on_the_rendered_surfaces_at_md2_s_pixel_coordinates(synth_raw):
    """Pixel (u, v), u the column index, is the ray through u = fx X / Z + cx exactly: inverse depth is linear in
    (u, v) on a plane, so bilinear interpolation of the rendered 1/z at a point's projection is exact there."""
    velo = read_calib_file(synth_raw / DATE / "calib_velo_to_cam.txt")
    R_rect = read_calib_file(synth_raw / DATE / "calib_cam_to_cam.txt")["R_rect_00"].reshape(3, 3)
    scan = load_velodyne_points(synth_raw / drive_name(0) / "velodyne_points" / "data" / "0000000002.bin")
    points = R_rect @ (velo["R"].reshape(3, 3) @ scan[:, :3].T.astype(np.float64) + velo["T"][:, None])
    u = CAMERA.fx * points[0] / points[2] + CAMERA.cx
    v = CAMERA.fy * points[1] / points[2] + CAMERA.cy
    inside = (points[2] > 0) & (u >= 0) & (u < WIDTH - 1) & (v >= 0) & (v < HEIGHT - 1)
    u, v, z = u[inside], v[inside], points[2, inside]
    inverse = 1 / rendered(synth_raw, 0, 2).astype(np.float64)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    a, b = u - u0, v - v0
    interpolated = ((1 - a) * (1 - b) * inverse[v0, u0] + a * (1 - b) * inverse[v0, u0 + 1]
                    + (1 - a) * b * inverse[v0 + 1, u0] + a * b * inverse[v0 + 1, u0 + 1])
    relative = np.abs(interpolated * z - 1)
    assert len(z) > 2000 and np.median(relative) < 1e-5 and np.mean(relative < 1e-4) > 0.8


def test_camera_is_1_65_m_above_a_level_ground(synth_raw):
    """Ground pixels below the horizon: z = fy * 1.65 / (v - cy), in every frame."""
    rows = np.arange(HEIGHT - 12, HEIGHT)
    expected = CAMERA.fy * 1.65 / (rows - CAMERA.cy)
    for frame in (0, 7):
        depth = rendered(synth_raw, 0, frame)[rows][:, WIDTH // 2 - 20:WIDTH // 2 + 20]  # the road ahead
        np.testing.assert_allclose(np.median(depth, axis=1), expected, rtol=1e-5)


def test_depth_benchmark_pngs_are_the_sparse_lidar_projection(synth_raw):
    folder = synth_raw / drive_name(1)
    for cam in (2, 3):
        with Image.open(folder / "proj_depth" / "groundtruth" / f"image_0{cam}" / "0000000005.png") as file:
            stored = np.asarray(file)
        assert stored.dtype == np.uint16 and stored.shape == (HEIGHT, WIDTH)
        lidar = generate_depth_map(synth_raw / DATE, folder / "velodyne_points" / "data" / "0000000005.bin", cam=cam)
        np.testing.assert_array_equal(stored, np.round(lidar * 256).astype(np.uint16))
        assert 0.2 < np.mean(stored > 0) < 0.8


def test_a_point_in_image_03_is_shifted_by_f_times_baseline_over_depth(synth_raw):
    left_depth, right_depth = rendered(synth_raw, 0, 4, 2), rendered(synth_raw, 0, 4, 3)
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    u_right = u - CAMERA.fx * BASELINE / left_depth
    inside = np.round(u_right) >= 0
    seen = right_depth[v[inside], np.round(u_right[inside]).astype(int)]
    assert np.median(np.abs(seen - left_depth[inside]) / left_depth[inside]) < 0.01


@pytest.mark.parametrize("kind", ["stereo", "next frame", "previous frame"])
def test_warping_with_true_pose_and_depth_reproduces_the_target(synth_raw, kind):
    """Self-supervision's premise: a point looks the same in both cameras and in neighbouring frames."""
    drive, frame = 1, 4
    poses = drive_poses(SYNTH_RAW.seed, drive, FRAMES)
    target, target_depth = image(synth_raw, drive, frame), rendered(synth_raw, drive, frame)
    if kind == "stereo":
        source, source_depth = image(synth_raw, drive, frame, 3), rendered(synth_raw, drive, frame, 3)
        T = np.eye(4)
        T[0, 3] = -BASELINE
    else:
        other = frame + (1 if kind == "next frame" else -1)
        source, source_depth = image(synth_raw, drive, other), rendered(synth_raw, drive, other)
        T = np.linalg.inv(poses[other]) @ poses[frame]
    warped, usable = warp_into_target(source, source_depth, target_depth, T)
    assert usable.mean() > 0.5
    error = np.abs(warped - target).mean(-1)[usable]
    wrong, wrong_usable = warp_into_target(source, source_depth, target_depth * 1.3, T)
    assert error.mean() < 0.02 and np.median(error) < 0.01
    assert np.abs(wrong - target).mean(-1)[usable & wrong_usable].mean() > 2.5 * error.mean()
    assert np.abs(source - target).mean() > 3 * error.mean()  # the texture is informative: motion shows


# --- determinism, options, speed, CLI -------------------------------------------------------------------------------

def digest(root):
    return hashlib.sha256(b"".join(p.relative_to(root).as_posix().encode() + p.read_bytes()
                                   for p in sorted(root.rglob("*")) if p.is_file())).hexdigest()


def test_same_seed_writes_the_same_bytes_and_another_seed_differs(tmp_path):
    options = dict(drives=2, frames=3, width=48, height=16, depth_benchmark=True, odometry=True)
    first = generate_dataset(tmp_path / "a", SynthOptions(seed=3, **options))
    second = generate_dataset(tmp_path / "b", seed=3, **options)
    other = generate_dataset(tmp_path / "c", seed=4, **options)
    assert digest(first) == digest(second) != digest(other)
    assert image(first, 0, 1).tolist() != image(first, 1, 1).tolist()  # drives differ too


def test_parallel_processes_write_the_same_bytes(tmp_path, monkeypatch):
    import md2.data.synth.writer as writer

    options = SynthOptions(drives=2, frames=3, width=48, height=16, odometry=True)
    sequential = generate_dataset(tmp_path / "a", options, jobs=1)
    monkeypatch.setattr(writer, "PARALLEL_FROM", 0)  # parallel even for this tiny dataset
    done = []
    parallel = generate_dataset(tmp_path / "b", options, on_frame=lambda: done.append(1), jobs=2)
    assert digest(sequential) == digest(parallel) and len(done) == 6


@pytest.mark.parametrize("fields, message", [({"frames": 2}, "frames"), ({"drives": 0}, "drives"),
                                             ({"seed": -1}, "seed"), ({"ext": "bmp"}, "bmp"),
                                             ({"width": 4}, "width")])
def test_bad_options_are_usage_errors(fields, message):
    with pytest.raises(UsageError, match=message):
        SynthOptions(**fields)


def test_a_kitti_size_frame_renders_in_well_under_a_second():
    scene, camera = drive_scene(0, 0, 12), Camera(1242, 375)
    render_view(scene, camera, scene.poses[0])  # warm-up (cached rays)
    start = time.process_time()
    render_view(scene, camera, scene.poses[6])
    render_view(scene, camera, right_camera_pose(scene.poses[6]))
    lidar_scan(scene, scene.poses[6])
    assert time.process_time() - start < 2.0  # ~0.45 s CPU on one core; generous for loaded machines


def test_full_size_fixture_has_kitti_s_shapes(synth_full_size):
    assert rendered(synth_full_size, 0, 1).shape == (375, 1242)
    assert image(synth_full_size, 0, 1).shape == (375, 1242, 3)
    scan = synth_full_size / drive_name(0) / "velodyne_points" / "data" / "0000000001.bin"
    assert np.count_nonzero(generate_depth_map(synth_full_size / DATE, scan)) > 10000


def test_cli_writes_a_jpeg_dataset_and_refuses_too_few_frames(tmp_path):
    result = run_md2("synth", str(tmp_path / "d"), "--drives", "1", "--frames", "3", "--width", "64", "--height", "24",
                     "--jpeg", "--odometry", "--depth-benchmark", "--seed", "2")
    assert result.returncode == 0, result.stderr
    assert "wrote 1 drives x 3 frames" in result.stderr
    with Image.open(tmp_path / "d" / drive_name(0) / "image_03" / "data" / "0000000002.jpg") as file:
        assert file.format == "JPEG" and file.size == (64, 24)
    assert (tmp_path / "d" / "sequences" / "09" / "image_2" / "000002.jpg").is_file()
    assert (tmp_path / "d" / "splits" / "synth" / "test_files.txt").read_text() == f"{drive_name(0)} 1 l\n"
    bad = run_md2("synth", str(tmp_path / "e"), "--frames", "2")
    assert bad.returncode == 2 and "frames" in bad.stderr and not (tmp_path / "e").exists()
