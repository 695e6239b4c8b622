"""Point clouds (md2.core.pointcloud) on md2's synthetic scenes: exact depth, intrinsics and poses."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from md2.core.pointcloud.backproject import CameraPoints, depth_from_disparity
from md2.core.pointcloud.intrinsics import CameraChoice, camera_choice, exif_focal_35mm
from md2.core.pointcloud.photo import CloudOptions, write_photo_cloud
from md2.core.pointcloud.ply import write_ply
from md2.data.synth import drive_poses
from md2.data.synth.scene import CAMERA_HEIGHT
from md2.data.synth.writer import drive_scene
from md2.errors import UsageError
from tests.conftest import SYNTH_RAW, SYNTH_RAW_POSES

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
PLY_TYPES = {"float": "<f4", "uchar": "u1"}


def read_ply(path: Path) -> tuple[list[str], np.ndarray]:
    """An independent reader of binary little-endian PLY vertices: (header lines, structured array)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    elements = [line for line in header if line.startswith("element ")]
    assert len(elements) == 1 and elements[0].split()[1] == "vertex"
    count = int(elements[0].split()[2])
    fields = [(line.split()[2], PLY_TYPES[line.split()[1]]) for line in header if line.startswith("property ")]
    dtype = np.dtype(fields)
    assert len(data) - end == count * dtype.itemsize, "the body holds exactly the vertices announced"
    return header, np.frombuffer(data, dtype, count=count, offset=end)


def xyz(vertices: np.ndarray) -> np.ndarray:
    return np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1).astype(np.float64)


def rgb(vertices: np.ndarray) -> np.ndarray:
    return np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1)


def distance_to_scene(scene, points: np.ndarray) -> np.ndarray:
    """(N,) distance from world points to the nearest surface: ground plane, box surfaces, backdrop sphere."""
    best = np.abs(points[:, 1] - CAMERA_HEIGHT)
    best = np.minimum(best, np.abs(np.linalg.norm(points - scene.backdrop_centre, axis=1) - scene.backdrop_radius))
    boxes = scene.boxes
    for centre, half, yaw in zip(boxes.centre, boxes.half, boxes.yaw):
        c, s = math.cos(yaw), math.sin(yaw)
        d = points - centre
        local = np.stack([c * d[:, 0] - s * d[:, 2], d[:, 1], s * d[:, 0] + c * d[:, 2]], axis=1)
        q = np.abs(local) - half
        signed = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
        best = np.minimum(best, np.abs(signed))
    return best


def synth_frame(root: Path, frame: int) -> tuple[np.ndarray, np.ndarray]:
    depth = np.load(root / DRIVE / "rendered_depth" / "image_02" / f"{frame:010d}.npy")
    image = np.asarray(Image.open(root / DRIVE / "image_02" / "data" / f"{frame:010d}.png").convert("RGB"))
    return depth, image


@pytest.mark.parametrize("frame", [0, 5])
def test_cloud_of_exact_depth_lands_on_the_scene_surfaces(synth_raw, tmp_path, frame):
    depth, image = synth_frame(synth_raw, frame)
    camera = CameraChoice().resolve(SYNTH_RAW.width, SYNTH_RAW.height)
    assert camera.source == "kitti"
    cloud = CameraPoints(depth, image, camera)
    path = write_ply(tmp_path / "f.ply", cloud.count(), cloud.chunks(), ["test"])
    _, vertices = read_ply(path)
    assert len(vertices) == depth.size
    pose = drive_poses(**SYNTH_RAW_POSES, index=0)[frame]
    world = xyz(vertices) @ pose[:3, :3].T + pose[:3, 3]
    scene = drive_scene(SYNTH_RAW.seed, 0, SYNTH_RAW.frames)
    distance = distance_to_scene(scene, world)
    assert np.all(distance < 2e-6 * np.maximum(1.0, vertices["z"]) + 1e-5)
    np.testing.assert_array_equal(rgb(vertices), image.reshape(-1, 3))  # row-major, colours from the photo


def test_stride_and_max_depth_keep_every_nth_pixel_nearer_than_the_limit(synth_raw, tmp_path):
    depth, image = synth_frame(synth_raw, 0)
    camera = CameraChoice().resolve(SYNTH_RAW.width, SYNTH_RAW.height)
    cloud = CameraPoints(depth, image, camera, stride=3, max_depth=20.0)
    _, vertices = read_ply(write_ply(tmp_path / "s.ply", cloud.count(), cloud.chunks()))
    kept = depth[::3, ::3]
    assert len(vertices) == int((kept <= 20.0).sum()) > 0
    assert vertices["z"].max() <= 20.0
    np.testing.assert_array_equal(np.sort(vertices["z"]), np.sort(kept[kept <= 20.0]))


