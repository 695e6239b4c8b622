"""Real KITTI frames through md2's readers and commands: the raw reader and the training data pipeline (mono,
camera 2 only: the right camera is absent), convert-jpeg on copies of the PNGs, predict, and a few training steps
of ``md2 train --dataset video`` with the real intrinsics (P_rect_02 of calib_cam_to_cam.txt)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, JpegImagePlugin

from md2.core.train.config import build_config
from md2.core.train.data import batches, build_dataset, make_loader
from md2.data.calib import generate_depth_map, read_calib_file
from md2.data.kitti import KITTI_K, KITTIRawDataset
from md2.errors import DataError
from tests.cli.test_app import run_md2
from tests.real.conftest import DATE, DRIVE, FRAMES, image_path, scan_path

HEIGHT, WIDTH = 64, 192


def lanczos(path: Path, scale: int = 0) -> torch.Tensor:
    """The reference's image at ``scale``: RGB, LANCZOS to W x H, then halvings, as (3, h, w) in [0, 1]."""
    with Image.open(path) as image:
        image = image.convert("RGB").resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    for level in range(1, scale + 1):
        image = image.resize((WIDTH // 2**level, HEIGHT // 2**level), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)


def folder_state(folder: Path) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())


def test_raw_reader_gives_real_frames_their_neighbours_and_lidar(kitti_real):
    dataset = KITTIRawDataset(kitti_real, [f"{DRIVE} 5 l"], HEIGHT, WIDTH, (0, -1, 1), img_ext=".png")
    sample = dataset.load_sample(0, flip=False)
    for frame_id, frame in ((0, 5), (-1, 4), (1, 6)):
        for scale in (0, 3):
            assert torch.equal(sample.color[frame_id][scale], lanczos(image_path(kitti_real, frame), scale))
    expected = generate_depth_map(kitti_real / DATE, scan_path(kitti_real, 5), cam=2).astype(np.float32)
    assert sample.depth_gt.shape == (1, 375, 1242)
    np.testing.assert_array_equal(sample.depth_gt[0].numpy(), expected)
    assert np.count_nonzero(expected) > 10000
    np.testing.assert_allclose(sample.K[0].numpy(), KITTI_K * [[WIDTH], [HEIGHT], [1], [1]], rtol=1e-6)


def test_stereo_on_the_real_drive_names_the_missing_right_camera(kitti_real):
    dataset = KITTIRawDataset(kitti_real, [f"{DRIVE} 5 l"], HEIGHT, WIDTH, (0, -1, 1), img_ext=".png",
                              use_stereo=True)
    with pytest.raises(DataError, match="image_03"):
        dataset[0]


def test_training_pipeline_batches_real_frames(kitti_real, tmp_path):
    splits = tmp_path / "splits" / "real"
    splits.mkdir(parents=True)
    (splits / "train_files.txt").write_text("".join(f"{DRIVE} {frame} l\n" for frame in range(1, 9)))
    (splits / "val_files.txt").write_text("".join(f"{DRIVE} {frame} l\n" for frame in (2, 7)))
    config = build_config({"data_path": str(kitti_real), "splits_dir": str(tmp_path / "splits"), "split": "real",
                           "png": True, "height": HEIGHT, "width": WIDTH, "batch_size": 4, "num_workers": 0,
                           "weights_init": "scratch", "log_dir": str(tmp_path / "logs"), "model_name": "run",
                           "num_epochs": 1}, modality="mono")
    train = build_dataset(config, "train", is_train=True)
    assert len(train) == 8
    loaded = list(batches(make_loader(train, config), epoch=0))
    assert len(loaded) == 2
    for batch in loaded:
        assert batch.color[0][0].shape == (4, 3, HEIGHT, WIDTH) and batch.color[-1][3].shape == (4, 3, 8, 24)
        assert batch.stereo_T is None and batch.depth_gt.shape == (4, 1, 375, 1242)
        assert all(0 <= batch.color_aug[f][0].min() <= batch.color_aug[f][0].max() <= 1 for f in (0, -1, 1))
    # Each training frame appears once per epoch, unflipped or mirrored.
    for batch in loaded:
        for row, index in enumerate(batch.index.tolist()):
            frame = train.refs[index].frame
            expected = lanczos(image_path(kitti_real, frame))
            assert torch.equal(batch.color[0][0][row], expected.flip(-1) if batch.flipped[row] else expected)


def test_convert_jpeg_replaces_copies_of_real_pngs_by_verified_quality_92_420_jpegs(kitti_real, tmp_path):
    data = tmp_path / "kitti"
    folder = data / DRIVE / "image_02" / "data"
    folder.mkdir(parents=True)
    originals = {}
    for frame in (0, 4, 9):
        shutil.copy(image_path(kitti_real, frame), folder)
        with Image.open(image_path(kitti_real, frame)) as image:
            originals[frame] = image.convert("RGB")
    result = run_md2("convert-jpeg", str(data), "--jobs", "1")
    assert result.returncode == 0, result.stderr
    assert "3 images converted to JPEG, 0 already done, 0 failed" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == [f"{frame:010d}.jpg" for frame in (0, 4, 9)]
    for frame, original in originals.items():
        encoded = io.BytesIO()
        original.save(encoded, format="JPEG", quality=92, subsampling=2)  # the reference's convert settings
        with Image.open(folder / f"{frame:010d}.jpg") as jpeg, Image.open(encoded) as expected:
            assert JpegImagePlugin.get_sampling(jpeg) == 2  # 4:2:0
            assert jpeg.quantization == expected.quantization  # IJG tables at quality 92
            pixels = np.asarray(jpeg.convert("RGB"))
            np.testing.assert_array_equal(pixels, np.asarray(expected.convert("RGB")))
        error = np.abs(pixels.astype(np.int16) - np.asarray(original, dtype=np.int16)).mean()
        assert error < 6, error  # this frame (real frames at quality 92, 4:2:0: ~3.4), not another (~14)


def test_predict_on_real_frames_writes_finite_outputs_elsewhere(kitti_real, weights, tmp_path):
    frames = kitti_real / DRIVE / "image_02" / "data"
    before = folder_state(frames)
    result = run_md2("predict", str(frames), "--weights", str(weights), "--ext", "png", "--output-dir",
                     str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    for frame in FRAMES:
        disp = np.load(tmp_path / "out" / f"{frame:010d}_disp.npy")
        assert disp.shape == (1, 1, HEIGHT, WIDTH) and np.isfinite(disp).all()
        with Image.open(tmp_path / "out" / f"{frame:010d}_disp.jpeg") as picture:
            assert picture.size == (1242, 375)
    assert folder_state(frames) == before


def test_train_video_on_real_frames_with_the_real_intrinsics(kitti_real, tmp_path):
    P = read_calib_file(kitti_real / DATE / "calib_cam_to_cam.txt")["P_rect_02"].reshape(3, 4)
    fx, fy, cx, cy = (float(P[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    assert 700 < fx < 730 and 170 < cy < 190  # pixels of the 1242 x 375 frames
    frames = kitti_real / DRIVE / "image_02" / "data"
    before = folder_state(frames)
    result = run_md2("train", "--dataset", "video", "--data-path", str(frames), "--intrinsics",
                     f"{fx!r},{fy!r},{cx!r},{cy!r}", "--height", str(HEIGHT), "--width", str(WIDTH),
                     "--batch-size", "2", "--num-epochs", "1", "--weights-init", "scratch", "--num-workers", "0",
                     "--log-dir", str(tmp_path / "logs"), "--model-name", "real", "--quiet")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "logs" / "real"
    assert (run / "models" / "weights_0" / "depth.pth").is_file()
    options = yaml.safe_load((run / "opt.yaml").read_text())
    assert [float(x) for x in options["data"]["intrinsics"]] == [fx, fy, cx, cy]
    assert folder_state(frames) == before
