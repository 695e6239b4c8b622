"""md2.core.depth_arrays, the torch-free arithmetic after the network, against the torch operations it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from md2.core import depth_arrays
from md2.core.geometry import disp_to_depth


@pytest.mark.parametrize("size, target", [((64, 192), (100, 300)), ((192, 640), (375, 1242)),
                                          ((192, 640), (1080, 1920)), ((64, 192), (64, 192)),
                                          ((64, 192), (30, 50)), ((7, 5), (13, 11)), ((1, 1), (3, 4))])
def test_upsample_matches_torch_bilinear_without_aligned_corners(size, target):
    disp = np.random.default_rng(sum(size)).random((2, 1, *size), dtype=np.float32)
    expected = F.interpolate(torch.from_numpy(disp), target, mode="bilinear", align_corners=False).numpy()
    actual = depth_arrays.upsample(disp, *target)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= 1e-6


@pytest.mark.parametrize("bounds", [(0.1, 100.0), (0.001, 80.0)])
def test_disp_to_depth_equals_torch_bit_for_bit(bounds):
    disp = np.random.default_rng(1).random((1, 1, 64, 192), dtype=np.float32)
    scaled, depth = disp_to_depth(torch.from_numpy(disp), *bounds)
    scaled_np, depth_np = depth_arrays.disp_to_depth(disp, *bounds)
    assert scaled_np.dtype == depth_np.dtype == np.float32
    np.testing.assert_array_equal(scaled_np, scaled.numpy())
    np.testing.assert_array_equal(depth_np, depth.numpy())


def test_images_from_pixels_equal_to_tensor_division():
    pixels = np.random.default_rng(2).integers(0, 256, (3, 64, 192, 3), dtype=np.uint8)
    expected = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255.0).numpy()
    actual = depth_arrays.images_from_pixels(pixels)
    assert actual.flags.c_contiguous
    np.testing.assert_array_equal(actual, expected)
