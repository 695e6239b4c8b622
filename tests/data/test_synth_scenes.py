"""md2's synthetic KITTI scenes: layout, determinism, and geometric consistency (what self-supervision needs)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from md2.core.geometry import BackprojectDepth, Project3D, warp
from md2.data.calib import generate_depth_map, read_calib_file
from md2.data.synth import SynthOptions, drive_name, drive_poses, generate_dataset
from md2.data.synth.render import Camera
from tests.cli.test_app import run_md2

DRIVE = drive_name(0)


def load(root, path):
    with Image.open(root / path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255


def test_layout_and_split_files(synth_raw):
    drive = synth_raw / DRIVE
    for sub in ("image_02/data", "image_03/data", "velodyne_points/data", "rendered_depth/image_02",
                "proj_depth/groundtruth/image_02"):
        assert (drive / sub).is_dir(), sub
    assert (drive / "image_02" / "data" / "0000000007.png").is_file()
    assert sorted(p.name for p in (synth_raw / "2011_09_26").glob("calib_*.txt")) == [
        "calib_cam_to_cam.txt", "calib_imu_to_velo.txt", "calib_velo_to_cam.txt"]
    lines = (synth_raw / "splits" / "synth" / "train_files.txt").read_text().splitlines()
    folder, frame, side = lines[0].split()
    assert folder == DRIVE and 1 <= int(frame) <= 6 and side in "lr"
    test = (synth_raw / "splits" / "synth" / "test_files.txt").read_text().splitlines()
    assert len(test) == 2 * 6 and all(line.endswith(" l") for line in test)
    assert (synth_raw / "sequences" / "09" / "image_2" / "000000.png").is_file()
    assert (synth_raw / "splits" / "odom" / "test_files_09.txt").read_text().splitlines()[0] == "9 0 l"


def test_odometry_poses_are_the_camera_poses(synth_raw):
    rows = np.loadtxt(synth_raw / "poses" / "09.txt")
    assert rows.shape == (8, 12)
    poses = drive_poses(0, 0, 8)
    np.testing.assert_allclose(rows.reshape(8, 3, 4), poses[:, :3, :], atol=1e-9)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.all((steps > 0.8) & (steps < 1.2))  # about one metre per frame


def test_lidar_projection_agrees_with_rendered_depth(synth_raw):
    drive = synth_raw / DRIVE
    lidar = generate_depth_map(synth_raw / "2011_09_26", drive / "velodyne_points/data/0000000003.bin", cam=2)
    rendered = np.load(drive / "rendered_depth/image_02/0000000003.npy")
    valid = lidar > 0
    assert valid.sum() > 300
    relative = np.abs(lidar[valid] - rendered[valid]) / rendered[valid]
    assert np.median(relative) < 0.01


def test_calibration_baseline_is_kitti_s(synth_raw):
    calib = read_calib_file(synth_raw / "2011_09_26" / "calib_cam_to_cam.txt")
    p2, p3 = calib["P_rect_02"].reshape(3, 4), calib["P_rect_03"].reshape(3, 4)
    assert (p2[0, 3] - p3[0, 3]) / p2[0, 0] == pytest.approx(0.54)
    assert p2[0, 0] == pytest.approx(0.58 * 256) and p2[1, 1] == pytest.approx(1.92 * 80)


def warp_error(root, source, target, depth, T, width=256, height=80):
    """Mean absolute photometric error of ``source`` warped into ``target`` with depth and T (interior)."""
    camera = Camera(width, height)
    K = torch.eye(4)[None]
    K[0, 0, 0], K[0, 1, 1], K[0, 0, 2], K[0, 1, 2] = camera.fx, camera.fy, camera.cx, camera.cy
    points = BackprojectDepth(height, width)(torch.from_numpy(depth)[None, None], torch.linalg.inv(K))
    grid = Project3D(height, width)(points, K, torch.from_numpy(T).float()[None])
    warped = warp(torch.from_numpy(source).permute(2, 0, 1)[None], grid)[0].permute(1, 2, 0).numpy()
    inside = (np.abs(grid[0].numpy()) < 0.95).all(-1)
    return np.abs(warped - target)[inside].mean()


def test_stereo_pair_is_consistent_with_the_rendered_depth(synth_raw):
    left = load(synth_raw, f"{DRIVE}/image_02/data/0000000004.png")
    right = load(synth_raw, f"{DRIVE}/image_03/data/0000000004.png")
    depth = np.load(synth_raw / DRIVE / "rendered_depth/image_02/0000000004.npy")
    T = np.eye(4)
    T[0, 3] = -0.54  # left camera -> right camera coordinates
    good = warp_error(synth_raw, right, left, depth, T)
    wrong = warp_error(synth_raw, right, left, depth * 2, T)
    assert good < 0.03 and wrong > 1.5 * good


def test_consecutive_frames_are_consistent_with_the_true_pose(synth_raw):
    poses = drive_poses(0, 0, 8)
    target = load(synth_raw, f"{DRIVE}/image_02/data/0000000004.png")
    source = load(synth_raw, f"{DRIVE}/image_02/data/0000000005.png")
    depth = np.load(synth_raw / DRIVE / "rendered_depth/image_02/0000000004.npy")
    T = np.linalg.inv(poses[5]) @ poses[4]  # target camera -> source camera coordinates
    good = warp_error(synth_raw, source, target, depth, T)
    still = warp_error(synth_raw, source, target, depth, np.eye(4))
    assert good < 0.03 and still > 1.5 * good


def digest(root):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())).hexdigest()


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    options = SynthOptions(drives=1, frames=3, width=64, height=32, seed=3)
    a = generate_dataset(tmp_path / "a", options)
    b = generate_dataset(tmp_path / "b", options)
    c = generate_dataset(tmp_path / "c", SynthOptions(drives=1, frames=3, width=64, height=32, seed=4))
    assert digest(a) == digest(b) != digest(c)


def test_cli_writes_a_dataset(tmp_path):
    result = run_md2("synth", str(tmp_path / "d"), "--drives", "1", "--frames", "3", "--width", "64",
                     "--height", "32", "--jpeg", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / DRIVE / "image_02" / "data" / "0000000002.jpg").is_file()
