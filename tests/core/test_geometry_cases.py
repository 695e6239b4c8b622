"""Geometry, losses and metrics on cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from md2.core.geometry import (NORMALISED_KITTI_K, BackprojectDepth, Project3D, disp_to_depth, intrinsics_pyramid,
                               rot_from_axisangle, transformation_from_parameters, warp)
from md2.core.losses import SSIM, photometric_error, smoothness_loss
from md2.core.metrics import compute_depth_errors, eigen_crop_mask, median_scale, post_process_disparity
from md2.core.pose_metrics import snippet_errors, trajectory_errors, umeyama_alignment

H, W = 24, 40


def camera(height=H, width=W):
    Ks, inv_Ks = intrinsics_pyramid(NORMALISED_KITTI_K, width, height, 1)
    return torch.from_numpy(Ks[0])[None], torch.from_numpy(inv_Ks[0])[None]


def warp_grid(depth, T, height=H, width=W):
    K, inv_K = camera(height, width)
    return Project3D(height, width)(BackprojectDepth(height, width)(depth, inv_K), K, T)


def test_identity_pose_and_constant_depth_warp_an_image_onto_itself():
    image = torch.rand(2, 3, H, W)
    grid = warp_grid(torch.full((2, 1, H, W), 7.0), torch.eye(4).repeat(2, 1, 1))
    torch.testing.assert_close(warp(image, grid), image, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tx,z", [(0.5, 5.0), (-0.3, 2.0), (0.1, 20.0)])
def test_sideways_translation_moves_pixels_by_f_t_over_z(tx, z):
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = tx
    grid = warp_grid(torch.full((1, 1, H, W), z), T)
    column = (grid[0, ..., 0] + 1) / 2 * (W - 1)
    fx = 0.58 * W
    torch.testing.assert_close(column - torch.arange(W, dtype=torch.float32), torch.full((H, W), fx * tx / z),
                               atol=1e-4, rtol=0)


def test_integer_shift_samples_the_shifted_image():
    fx = 0.58 * W
    z, shift = 5.0, 2
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = shift * z / fx
    image = torch.rand(1, 3, H, W)
    warped = warp(image, warp_grid(torch.full((1, 1, H, W), z), T))
    torch.testing.assert_close(warped[..., : W - shift], image[..., shift:], atol=1e-4, rtol=0)


def test_disp_to_depth_limits():
    scaled, depth = disp_to_depth(torch.tensor([0.0, 1.0]), 0.1, 100)
    torch.testing.assert_close(depth, torch.tensor([100.0, 0.1]))
    torch.testing.assert_close(scaled, torch.tensor([0.01, 10.0]))


def test_rotation_about_y_by_90_degrees():
    R = rot_from_axisangle(torch.tensor([[[0.0, math.pi / 2, 0.0]]]))[0, :3, :3]
    torch.testing.assert_close(R @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0, -1]), atol=1e-6, rtol=0)
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-6, rtol=0)


def test_invert_gives_the_inverse_transform():
    axisangle, translation = torch.randn(3, 1, 3) * 0.3, torch.randn(3, 1, 3)
    forward = transformation_from_parameters(axisangle, translation)
    backward = transformation_from_parameters(axisangle, translation, invert=True)
    torch.testing.assert_close(forward @ backward, torch.eye(4).repeat(3, 1, 1), atol=1e-5, rtol=0)


def test_intrinsics_scale_with_the_pyramid():
    Ks, inv_Ks = intrinsics_pyramid(NORMALISED_KITTI_K, 640, 192, 4)
    assert Ks[0][0, 0] == pytest.approx(0.58 * 640) and Ks[3][1, 1] == pytest.approx(1.92 * 24)
    assert Ks[2][0, 2] == pytest.approx(0.5 * 160)
    np.testing.assert_allclose(Ks[1] @ inv_Ks[1], np.eye(4), atol=1e-4)


def test_ssim_of_an_image_with_itself_is_zero():
    image = torch.rand(2, 3, 16, 16)
    assert SSIM()(image, image).abs().max() < 1e-6


def plain_ssim(x, y):
    pad, pool = torch.nn.ReflectionPad2d(1), torch.nn.AvgPool2d(3, 1)
    x, y = pad(x), pad(y)
    mu_x, mu_y = pool(x), pool(y)
    sigma_x, sigma_y, sigma_xy = pool(x * x) - mu_x ** 2, pool(y * y) - mu_y ** 2, pool(x * y) - mu_x * mu_y
    n = (2 * mu_x * mu_y + 0.01 ** 2) * (2 * sigma_xy + 0.03 ** 2)
    d = (mu_x ** 2 + mu_y ** 2 + 0.01 ** 2) * (sigma_x + sigma_y + 0.03 ** 2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def test_fused_ssim_equals_the_plain_formula():
    x, y = torch.rand(2, 3, 20, 30), torch.rand(2, 3, 20, 30)
    torch.testing.assert_close(SSIM()(x, y), plain_ssim(x, y), atol=1e-6, rtol=0)


def test_photometric_error_weights():
    x, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    l1 = (x - y).abs().mean(1, True)
    torch.testing.assert_close(photometric_error(x, y, None), l1)
    expected = 0.85 * plain_ssim(x, y).mean(1, True) + 0.15 * l1
    torch.testing.assert_close(photometric_error(x, y, SSIM()), expected, atol=1e-6, rtol=0)


def test_smoothness_of_constant_disparity_is_zero_and_of_a_ramp_is_hand_computed():
    image = torch.zeros(1, 3, 4, 5)
    assert smoothness_loss(torch.ones(1, 1, 4, 5), image) == 0
    ramp = torch.arange(5.0).repeat(4, 1)[None, None] * 0.1  # d/dx = 0.1, d/dy = 0, flat image
    assert smoothness_loss(ramp, image).item() == pytest.approx(0.1)


def test_metrics_against_hand_computation():
    gt, pred = np.array([2.0, 4.0]), np.array([1.0, 4.0])
    errors = compute_depth_errors(gt, pred)
    assert errors.abs_rel == pytest.approx(0.25)
    assert errors.sq_rel == pytest.approx(0.25)
    assert errors.rmse == pytest.approx(math.sqrt(0.5))
    assert errors.rmse_log == pytest.approx(math.sqrt(math.log(2) ** 2 / 2))
    assert (errors.a1, errors.a2, errors.a3) == (0.5, 0.5, 0.5)  # max ratio 2 > 1.25^3


def test_perfect_prediction():
    gt = np.linspace(1, 80, 100)
    errors = compute_depth_errors(gt, gt.copy())
    assert errors.abs_rel == 0 and errors.rmse == 0 and errors.a1 == 1


@pytest.mark.parametrize("size,rows,cols", [((375, 1242), (153, 371), (44, 1197)), ((370, 1224), (151, 366), (43, 1180))])
def test_eigen_crop(size, rows, cols):
    mask = eigen_crop_mask(*size)
    r, c = np.nonzero(mask)
    assert (r.min(), r.max() + 1, c.min(), c.max() + 1) == (*rows, *cols)


def test_median_scaling_ratio():
    scaled, ratio = median_scale(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0]))
    assert ratio == 2.0 and np.array_equal(scaled, [2.0, 4.0, 6.0])


def test_post_process_mask_columns():
    width = 101
    disp, flipped = np.zeros((1, 2, width)), np.ones((1, 2, width))
    result = post_process_disparity(disp, flipped)[0, 0]
    # l = 0 at the left edge: l_mask = 1 -> the flipped prediction; right edge: r_mask = 1 -> the original.
    assert result[0] == 1.0 and result[-1] == 0.0
    # Middle: both masks 0 -> the mean.
    assert result[50] == 0.5
    # l = 0.07: l_mask = 1 - 20 * 0.02 = 0.6; r_mask = 0 there; mean weight 0.4 -> 0.6 + 0.4 * 0.5.
    assert result[7] == pytest.approx(0.8)


def test_snippet_ate_is_zero_for_the_truth_and_positive_otherwise():
    rng = np.random.default_rng(0)
    local = np.repeat(np.eye(4)[None], 12, 0)
    local[:, :3, 3] = rng.normal([0, 0, 1], 0.05, (12, 3))
    assert snippet_errors(local, local).max() < 1e-12
    noisy = local.copy()
    noisy[:, :3, 3] += rng.normal(0, 0.2, (12, 3))
    assert snippet_errors(local, noisy).mean() > 0.01


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(30, 3))
    R = rot_from_axisangle(torch.tensor([[[0.2, -0.5, 0.3]]], dtype=torch.float64))[0, :3, :3].numpy()
    target = 2.5 * points @ R.T + np.array([1.0, -2.0, 0.5])
    R_est, t_est, s_est = umeyama_alignment(points, target)
    np.testing.assert_allclose(R_est, R, atol=1e-9)
    assert s_est == pytest.approx(2.5) and np.allclose(t_est, [1.0, -2.0, 0.5])
    local = np.repeat(np.eye(4)[None], 5, 0)
    local[:, 2, 3] = 1.0
    assert trajectory_errors(local, local).ate_rmse < 1e-9
