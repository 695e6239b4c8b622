"""Augmentation: the fast CPU colour jitter against torchvision's definition, the random draws, the resizes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from md2.data.augment import (BRIGHTNESS, CONTRAST, HUE, SATURATION, ColorJitterParams, color_jitter,
                              color_jitter_hwc, draw_augmentation, lanczos_pyramid, nearest_resize,
                              sample_color_jitter, to_float)

TOLERANCE = 1e-5


def _test_image(seed: int = 0, height: int = 24, width: int = 40) -> np.ndarray:
    """float32 (h, w, 3) in [0, 1] with the hard cases: greys, black, white, pure and saturated colours."""
    rng = np.random.default_rng(seed)
    image = rng.random((height, width, 3), dtype=np.float32)
    image[0, :8] = [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]]
    image[1] = np.round(image[1] * 255) / 255  # exact 8-bit values, as a decoded image holds
    image[2, :, 1] = image[2, :, 0]  # two equal channels (hue on a sector boundary)
    return image


def _torchvision(image: np.ndarray, params: ColorJitterParams) -> np.ndarray:
    return color_jitter(torch.from_numpy(image).permute(2, 0, 1), params).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("operation", range(4))
@pytest.mark.parametrize("factor_index", [0, 1, 2])
def test_each_cpu_operation_matches_torchvision(operation: int, factor_index: int) -> None:
    ranges = (BRIGHTNESS, CONTRAST, SATURATION, HUE)
    factors = [1.0, 1.0, 1.0, 0.0]
    low, high = ranges[operation]
    factors[operation] = (low, high, (low + high) / 2 + 0.013)[factor_index]
    order = (operation,) + tuple(i for i in range(4) if i != operation)
    params = ColorJitterParams(order, *factors)
    image = _test_image(operation)
    np.testing.assert_allclose(color_jitter_hwc(image, params), _torchvision(image, params), atol=TOLERANCE)


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_cpu_jitter_matches_torchvision_in_every_order(order: tuple[int, ...]) -> None:
    params = sample_color_jitter(np.random.default_rng(sum(o * 10**i for i, o in enumerate(order))))._replace(
        order=order)
    image = _test_image(1)
    np.testing.assert_allclose(color_jitter_hwc(image, params), _torchvision(image, params), atol=TOLERANCE)


def test_jitter_order_changes_the_result() -> None:
    image = _test_image(2)
    forward = ColorJitterParams((0, 1, 2, 3), 1.2, 0.8, 1.2, 0.1)
    backward = forward._replace(order=(3, 2, 1, 0))
    assert np.abs(color_jitter_hwc(image, forward) - color_jitter_hwc(image, backward)).max() > 1e-3


def test_cpu_jitter_leaves_its_input_unchanged() -> None:
    image = _test_image(3)
    before = image.copy()
    color_jitter_hwc(image, ColorJitterParams((3, 2, 1, 0), 1.1, 0.9, 1.1, -0.05))
    np.testing.assert_array_equal(image, before)


def test_sampled_jitter_is_within_the_reference_ranges() -> None:
    rng = np.random.default_rng(0)
    draws = [sample_color_jitter(rng) for _ in range(500)]
    for params in draws:
        assert sorted(params.order) == [0, 1, 2, 3]
        assert BRIGHTNESS[0] <= params.brightness <= BRIGHTNESS[1]
        assert CONTRAST[0] <= params.contrast <= CONTRAST[1]
        assert SATURATION[0] <= params.saturation <= SATURATION[1]
        assert HUE[0] <= params.hue <= HUE[1]
    assert len({params.order for params in draws}) == 24


def test_augmentation_is_a_function_of_seed_epoch_and_index() -> None:
    assert draw_augmentation(3, 1, 17) == draw_augmentation(3, 1, 17)
    across_epochs = {draw_augmentation(3, epoch, 17) for epoch in range(20)}
    assert len(across_epochs) > 10
    seed_3 = [draw_augmentation(3, 1, index) for index in range(20)]
    assert seed_3 != [draw_augmentation(4, 1, index) for index in range(20)]


def test_flip_and_colour_jitter_each_happen_half_of_the_time() -> None:
    draws = [draw_augmentation(0, 0, index) for index in range(4000)]
    flips = np.mean([draw.flip for draw in draws])
    jitters = np.mean([draw.jitter is not None for draw in draws])
    both = np.mean([draw.flip and draw.jitter is not None for draw in draws])
    assert 0.46 < flips < 0.54 and 0.46 < jitters < 0.54
    assert 0.21 < both < 0.29  # independent decisions


def test_to_float_equals_torchvision_to_tensor() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    expected = TF.to_tensor(Image.fromarray(pixels)).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(to_float(pixels), expected)


def test_pyramid_halves_each_scale_with_lanczos_from_the_previous() -> None:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (75, 250, 3), dtype=np.uint8))
    levels = lanczos_pyramid(image, 128, 64, 3)
    assert [level.size for level in levels] == [(128, 64), (64, 32), (32, 16)]
    expected = image.resize((128, 64), Image.Resampling.LANCZOS).resize((64, 32), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(np.asarray(levels[1]), np.asarray(expected))
    direct = image.resize((64, 32), Image.Resampling.LANCZOS)
    assert not np.array_equal(np.asarray(levels[1]), np.asarray(direct))  # a chain, not a direct resize


def test_nearest_resize_picks_pixel_centres() -> None:
    row = np.arange(4, dtype=np.float32)[None, :]
    np.testing.assert_array_equal(nearest_resize(row, 1, 2), [[1, 3]])  # floor((d + 0.5) * 2)
    np.testing.assert_array_equal(nearest_resize(row[:, :2], 1, 4), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(nearest_resize(row, 1, 2, flip=True), [[3, 1]])


@pytest.mark.parametrize("shape", [(376, 1241), (370, 1224), (374, 1238), (375, 1242), (100, 300)])
def test_nearest_resize_equals_pillow_nearest_except_at_exact_ties(shape: tuple[int, int]) -> None:
    """Pillow computes (dst + 0.5) * in / out in floating point; md2 exactly. They may differ only where the
    exact value is an integer (a tie between two source pixels)."""
    height, width = shape
    depth = np.random.default_rng(0).random(shape, dtype=np.float32) * 80
    expected = np.asarray(Image.fromarray(depth, mode="F").resize((1242, 375), Image.Resampling.NEAREST))
    resized = nearest_resize(depth, 375, 1242)
    tie_rows = (2 * np.arange(375) + 1) * height % (2 * 375) == 0
    tie_cols = (2 * np.arange(1242) + 1) * width % (2 * 1242) == 0
    differs = resized != expected
    assert not differs[~tie_rows][:, ~tie_cols].any()
    np.testing.assert_array_equal(nearest_resize(depth, 375, 1242, flip=True), resized[:, ::-1])
