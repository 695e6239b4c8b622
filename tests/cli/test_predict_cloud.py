"""md2 predict --point-cloud end to end: checkpoints written by md2, photos written here, the md2 process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from md2.core.metric_scale import SCALE_FILE
from tests.cli.test_app import run_md2
from tests.cli.test_predict import street_image
from tests.core.test_pointcloud import read_ply
from tests.model_folders import random_model


@pytest.fixture(scope="module")
def mono_weights(tmp_path_factory) -> Path:
    """An md2-written mono ResNet-18 depth model at 64 x 192 (seed 1)."""
    return random_model(tmp_path_factory.mktemp("mono") / "weights_0", use_stereo=False, seed=1)


def test_point_cloud_writes_ply_and_picture_in_metres_for_a_stereo_model(tmp_path, weights):
    image = street_image(tmp_path / "street.jpg", width=300, height=100)
    result = run_md2("predict", str(image), "--weights", str(weights), "--point-cloud", "--stride", "2")
    assert result.returncode == 0, result.stderr
    header, vertices = read_ply(tmp_path / "street.ply")
    assert len(vertices) == 150 * 50
    assert "comment units: metres (stereo model, depth x 5.4)" in header
    assert vertices["z"].min() >= 5.4 * 0.1 * 0.999 and vertices["z"].max() <= 5.4 * 100 * 1.001
    pixels = np.asarray(Image.open(image).convert("RGB"))[::2, ::2].reshape(-1, 3)
    np.testing.assert_array_equal(np.stack([vertices[c] for c in ("red", "green", "blue")], 1), pixels)
    with Image.open(tmp_path / "street_cloud.png") as picture:
        assert picture.format == "PNG"
    assert "point clouds in metres (stereo model" in result.stderr
    assert "intrinsics: KITTI's scaled to the picture for 1" in result.stderr


def test_point_cloud_of_an_exif_photo_uses_its_35mm_focal_length(tmp_path, weights):
    path = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 36
    street_image(path, width=240, height=160)
    Image.open(path).save(path, exif=exif)
    result = run_md2("predict", str(path), "--weights", str(weights), "--point-cloud", "--max-depth", "30")
    assert result.returncode == 0, result.stderr
    header, vertices = read_ply(tmp_path / "exif.ply")
    assert any(line.startswith("comment intrinsics: fx 240.00, fy 240.00, cx 120.00, cy 80.00") for line in header)
    assert vertices["z"].max() <= 30.0
    assert "intrinsics: the EXIF 35 mm focal length for 1" in result.stderr


def test_given_intrinsics_place_the_points(tmp_path, weights):
    image = street_image(tmp_path / "k.png", width=200, height=80)
    result = run_md2("predict", str(image), "--weights", str(weights), "--point-cloud", "--intrinsics",
                     "100,50,10,20")
    assert result.returncode == 0, result.stderr
    _, vertices = read_ply(tmp_path / "k.ply")
    x, y, z = (vertices[c].astype(np.float64).reshape(80, 200) for c in "xyz")
    u, v = np.meshgrid(np.arange(200), np.arange(80))
    np.testing.assert_allclose(100 * x / z + 10, u, atol=1e-3)
    np.testing.assert_allclose(50 * y / z + 20, v, atol=1e-3)


def test_mono_model_uses_the_saved_scale_for_clouds_and_metric_depth(tmp_path, mono_weights):
    image = street_image(tmp_path / "m.jpg")
    plain = run_md2("predict", str(image), "--weights", str(mono_weights), "--point-cloud", "--pred-metric-depth",
                    "--output-dir", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    assert "network's units" in plain.stderr and "no metric scale" in plain.stderr
    scaled_weights = tmp_path / "scaled"
    scaled_weights.mkdir()
    for name in ("encoder.pth", "depth.pth"):
        (scaled_weights / name).write_bytes((mono_weights / name).read_bytes())
    (scaled_weights / SCALE_FILE).write_text(json.dumps({"scale": 30.0}))
    scaled = run_md2("predict", str(image), "--weights", str(scaled_weights), "--point-cloud",
                     "--pred-metric-depth", "--output-dir", str(tmp_path / "scaled"))
    assert scaled.returncode == 0, scaled.stderr
    assert "median scale 30" in scaled.stderr and "no metric scale" not in scaled.stderr
    _, before = read_ply(tmp_path / "plain" / "m.ply")
    _, after = read_ply(tmp_path / "scaled" / "m.ply")
    np.testing.assert_allclose(after["z"], 30.0 * before["z"], rtol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "scaled" / "m_depth.npy"),
                               np.load(tmp_path / "plain" / "m_depth.npy") * 30.0 / 5.4, rtol=1e-5)


@pytest.mark.parametrize("options", [
    ["--fov", "0"], ["--fov", "nan"], ["--intrinsics", "nan,700,320,240"], ["--intrinsics", "-700,700,320,240"],
    ["--intrinsics", "700,700"], ["--max-depth", "-1"], ["--voxel", "0"], ["--stride", "0"],
    ["--fov", "60", "--intrinsics", "700,700,320,240"]])
def test_bad_point_cloud_options_are_usage_errors(tmp_path, weights, options):
    image = street_image(tmp_path / "b.jpg")
    result = run_md2("predict", str(image), "--weights", str(weights), "--point-cloud", *options)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.glob("b*.ply"))


def test_point_cloud_options_without_point_cloud_are_usage_errors(tmp_path, weights):
    image = street_image(tmp_path / "c.jpg")
    result = run_md2("predict", str(image), "--weights", str(weights), "--fov", "60")
    assert result.returncode == 2 and "--fov applies to --point-cloud" in result.stderr


# -- videos -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pose_weights(tmp_path_factory) -> Path:
    """A stereo-trained md2-written model with its pose network, ResNet-18 at 64 x 192 (seed 2)."""
    return random_model(tmp_path_factory.mktemp("posed") / "weights_0", use_stereo=True, seed=2, pose=True)


def test_video_point_cloud_fuses_its_frames_into_one_ply(tmp_path, synth_raw, pose_weights):
    from tests.core.test_video_predict import encode

    frames = sorted(next(synth_raw.glob("*/*_sync/image_02/data")).glob("*.png"))
    clip = encode(frames, tmp_path / "drive.mp4")
    result = run_md2("predict", str(clip), "--weights", str(pose_weights), "--point-cloud", "--voxel", "0.5",
                     "--stride", "2", "--every", "2", "-v")
    assert result.returncode == 0, result.stderr
    header, vertices = read_ply(tmp_path / "drive.ply")
    assert "comment md2 point cloud of drive.mp4: 4 frames fused with the pose network" in header
    assert "comment units: metres (stereo model, depth x 5.4)" in header
    assert 0 < len(vertices) <= 4 * 128 * 40
    cells = np.floor(np.stack([vertices[c] for c in "xyz"], 1).astype(np.float64) / 0.5)
    assert len(np.unique(cells, axis=0)) == len(vertices)  # one point per voxel
    assert (tmp_path / "drive_cloud.png").is_file() and (tmp_path / "drive_disp.mp4").is_file()
    assert "drive.ply" in result.stderr


def test_video_point_cloud_without_a_pose_network_is_one_line(tmp_path, synth_raw, weights):
    from tests.core.test_video_predict import encode

    frames = sorted(next(synth_raw.glob("*/*_sync/image_02/data")).glob("*.png"))
    clip = encode(frames[:3], tmp_path / "short.mp4")
    result = run_md2("predict", str(clip), "--weights", str(weights), "--point-cloud")
    assert result.returncode == 1 and "pose_encoder.pth" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "short_disp.mp4").exists()
