"""KITTI readers on synthetic drives: what a sample holds, augmentation, ground truth, errors, loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from md2.data.augment import ColorJitterParams, color_jitter, nearest_resize
from md2.data.calib import generate_depth_map
from md2.data.kitti import DATASETS, KITTIDepthDataset, KITTIOdomDataset, KITTIRawDataset
from md2.data.sample import Batch, collate_samples
from md2.errors import DataError

HEIGHT, WIDTH = 64, 192
JITTER = ColorJitterParams((3, 0, 2, 1), 1.15, 0.85, 1.1, 0.07)


def _lines(root: Path, name: str = "train_files.txt") -> list[str]:
    return (root / "splits" / "synth" / name).read_text().split("\n")[:-1]


def _middle_line(root: Path, side: str = "l") -> str:
    """A split line whose frame has neighbours on both sides, for ``side``."""
    folder, frame, _ = _lines(root)[0].split()
    frames = sorted((root / folder / "image_02" / "data").iterdir())
    return f"{folder} {int(frames[len(frames) // 2].stem)} {side}"


def _raw(root: Path, lines: list[str], **options) -> KITTIRawDataset:
    options = {"frame_ids": (0, -1, 1), "img_ext": ".png", **options}
    return KITTIRawDataset(root, lines, HEIGHT, WIDTH, **options)


def _pil_chain(path: Path, flip: bool, num_scales: int) -> list[torch.Tensor]:
    """The reference's images, computed directly with Pillow: RGB, flip, LANCZOS to W x H, then halvings."""
    image = Image.open(path).convert("RGB")
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    levels = []
    for scale in range(num_scales):
        image = image.resize((WIDTH // 2**scale, HEIGHT // 2**scale), Image.Resampling.LANCZOS)
        levels.append(torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255))
    return levels


@pytest.mark.parametrize("use_stereo", [False, True])
def test_sample_holds_every_frame_at_every_scale(synth_raw: Path, use_stereo: bool) -> None:
    sample = _raw(synth_raw, [_middle_line(synth_raw)], use_stereo=use_stereo, is_train=True)[0]
    frames = (0, -1, 1, "s") if use_stereo else (0, -1, 1)
    assert sample.frame_ids == frames and tuple(sample.color_aug) == frames
    for frame in frames:
        for images in (sample.color[frame], sample.color_aug[frame]):
            assert [tuple(image.shape) for image in images] == [(3, HEIGHT // 2**s, WIDTH // 2**s) for s in range(4)]
            assert all(image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1 for image in images)
    assert len(sample.K) == len(sample.inv_K) == 4
    assert (sample.stereo_T is not None) == use_stereo


def test_intrinsics_scale_with_each_level(synth_raw: Path) -> None:
    sample = _raw(synth_raw, [_middle_line(synth_raw)])[0]
    for scale in range(4):
        w, h = WIDTH // 2**scale, HEIGHT // 2**scale
        expected = np.array([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        np.testing.assert_allclose(sample.K[scale].numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(sample.inv_K[scale].numpy() @ expected, np.eye(4), atol=1e-5)
        assert sample.K[scale].dtype == torch.float32


@pytest.mark.parametrize("flip", [False, True])
def test_images_are_the_reference_lanczos_chain(synth_raw: Path, flip: bool) -> None:
    line = _middle_line(synth_raw)
    dataset = _raw(synth_raw, [line], use_stereo=True)
    sample = dataset.load_sample(0, flip=flip)
    folder, frame, _ = line.split()
    for frame_id, camera, number in ((0, 2, int(frame)), (-1, 2, int(frame) - 1), ("s", 3, int(frame))):
        path = synth_raw / folder / f"image_0{camera}" / "data" / f"{number:010d}.png"
        for scale, expected in enumerate(_pil_chain(path, flip, 4)):
            assert torch.equal(sample.color[frame_id][scale], expected), (frame_id, scale)


def test_flip_mirrors_every_image(synth_raw: Path) -> None:
    dataset = _raw(synth_raw, [_middle_line(synth_raw)], use_stereo=True)
    plain, flipped = dataset.load_sample(0, flip=False), dataset.load_sample(0, flip=True)
    assert flipped.flipped and not plain.flipped
    for frame in plain.frame_ids:
        for scale in range(4):
            assert torch.equal(flipped.color[frame][scale], plain.color[frame][scale].flip(-1))


@pytest.mark.parametrize(("side", "flip", "expected"), [("l", False, -0.1), ("l", True, 0.1),
                                                        ("r", False, 0.1), ("r", True, -0.1)])
def test_stereo_baseline_sign_follows_side_and_flip(synth_raw: Path, side: str, flip: bool, expected: float) -> None:
    dataset = _raw(synth_raw, [_middle_line(synth_raw, side)], frame_ids=(0,), use_stereo=True)
    stereo_T = dataset.load_sample(0, flip=flip).stereo_T
    expected_T = torch.eye(4)
    expected_T[0, 3] = expected
    assert torch.equal(stereo_T, expected_T)


def test_one_jitter_for_every_frame_and_scale(synth_raw: Path) -> None:
    sample = _raw(synth_raw, [_middle_line(synth_raw)], use_stereo=True).load_sample(0, jitter=JITTER)
    assert sample.jitter == JITTER
    for frame in sample.frame_ids:
        for scale in range(4):
            expected = color_jitter(sample.color[frame][scale], JITTER)
            torch.testing.assert_close(sample.color_aug[frame][scale], expected, atol=1e-5, rtol=0)
            assert (sample.color_aug[frame][scale] - sample.color[frame][scale]).abs().max() > 0.01


def test_training_samples_draw_their_own_jitter_and_flip(synth_raw: Path) -> None:
    dataset = _raw(synth_raw, _lines(synth_raw), is_train=True, seed=5)
    draws = [dataset.augmentation(index, epoch) for epoch in range(8) for index in range(len(dataset))]
    assert any(draw.flip for draw in draws) and not all(draw.flip for draw in draws)
    assert any(draw.jitter for draw in draws) and not all(draw.jitter for draw in draws)
    index = next(i for i in range(len(dataset)) if dataset.augmentation(i, 0).jitter is not None)
    sample = dataset[index]
    assert sample.jitter == dataset.augmentation(index, 0).jitter
    assert sample.flipped == dataset.augmentation(index, 0).flip


def test_set_epoch_and_epoch_keys_select_the_same_augmentation(synth_raw: Path) -> None:
    dataset = _raw(synth_raw, _lines(synth_raw)[:3], is_train=True, frame_ids=(0,), num_scales=1)
    dataset.set_epoch(3)
    by_epoch = [(s.flipped, s.jitter, s.color_aug[0][0]) for s in (dataset[i] for i in range(3))]
    dataset.set_epoch(0)
    by_key = [(s.flipped, s.jitter, s.color_aug[0][0]) for s in (dataset[3, i] for i in range(3))]
    for (flip_a, jitter_a, image_a), (flip_b, jitter_b, image_b) in zip(by_epoch, by_key):
        assert flip_a == flip_b and jitter_a == jitter_b and torch.equal(image_a, image_b)


@pytest.mark.parametrize("is_train", [False, True])
def test_without_colour_jitter_the_augmented_images_are_the_plain_ones(synth_raw: Path, is_train: bool) -> None:
    dataset = _raw(synth_raw, [_middle_line(synth_raw)], is_train=is_train)
    sample = dataset.load_sample(0) if is_train else dataset[0]
    assert sample.jitter is None
    for frame in sample.frame_ids:
        assert all(aug is plain for aug, plain in zip(sample.color_aug[frame], sample.color[frame]))


def test_evaluation_mode_reads_frame_zero_at_one_scale(synth_raw: Path) -> None:
    dataset = _raw(synth_raw, _lines(synth_raw, "test_files.txt"), frame_ids=(0,), num_scales=1, load_depth=False)
    sample = dataset[0]
    assert list(sample.color) == [0] and len(sample.color[0]) == 1 and sample.depth_gt is None
    assert not sample.flipped and sample.jitter is None


@pytest.mark.parametrize("flip", [False, True])
def test_depth_gt_is_the_lidar_map_resized_and_flipped(synth_raw: Path, flip: bool) -> None:
    line = _middle_line(synth_raw, "r")
    folder, frame, _ = line.split()
    sample = _raw(synth_raw, [line]).load_sample(0, flip=flip)
    lidar = generate_depth_map(synth_raw / folder.split("/")[0],
                               synth_raw / folder / "velodyne_points" / "data" / f"{int(frame):010d}.bin", cam=3)
    expected = nearest_resize(lidar, 375, 1242, flip=flip)
    assert sample.depth_gt.shape == (1, 375, 1242) and sample.depth_gt.dtype == torch.float32
    np.testing.assert_array_equal(sample.depth_gt[0].numpy(), expected.astype(np.float32))
    assert (expected > 0).sum() > 100


def test_frame_outside_its_sequence_names_the_missing_path(synth_raw: Path) -> None:
    folder = _lines(synth_raw)[0].split()[0]
    dataset = _raw(synth_raw, [f"{folder} 0 l"])
    with pytest.raises(DataError) as error:
        dataset[0]
    assert str(synth_raw / folder / "image_02" / "data" / f"{-1:010d}.png") in str(error.value)


def test_missing_image_names_its_path(synth_raw: Path, tmp_path: Path) -> None:
    line = _middle_line(synth_raw)
    folder, frame, _ = line.split()
    shutil.copytree(synth_raw / folder, tmp_path / folder)
    shutil.copytree(synth_raw / folder.split("/")[0], tmp_path / folder.split("/")[0], dirs_exist_ok=True)
    missing = tmp_path / folder / "image_02" / "data" / f"{int(frame) + 1:010d}.png"
    missing.unlink()
    with pytest.raises(DataError, match="missing image") as error:
        _raw(tmp_path, [line])[0]
    assert str(missing) in str(error.value)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_corrupt_image_names_the_file(synth_raw: Path, tmp_path: Path, ext: str) -> None:
    line = _middle_line(synth_raw)
    folder, frame, _ = line.split()
    images = tmp_path / folder / "image_02" / "data"
    images.mkdir(parents=True)
    source = synth_raw / folder / "image_02" / "data"
    for offset in (-1, 0, 1):
        Image.open(source / f"{int(frame) + offset:010d}.png").save(images / f"{int(frame) + offset:010d}{ext}")
    corrupt = images / f"{int(frame):010d}{ext}"
    corrupt.write_bytes(corrupt.read_bytes()[:300])
    dataset = KITTIRawDataset(tmp_path, [line], HEIGHT, WIDTH, (0, -1, 1), img_ext=ext)
    with pytest.raises(DataError, match="corrupt image") as error:
        dataset[0]
    assert str(corrupt) in str(error.value)


@pytest.mark.parametrize(("reader", "line", "message"), [
    (KITTIRawDataset, "2011_09_26/2011_09_26_drive_0001_sync 3", "has no side"),
    (KITTIRawDataset, "2011_09_26/2011_09_26_drive_0001_sync 3 x", "side must be one of"),
    (KITTIRawDataset, "2011_09_26/2011_09_26_drive_0001_sync three l", "not a number"),
    (KITTIOdomDataset, "nine 3 l", "sequence is a number"),
])
def test_malformed_split_lines_are_named(synth_raw: Path, reader, line: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as error:
        reader(synth_raw, [line], HEIGHT, WIDTH, (0,), img_ext=".png")[0]
    assert line.split()[0] in str(error.value)


def test_odometry_reader_reads_sequence_images(synth_raw: Path) -> None:
    lines = (synth_raw / "splits" / "odom" / "train_files.txt").read_text().split("\n")[:-1]
    sequence, frame, side = lines[len(lines) // 2].split()
    dataset = KITTIOdomDataset(synth_raw, [f"{sequence} {frame} {side}"], HEIGHT, WIDTH, (0, -1, 1),
                               img_ext=".png", use_stereo=True)
    sample = dataset[0]
    camera = {"l": 2, "r": 3}[side]
    path = synth_raw / "sequences" / f"{int(sequence):02d}" / f"image_{camera}" / f"{int(frame) - 1:06d}.png"
    assert torch.equal(sample.color[-1][0], _pil_chain(path, False, 1)[0])
    assert sample.depth_gt is None and sample.stereo_T is not None


def test_depth_benchmark_reader_uses_the_projected_ground_truth(synth_raw: Path) -> None:
    path = next(synth_raw.glob("*/*/proj_depth/groundtruth/image_02/*.png"))
    folder = path.relative_to(synth_raw).parts[:2]
    line = f"{folder[0]}/{folder[1]} {int(path.stem)} l"
    dataset = KITTIDepthDataset(synth_raw, [line], HEIGHT, WIDTH, (0,), img_ext=".png")
    stored = np.array(Image.open(path)).astype(np.float32) / 256
    for flip in (False, True):
        depth = dataset.load_sample(0, flip=flip).depth_gt
        np.testing.assert_array_equal(depth[0].numpy(), nearest_resize(stored, 375, 1242, flip=flip))
    assert (stored > 0).any()


def test_registry_names_the_three_readers() -> None:
    assert DATASETS == {"kitti": KITTIRawDataset, "kitti_odom": KITTIOdomDataset, "kitti_depth": KITTIDepthDataset}


def _assert_same_batch(batch: Batch, expected: Batch) -> None:
    assert batch.frame_ids == expected.frame_ids and batch.jitter == expected.jitter
    for name in ("color", "color_aug"):
        for frame in expected.frame_ids:
            for mine, theirs in zip(getattr(batch, name)[frame], getattr(expected, name)[frame]):
                assert torch.equal(mine, theirs), (name, frame)
    for mine, theirs in zip(batch.K + batch.inv_K, expected.K + expected.inv_K):
        assert torch.equal(mine, theirs)
    for name in ("index", "flipped", "stereo_T", "depth_gt"):
        assert torch.equal(getattr(batch, name), getattr(expected, name)), name


def test_data_loader_workers_deliver_the_collated_samples(synth_raw: Path) -> None:
    dataset = _raw(synth_raw, _lines(synth_raw)[:6], is_train=True, use_stereo=True, num_scales=2, seed=1)
    dataset.set_epoch(2)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_samples,
                        multiprocessing_context="forkserver")  # as md2's trainer: no fork of a threaded process
    batches = list(loader)
    assert len(batches) == 2
    for start, batch in zip((0, 3), batches):
        assert len(batch) == 3 and batch.color[0][0].shape == (3, 3, HEIGHT, WIDTH)
        assert batch.color["s"][1].shape == (3, 3, HEIGHT // 2, WIDTH // 2)
        assert batch.K[1].shape == (3, 4, 4) and batch.stereo_T.shape == (3, 4, 4)
        assert batch.depth_gt.shape == (3, 1, 375, 1242)
        _assert_same_batch(batch, collate_samples([dataset[i] for i in range(start, start + 3)]))
    _assert_same_batch(dataset.__getitems__([0, 1, 2]), collate_samples([dataset[i] for i in range(3)]))
    assert any(batch.jitter[i] is None for batch in batches for i in range(3))
    assert any(batch.jitter[i] is not None for batch in batches for i in range(3))


def test_batches_move_to_a_device_keeping_shared_images_shared(synth_raw: Path) -> None:
    dataset = _raw(synth_raw, _lines(synth_raw)[:2], num_scales=1)
    batch = collate_samples([dataset[0], dataset[1]])
    assert batch.color_aug[0][0] is batch.color[0][0]
    moved = batch.to("cpu", non_blocking=True)
    assert moved.color_aug[0][0] is moved.color[0][0]
    assert torch.equal(moved.index, torch.tensor([0, 1])) and moved.depth_gt.shape == (2, 1, 375, 1242)
