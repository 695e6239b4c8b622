"""md2 train --dataset video: folders of frames with the camera's intrinsics, no split files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from md2.core.train.config import build_config, load_yaml
from md2.core.train.data import build_dataset
from md2.core.train.loop import run_training
from md2.core.train.state import read_state
from md2.data.kitti import KITTI_K
from md2.errors import UsageError
from tests.core.train.helpers import tiny_config

WIDTH, HEIGHT = 256, 80  # the synth_raw fixture's frame size


def _videos(synth_raw: Path, tmp_path: Path) -> Path:
    """The fixture's two drives' left frames as two plain folders of frames named frame_N.png (8 each)."""
    root = tmp_path / "videos"
    for number, drive in enumerate(sorted((synth_raw / "2011_09_26").glob("*_sync"))):
        clip = root / f"clip{number}"
        clip.mkdir(parents=True)
        for path in sorted((drive / "image_02" / "data").glob("*.png")):
            shutil.copy(path, clip / f"frame_{int(path.stem)}.png")
    return root


def _pixels(K=KITTI_K) -> tuple[float, float, float, float]:
    return (float(K[0, 0]) * WIDTH, float(K[1, 1]) * HEIGHT, float(K[0, 2]) * WIDTH, float(K[1, 2]) * HEIGHT)


def _video_config(root: Path, tmp_path: Path, **options):
    return tiny_config(root, tmp_path, dataset="video", intrinsics=_pixels(), **options)


def test_a_run_trains_on_folders_of_frames_without_split_files(synth_raw, tmp_path):
    config = _video_config(_videos(synth_raw, tmp_path), tmp_path)
    log = run_training(config)
    assert build_config(load_yaml(log / "opt.yaml")) == config
    # 2 videos x 6 samples (frames with both neighbours); 12 // batch 2 = every 6th held out: 10 train, 2 val.
    assert read_state(log).progress.step == 5
    assert (log / "models" / "weights_0" / "depth.pth").is_file()


def test_validation_holds_out_samples_and_neighbours_stay_in_their_video(synth_raw, tmp_path):
    root = _videos(synth_raw, tmp_path)
    config = _video_config(root, tmp_path)
    train, val = build_dataset(config, "train", is_train=True), build_dataset(config, "val", is_train=False)
    assert len(train) == 10 and len(val) == 2 and not set(train.refs) & set(val.refs)
    assert {ref.folder for ref in train.refs} == {str(root / "clip0"), str(root / "clip1")}
    first_of_second = next(i for i, ref in enumerate(train.refs) if ref.folder == str(root / "clip1"))
    ref = train.refs[first_of_second]
    assert ref.frame == 1 and train.image_path(ref, ref.frame - 1, None) == root / "clip1" / "frame_0.png"
    sample = train.load_sample(first_of_second, flip=False)
    assert sample.color[-1][0].shape == (3, 64, 192)


def test_pixel_and_normalised_intrinsics_give_the_same_K(synth_raw, tmp_path):
    root = _videos(synth_raw, tmp_path)
    in_pixels = build_dataset(_video_config(root, tmp_path), "train", is_train=False)
    normalised = build_dataset(tiny_config(root, tmp_path, dataset="video", intrinsics=(
        float(KITTI_K[0, 0]), float(KITTI_K[1, 1]), float(KITTI_K[0, 2]), float(KITTI_K[1, 2]))), "train", False)
    for scale in range(4):
        torch.testing.assert_close(in_pixels.K[scale], normalised.K[scale])


def test_one_folder_of_frames_is_one_video(synth_raw, tmp_path):
    clip = _videos(synth_raw, tmp_path) / "clip0"
    train = build_dataset(_video_config(clip, tmp_path), "train", is_train=True)
    val = build_dataset(_video_config(clip, tmp_path), "val", is_train=False)
    assert len(train) + len(val) == 6 and len(val) == 2  # 6 // batch 2 = 3: samples 1 and 4 held out


@pytest.mark.parametrize("options, message", [
    ({"dataset": "video"}, "needs --intrinsics"),
    ({"dataset": "video", "intrinsics": (1.0, 2.0, 3.0)}, "needs --intrinsics fx,fy,cx,cy"),
    ({"dataset": "video", "intrinsics": (100.0, 100.0, -5.0, 40.0)}, "must be positive"),
    ({"intrinsics": (100.0, 100.0, 50.0, 40.0)}, "is for --dataset video"),
    ({"dataset": "video", "intrinsics": (100.0, 100.0, 50.0, 40.0), "modality": "mono+stereo"}, "monocular"),
])
def test_video_options_are_checked_up_front(synth_raw, tmp_path, options, message):
    with pytest.raises(UsageError, match=message):
        tiny_config(synth_raw, tmp_path, **options)


def test_md2_train_dataset_video_without_intrinsics_exits_2(tmp_path):
    from tests.cli.test_app import run_md2

    result = run_md2("train", "--dataset", "video", "--data-path", str(tmp_path))
    assert result.returncode == 2 and "needs --intrinsics" in result.stderr and "Traceback" not in result.stderr