def test_cloud_is_streamed_in_bands_with_the_same_points(synth_raw, monkeypatch):
    from md2.core.pointcloud import backproject

    depth, image = synth_frame(synth_raw, 2)
    camera = CameraChoice().resolve(SYNTH_RAW.width, SYNTH_RAW.height)
    whole = [np.concatenate(part) for part in zip(*CameraPoints(depth, image, camera, 2).chunks())]
    monkeypatch.setattr(backproject, "BAND_PIXELS", 300)  # a few rows per band
    chunks = list(CameraPoints(depth, image, camera, 2).chunks())
    assert len(chunks) > 5 and max(len(points) for points, _ in chunks) <= 300
    for joined, expected in zip(zip(*chunks), whole):
        np.testing.assert_array_equal(np.concatenate(joined), expected)


def test_ply_header_names_units_and_intrinsics_and_the_picture_is_written(synth_raw, tmp_path):
    depth, image = synth_frame(synth_raw, 1)
    photo = tmp_path / "photo.png"
    Image.fromarray(image).save(photo)
    disp = (1 / depth - 0.01) / (10 - 0.01)  # disp_to_depth inverted for min 0.1, max 100
    options = CloudOptions(stride=2, depth_factor=5.4, units="metres (stereo model, depth x 5.4)")
    ply, picture = write_photo_cloud(tmp_path / "photo", photo, disp.astype(np.float32), options)
    header, vertices = read_ply(ply)
    assert "comment units: metres (stereo model, depth x 5.4)" in header
    assert any(line.startswith("comment intrinsics: fx 148.48, fy 153.60") and "KITTI" in line for line in header)
    assert [line.split()[-1] for line in header if line.startswith("property")] == \
        ["x", "y", "z", "red", "green", "blue"]
    np.testing.assert_allclose(np.sort(vertices["z"]), np.sort(5.4 * depth[::2, ::2].ravel()), rtol=1e-5)
    with Image.open(picture) as shown:
        assert shown.format == "PNG" and shown.size == (480, 320)
        drawn = np.asarray(shown.convert("RGB"))
    assert (drawn != drawn[0, 0]).any(axis=2).mean() > 0.2  # the cloud covers a good part of the view
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_depth_from_disparity_is_disp_to_depth():
    torch = pytest.importorskip("torch")
    from md2.core.geometry import disp_to_depth

    disp = np.random.default_rng(0).random((7, 9), dtype=np.float32)
    expected = disp_to_depth(torch.from_numpy(disp), 0.1, 100.0)[1].numpy()
    np.testing.assert_allclose(depth_from_disparity(disp, 0.1, 100.0), expected, rtol=1e-6)


# -- intrinsics ---------------------------------------------------------------------------------------------
def test_intrinsics_given_win_over_fov_exif_and_kitti():
    camera = camera_choice("700,710.5,320,240", None).resolve(640, 480, exif_focal_35mm=28.0)
    assert (camera.fx, camera.fy, camera.cx, camera.cy, camera.source) == (700, 710.5, 320, 240, "given")


def test_fov_gives_the_horizontal_focal_length():
    camera = camera_choice(None, 90.0).resolve(640, 480, exif_focal_35mm=28.0)
    assert camera.source == "fov"
    assert camera.fx == pytest.approx(320.0) and camera.fy == pytest.approx(320.0)
    assert (camera.cx, camera.cy) == (320.0, 240.0)


def test_exif_35mm_focal_length_scales_with_the_diagonal(tmp_path):
    path = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 36  # FocalLengthIn35mmFilm
    Image.fromarray(np.zeros((400, 600, 3), np.uint8)).save(path, exif=exif)
    assert exif_focal_35mm(path) == 36.0
    camera = CameraChoice().resolve_for(path, 600, 400)
    assert camera.source == "exif"
    assert camera.fx == pytest.approx(600.0) and camera.fy == pytest.approx(600.0)  # 3:2 = the 36 x 24 frame


@pytest.mark.parametrize("content", ["plain", "zero", "garbage"])
def test_photo_without_a_usable_exif_focal_length_gets_kittis_intrinsics(tmp_path, content):
    path = tmp_path / "plain.jpg"
    exif = Image.Exif()
    if content != "plain":
        exif.get_ifd(0x8769)[0xA405] = 0 if content == "zero" else "abc"
    Image.fromarray(np.zeros((80, 256, 3), np.uint8)).save(path, exif=exif)
    camera = CameraChoice().resolve_for(path, 256, 80)
    assert camera.source == "kitti"
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == pytest.approx((0.58 * 256, 1.92 * 80, 128, 40))


