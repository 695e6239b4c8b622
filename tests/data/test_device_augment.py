"""--augment-on device: uint8 batches from the workers, finished on the device, equal the workers' float batches."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from md2.data.augment import ColorJitterParams, color_jitter, sample_color_jitter, to_float
from md2.data.device_augment import finish_batch, is_uint8
from md2.data.device_augment import to_float as to_float_on_device
from md2.data.kitti import KITTIRawDataset
from md2.data.sample import Batch, collate_samples

HEIGHT, WIDTH = 64, 192
TOLERANCE = 1e-5
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SEED = 3
"""With it, the 18 training lines of synth_raw in epoch 0 have samples with and without jitter and flips."""


def _dataset(root: Path, uint8_images: bool, **options) -> KITTIRawDataset:
    lines = (root / "splits" / "synth" / "train_files.txt").read_text().split("\n")[:-1]
    options = {"frame_ids": (0, -1, 1), "img_ext": ".png", "is_train": True, "seed": SEED, **options}
    return KITTIRawDataset(root, lines, HEIGHT, WIDTH, uint8_images=uint8_images, **options)


def _assert_finished_like(finished: Batch, expected: Batch) -> None:
    """color bit-identical, color_aug within TOLERANCE, everything else equal."""
    assert finished.frame_ids == expected.frame_ids and finished.jitter == expected.jitter
    for frame in expected.frame_ids:
        for scale in range(expected.num_scales):
            mine, theirs = finished.color[frame][scale], expected.color[frame][scale]
            assert mine.dtype == torch.float32 and mine.is_contiguous() and torch.equal(mine.cpu(), theirs)
            difference = (finished.color_aug[frame][scale].cpu() - expected.color_aug[frame][scale]).abs().max()
            assert float(difference) <= TOLERANCE, (frame, scale, float(difference))
    for mine, theirs in zip(finished.K + finished.inv_K, expected.K + expected.inv_K):
        assert torch.equal(mine.cpu(), theirs)
    for name in ("index", "flipped", "stereo_T", "depth_gt"):
        mine, theirs = getattr(finished, name), getattr(expected, name)
        assert (mine is None and theirs is None) or torch.equal(mine.cpu(), theirs), name


@pytest.mark.parametrize("device", DEVICES)
def test_device_float_conversion_is_bit_identical_to_the_workers(device):
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    converted = to_float_on_device(torch.from_numpy(pixels).to(device)).cpu()
    assert converted.dtype == torch.float32
    assert torch.equal(converted.view(torch.int32), torch.from_numpy(to_float(pixels)).view(torch.int32))


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
def test_packed_jitter_equals_jittering_each_image_alone(order):
    rng = np.random.default_rng(sum(order))
    params = sample_color_jitter(rng)._replace(order=order)
    # Frames of three scales, as finish_batch packs them: each image's own grey mean matters for contrast.
    images = [torch.from_numpy(rng.random((3, h, w), dtype=np.float32)) * scale
              for h, w, scale in ((8, 12, 1.0), (8, 12, 0.3), (4, 6, 0.9), (4, 6, 0.5), (2, 3, 0.7))]
    packed = torch.cat([image.flatten(-2) for image in images], dim=-1).unsqueeze(-2)
    sizes = [image.shape[-2] * image.shape[-1] for image in images]
    jittered = color_jitter(packed, params, sizes).squeeze(-2).split(sizes, dim=-1)
    for image, result in zip(images, jittered):
        expected = color_jitter(image, params)
        assert torch.allclose(result.unflatten(-1, image.shape[-2:]), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("use_stereo", [False, True], ids=["mono", "mono+stereo"])
@pytest.mark.parametrize("device", DEVICES)
def test_uint8_batches_finished_on_the_device_equal_the_workers_batches(synth_raw, use_stereo, device):
    workers, uint8 = _dataset(synth_raw, False, use_stereo=use_stereo), _dataset(synth_raw, True, use_stereo=use_stereo)
    keys = [(0, index) for index in range(len(workers))]
    expected, shipped = workers.__getitems__(keys), uint8.__getitems__(keys)
    augmentations = [workers.augmentation(index, 0) for _, index in keys]
    assert {a.flip for a in augmentations} == {True, False}
    assert {a.jitter is None for a in augmentations} == {True, False}
    assert is_uint8(shipped) and shipped.jitter == expected.jitter
    for frame in shipped.frame_ids:
        for scale, image in enumerate(shipped.color[frame]):
            assert image.dtype == torch.uint8 and image.shape == expected.color[frame][scale].shape
            assert shipped.color_aug[frame][scale] is image  # no jittered copy crosses from the worker
    _assert_finished_like(finish_batch(shipped.to(device, non_blocking=True)), expected)


def test_a_batch_without_jitter_keeps_color_aug_as_color(synth_raw):
    dataset = _dataset(synth_raw, True)
    plain = [index for index in range(len(dataset)) if dataset.augmentation(index, 0).jitter is None][:2]
    finished = finish_batch(dataset.__getitems__([(0, index) for index in plain]))
    assert finished.jitter == [None, None]
    assert all(finished.color_aug[f][s] is finished.color[f][s] for f in finished.frame_ids for s in range(4))
    float_batch = _dataset(synth_raw, False).__getitems__([0, 1])
    assert finish_batch(float_batch) is float_batch  # the workers' path passes through untouched


def test_single_samples_and_their_collation_are_uint8_too(synth_raw):
    dataset = _dataset(synth_raw, True, use_stereo=True)
    sample = dataset[0, 1]
    assert sample.color["s"][2].dtype == torch.uint8 and sample.color_aug["s"][2] is sample.color["s"][2]
    _assert_finished_like(finish_batch(collate_samples([dataset[0, 1], dataset[0, 2]])),
                          _dataset(synth_raw, False, use_stereo=True).__getitems__([(0, 1), (0, 2)]))


def test_uint8_batches_cross_loader_workers_in_shared_memory(synth_raw):
    dataset = _dataset(synth_raw, True, use_stereo=True, num_scales=2)
    loader = DataLoader(dataset, batch_size=6, num_workers=1, collate_fn=collate_samples,
                        multiprocessing_context="forkserver")
    expected = _dataset(synth_raw, False, use_stereo=True, num_scales=2)
    for start, batch in zip(range(0, 18, 6), loader):
        assert is_uint8(batch) and batch.color[0][0].shape == (6, 3, HEIGHT, WIDTH)
        _assert_finished_like(finish_batch(batch), expected.__getitems__(list(range(start, start + 6))))


def test_jitter_params_apply_to_every_frame_and_scale_of_their_own_sample(synth_raw):
    dataset = _dataset(synth_raw, True, is_train=False)
    batch = dataset.__getitems__([0, 1])
    jitter = ColorJitterParams((3, 0, 2, 1), 1.15, 0.85, 1.1, 0.07)
    finished = finish_batch(Batch(**{**batch.__dict__, "jitter": [None, jitter]}))
    for frame in finished.frame_ids:
        for scale in range(4):
            color, color_aug = finished.color[frame][scale], finished.color_aug[frame][scale]
            assert torch.equal(color_aug[0], color[0])
            assert torch.allclose(color_aug[1], color_jitter(color[1], jitter), rtol=0, atol=TOLERANCE)
