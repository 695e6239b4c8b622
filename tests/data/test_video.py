"""Custom data: a folder of video frames and one intrinsics matrix."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from md2.data.kitti import KITTI_K, KITTIRawDataset
from md2.data.video import VideoFolderDataset, list_frames
from md2.errors import DataError, UsageError

HEIGHT, WIDTH = 64, 192


def _frames_folder(synth_raw: Path) -> Path:
    line = (synth_raw / "splits" / "synth" / "train_files.txt").read_text().split()[0]
    return synth_raw / line / "image_02" / "data"


def test_every_frame_with_both_neighbours_is_a_sample(synth_raw: Path) -> None:
    folder = _frames_folder(synth_raw)
    count = len(list(folder.glob("*.png")))
    assert len(VideoFolderDataset(folder, KITTI_K, HEIGHT, WIDTH, (0, -1, 1))) == count - 2
    assert len(VideoFolderDataset(folder, KITTI_K, HEIGHT, WIDTH, (0, 1, 2))) == count - 2
    assert len(VideoFolderDataset(folder, KITTI_K, HEIGHT, WIDTH, (0,))) == count


def test_video_samples_equal_the_kitti_reader_on_the_same_frames(synth_raw: Path) -> None:
    folder = _frames_folder(synth_raw)
    video = VideoFolderDataset(folder, KITTI_K, HEIGHT, WIDTH, (0, -1, 1), is_train=True, seed=2)
    drive = folder.parent.parent.relative_to(synth_raw).as_posix()
    first = int(sorted(folder.glob("*.png"))[0].stem)
    kitti = KITTIRawDataset(synth_raw, [f"{drive} {first + 1} l"], HEIGHT, WIDTH, (0, -1, 1), img_ext=".png",
                            load_depth=False)
    sample, expected = video.load_sample(0, flip=True), kitti.load_sample(0, flip=True)
    for frame in (0, -1, 1):
        for scale in range(4):
            assert torch.equal(sample.color[frame][scale], expected.color[frame][scale])
    for scale in range(4):
        torch.testing.assert_close(sample.K[scale], expected.K[scale])
    assert sample.depth_gt is None and sample.stereo_T is None
    augmented = video[3]
    assert augmented.jitter == video.augmentation(3).jitter


def test_intrinsics_in_pixels_are_normalised_by_the_image_size(synth_raw: Path) -> None:
    folder = _frames_folder(synth_raw)
    width, height = Image.open(next(folder.glob("*.png"))).size
    pixels = KITTI_K[:3, :3].astype(np.float64).copy()
    pixels[0] *= width
    pixels[1] *= height
    in_pixels = VideoFolderDataset(folder, pixels, HEIGHT, WIDTH, (0,), image_size=(width, height))
    normalised = VideoFolderDataset(folder, KITTI_K, HEIGHT, WIDTH, (0,))
    for scale in range(4):
        torch.testing.assert_close(in_pixels.K[scale], normalised.K[scale])
    with pytest.raises(UsageError, match="image_size"):
        VideoFolderDataset(folder, pixels, HEIGHT, WIDTH, (0,))


def test_frames_are_in_natural_order(tmp_path: Path) -> None:
    for name in ("frame_10.jpg", "frame_2.png", "frame_1.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in list_frames(tmp_path)] == ["frame_1.jpg", "frame_2.png", "frame_10.jpg"]


def test_unusable_folders_and_options_are_refused(synth_raw: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        VideoFolderDataset(tmp_path / "absent", KITTI_K, HEIGHT, WIDTH)
    with pytest.raises(DataError, match="no .jpg or .png"):
        VideoFolderDataset(tmp_path, KITTI_K, HEIGHT, WIDTH)
    shutil.copy(next(_frames_folder(synth_raw).glob("*.png")), tmp_path / "0.png")
    with pytest.raises(DataError, match="too few"):
        VideoFolderDataset(tmp_path, KITTI_K, HEIGHT, WIDTH, (0, -1, 1))
    with pytest.raises(UsageError, match="stereo"):
        VideoFolderDataset(tmp_path, KITTI_K, HEIGHT, WIDTH, (0, "s"))


def test_a_corrupt_frame_is_named(synth_raw: Path, tmp_path: Path) -> None:
    for index, path in enumerate(sorted(_frames_folder(synth_raw).glob("*.png"))[:3]):
        shutil.copy(path, tmp_path / f"{index}.png")
    (tmp_path / "2.png").write_bytes(b"not an image")
    dataset = VideoFolderDataset(tmp_path, KITTI_K, HEIGHT, WIDTH, (0, -1, 1))
    with pytest.raises(DataError, match="corrupt image") as error:
        dataset[0]
    assert str(tmp_path / "2.png") in str(error.value)