@pytest.mark.parametrize("intrinsics, fov", [
    (None, 0.0), (None, -10.0), (None, 180.0), (None, float("nan")), ("nan,700,320,240", None),
    ("-700,700,320,240", None), ("700,0,320,240", None), ("700,700,320", None), ("a,b,c,d", None),
    ("700,700,inf,240", None), ("700,700,320,240", 60.0)])
def test_bad_intrinsics_are_usage_errors(intrinsics, fov):
    with pytest.raises(UsageError) as error:
        camera_choice(intrinsics, fov)
    assert "\n" not in str(error.value)


# -- fusion -------------------------------------------------------------------------------------------------
def test_fused_cloud_from_exact_poses_puts_a_static_point_seen_twice_within_a_voxel(synth_raw, tmp_path):
    from md2.core.pointcloud.fuse import VoxelCloud, first_per_voxel, points_in_first_camera

    voxel, near = 0.1, 12.0
    camera = CameraChoice().resolve(SYNTH_RAW.width, SYNTH_RAW.height)
    poses = drive_poses(**SYNTH_RAW_POSES, index=0)  # camera k -> the first camera
    depth0, image0 = synth_frame(synth_raw, 0)
    depth1, image1 = synth_frame(synth_raw, 1)
    seen1, _ = points_in_first_camera(CameraPoints(depth1, image1, camera, max_depth=near), poses[1])
    # where frame 0 sees the same surface: project into frame 0 and interpolate its exact inverse depth there
    # (affine in u, v on a plane, so exact on the ground and the boxes' faces), away from depth edges
    u = camera.fx * seen1[:, 0] / seen1[:, 2] + camera.cx
    v = camera.fy * seen1[:, 1] / seen1[:, 2] + camera.cy
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    inside = (u0 >= 0) & (u0 < SYNTH_RAW.width - 1) & (v0 >= 0) & (v0 < SYNTH_RAW.height - 1) & (seen1[:, 2] > 0)
    u, v, u0, v0, seen1 = u[inside], v[inside], u0[inside], v0[inside], seen1[inside]
    corners = np.stack([depth0[v0, u0], depth0[v0, u0 + 1], depth0[v0 + 1, u0], depth0[v0 + 1, u0 + 1]], 1)
    fu, fv = u - u0, v - v0
    inverse = ((1 - fu) * (1 - fv) / corners[:, 0] + fu * (1 - fv) / corners[:, 1] + (1 - fu) * fv / corners[:, 2]
               + fu * fv / corners[:, 3])
    z0 = 1 / inverse
    seen0 = np.stack([(u - camera.cx) / camera.fx * z0, (v - camera.cy) / camera.fy * z0, z0], 1)
    one_surface = corners.max(axis=1) < 1.2 * corners.min(axis=1)
    visible = one_surface & (np.abs(z0 - seen1[:, 2]) < 0.05 * z0)  # not hidden behind something in frame 0
    gap = np.linalg.norm(seen0 - seen1, axis=1)[visible]
    assert visible.mean() > 0.6
    assert np.mean(gap < 1e-4) > 0.9  # the same static point, to float precision (the rest: depth edges)
    assert np.quantile(gap, 0.99) < voxel

    cloud = VoxelCloud(voxel)
    frames = [points_in_first_camera(CameraPoints(depth, image, camera, max_depth=near), pose)
              for depth, image, pose in ((depth0, image0, poses[0]), (depth1, image1, poses[1]))]
    first = cloud.add(*first_per_voxel(*frames[0], voxel))
    alone = len(first_per_voxel(*frames[1], voxel)[0])
    second = cloud.add(*first_per_voxel(*frames[1], voxel))
    assert len(cloud) == first + second and second < 0.7 * alone  # most of frame 1's voxels were frame 0's
    _, points = read_ply(write_ply(tmp_path / "fused.ply", len(cloud), cloud.chunks()))
    assert len(np.unique(np.floor(xyz(points) / voxel), axis=0)) == len(points)  # one point per voxel


def test_chaining_evaluate_poses_relative_transforms_gives_each_camera_in_the_first():
    from md2.core.evaluation.pose import gt_relative_poses
    from md2.core.pointcloud.fuse import chain

    poses = drive_poses(**SYNTH_RAW_POSES, index=1)
    to_first = np.eye(4)
    for frame, step in enumerate(gt_relative_poses(poses), start=1):
        to_first = chain(to_first, step)
        np.testing.assert_allclose(to_first, poses[frame], atol=1e-9)
