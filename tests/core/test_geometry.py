"""md2.core.geometry on cases computed by hand and on invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from md2.core.geometry import (NORMALISED_KITTI_K, BackprojectDepth, Project3D, disp_to_depth, intrinsics_pyramid,
                               rot_from_axisangle, transformation_from_parameters, translation_matrix, warp)

H, W = 24, 40
FX, FY = 0.58 * W, 1.92 * H


def camera(batch: int = 1, height: int = H, width: int = W) -> tuple[torch.Tensor, torch.Tensor]:
    Ks, inv_Ks = intrinsics_pyramid(NORMALISED_KITTI_K, width, height, 1)
    return (torch.from_numpy(Ks[0]).expand(batch, 4, 4), torch.from_numpy(inv_Ks[0]).expand(batch, 4, 4))


def sampling_grid(depth: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    K, inv_K = camera(depth.shape[0])
    return Project3D(H, W)(BackprojectDepth(H, W)(depth, inv_K), K, T)


def translation(x: float = 0.0, y: float = 0.0, z: float = 0.0, batch: int = 1) -> torch.Tensor:
    return translation_matrix(torch.tensor([[x, y, z]]).expand(batch, 3))


# -- warping ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch,z", [(1, 1.0), (3, 7.0), (2, 80.0)])
def test_identity_pose_and_constant_depth_warp_an_image_onto_itself(batch, z):
    image = torch.rand(batch, 3, H, W)
    grid = sampling_grid(torch.full((batch, 1, H, W), z), torch.eye(4).expand(batch, 4, 4))
    torch.testing.assert_close(warp(image, grid), image, atol=1e-5, rtol=0)


def test_identity_grid_is_the_align_corners_true_grid():
    grid = sampling_grid(torch.full((2, 1, H, W), 3.0), torch.eye(4).expand(2, 4, 4))
    base = F.affine_grid(torch.eye(2, 3).expand(2, 2, 3), [2, 1, H, W], align_corners=True)
    torch.testing.assert_close(grid, base, atol=1e-5, rtol=0)


@pytest.mark.parametrize("axis,tx,z", [(0, 0.5, 5.0), (0, -0.3, 2.0), (0, 0.1, 20.0), (1, 0.2, 4.0), (1, -0.05, 1.0)])
def test_sideways_translation_moves_pixels_by_f_t_over_z(axis, tx, z):
    offset = [0.0, 0.0]
    offset[axis] = tx
    grid = sampling_grid(torch.full((1, 1, H, W), z), translation(*offset))
    size = (W, H)[axis]
    moved = (grid[0, ..., axis] + 1) / 2 * (size - 1)
    pixel = torch.arange(size, dtype=torch.float32)
    pixel = pixel.expand(H, W) if axis == 0 else pixel[:, None].expand(H, W)
    focal = (FX, FY)[axis]
    torch.testing.assert_close(moved - pixel, torch.full((H, W), focal * tx / z), atol=1e-4, rtol=0)


@pytest.mark.parametrize("shift", [2, -3])
def test_translation_by_a_whole_pixel_count_samples_the_shifted_image(shift):
    z = 5.0
    image = torch.rand(2, 3, H, W)
    warped = warp(image, sampling_grid(torch.full((2, 1, H, W), z), translation(shift * z / FX, batch=2)))
    # Pixel u reads u + shift; the columns that would read outside the image are border-padded.
    inside = slice(0, W - shift) if shift > 0 else slice(-shift, W)
    source = slice(shift, W) if shift > 0 else slice(0, W + shift)
    torch.testing.assert_close(warped[..., inside], image[..., source], atol=1e-4, rtol=0)
    border = W - 1 if shift > 0 else 0
    edge = slice(W - shift, W) if shift > 0 else slice(0, -shift)
    torch.testing.assert_close(warped[..., edge], image[..., border:border + 1].expand_as(warped[..., edge]),
                               atol=1e-4, rtol=0)


def test_warp_sends_nan_coordinates_to_the_border():
    image = torch.rand(1, 3, H, W)
    grid = torch.full((1, H, W, 2), float("nan"))
    warped = warp(image, grid)
    torch.testing.assert_close(warped, image[..., -1:, -1:].expand_as(warped))


# -- backprojection and projection ----------------------------------------------------------------------------
def test_backprojection_scales_the_ray_of_each_pixel_by_its_depth():
    depth = torch.rand(2, 1, H, W) * 10 + 1
    _, inv_K = camera(2)
    points = BackprojectDepth(H, W)(depth, inv_K)
    assert points.shape == (2, 4, H * W)
    v, u = 5, 17
    index = v * W + u
    expected = depth[1, 0, v, u] * (inv_K[1, :3, :3] @ torch.tensor([u, v, 1.0]))
    torch.testing.assert_close(points[1, :3, index], expected)
    assert torch.all(points[:, 3] == 1)
    assert points[1, 2, index] == pytest.approx(depth[1, 0, v, u].item())


def test_one_backprojection_layer_serves_any_batch_size_and_keeps_no_state():
    layer = BackprojectDepth(H, W)
    _, inv_K = camera(4)
    depth = torch.rand(4, 1, H, W)
    batched = layer(depth, inv_K)
    single = layer(depth[2:3], inv_K[2:3])
    torch.testing.assert_close(batched[2:3], single)
    assert layer.state_dict() == {}


def test_projection_of_points_in_front_of_the_camera_gives_their_pixels():
    K, inv_K = camera(1)
    u, v, z = 12.0, 7.0, 4.0
    point = torch.tensor([[(u - 0.5 * W) * z / FX, (v - 0.5 * H) * z / FY, z, 1.0]]).T.expand(1, 4, H * W)
    grid = Project3D(H, W)(point, K, torch.eye(4)[None])
    torch.testing.assert_close(grid[0, 0, 0], torch.tensor([u / (W - 1), v / (H - 1)]) * 2 - 1)


# -- rotations and transforms ---------------------------------------------------------------------------------
@pytest.mark.parametrize("axis,vector,image", [
    (0, [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]),   # about x: y -> z
    (1, [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]),  # about y: x -> -z
    (2, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),   # about z: x -> y
])
def test_a_quarter_turn_about_each_axis(axis, vector, image):
    axisangle = torch.zeros(1, 1, 3)
    axisangle[0, 0, axis] = math.pi / 2
    R = rot_from_axisangle(axisangle)[0]
    torch.testing.assert_close(R[:3, :3] @ torch.tensor(vector), torch.tensor(image), atol=1e-6, rtol=0)
    torch.testing.assert_close(R[3], torch.tensor([0.0, 0, 0, 1]))
    torch.testing.assert_close(R[:3, 3], torch.zeros(3))


def test_rotations_are_orthonormal_and_equal_the_exponential_of_the_cross_matrix():
    vec = torch.randn(16, 1, 3, dtype=torch.float64) * 1.5
    R = rot_from_axisangle(vec)[:, :3, :3]
    # Orthonormal up to the 1e-7 added to the angle before normalising the axis (the reference's guard).
    eye = torch.eye(3, dtype=torch.float64).expand(16, 3, 3)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(16, dtype=torch.float64), atol=1e-6, rtol=0)
    x, y, z = vec[:, 0].unbind(1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], 1).view(16, 3, 3)
    torch.testing.assert_close(R, torch.linalg.matrix_exp(cross), atol=1e-6, rtol=0)


def test_zero_rotation_is_the_identity_with_finite_gradients():
    vec = torch.zeros(2, 1, 3, requires_grad=True)
    R = rot_from_axisangle(vec)
    torch.testing.assert_close(R, torch.eye(4).expand(2, 4, 4))
    R.sum().backward()
    assert torch.isfinite(vec.grad).all()


def test_flat_and_nested_parameter_shapes_agree():
    vec, t = torch.randn(3, 1, 3), torch.randn(3, 1, 3)
    torch.testing.assert_close(rot_from_axisangle(vec), rot_from_axisangle(vec[:, 0]))
    torch.testing.assert_close(translation_matrix(t), translation_matrix(t[:, 0]))
    assert torch.equal(translation_matrix(t)[:, :3, 3], t[:, 0])


def test_forward_transform_rotates_then_translates():
    axisangle, t = torch.randn(3, 1, 3) * 0.5, torch.randn(3, 1, 3)
    M = transformation_from_parameters(axisangle, t)
    R = rot_from_axisangle(axisangle)[:, :3, :3]
    point = torch.randn(3, 3, 1)
    moved = M @ torch.cat([point, torch.ones(3, 1, 1)], 1)
    torch.testing.assert_close(moved[:, :3], R @ point + t.transpose(1, 2), atol=1e-6, rtol=0)


def test_invert_gives_the_inverse_transform():
    axisangle, t = torch.randn(5, 1, 3) * 0.3, torch.randn(5, 1, 3)
    forward = transformation_from_parameters(axisangle, t)
    backward = transformation_from_parameters(axisangle, t, invert=True)
    torch.testing.assert_close(backward, torch.linalg.inv(forward), atol=1e-5, rtol=0)


# -- disparity and intrinsics ---------------------------------------------------------------------------------
@pytest.mark.parametrize("min_depth,max_depth", [(0.1, 100.0), (0.5, 80.0)])
def test_disparity_zero_and_one_give_max_and_min_depth(min_depth, max_depth):
    scaled, depth = disp_to_depth(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), min_depth, max_depth)
    torch.testing.assert_close(depth[[0, 2]], torch.tensor([max_depth, min_depth], dtype=torch.float64))
    torch.testing.assert_close(scaled, 1 / depth)
    assert scaled[1] == pytest.approx((1 / min_depth + 1 / max_depth) / 2)


def test_intrinsics_scale_with_the_pyramid():
    Ks, inv_Ks = intrinsics_pyramid(NORMALISED_KITTI_K, 640, 192, 4)
    assert len(Ks) == len(inv_Ks) == 4
    assert all(k.dtype == np.float32 and k.shape == (4, 4) for k in Ks + inv_Ks)
    for scale, (width, height) in enumerate([(640, 192), (320, 96), (160, 48), (80, 24)]):
        assert Ks[scale][0, 0] == pytest.approx(0.58 * width) and Ks[scale][1, 1] == pytest.approx(1.92 * height)
        assert Ks[scale][0, 2] == pytest.approx(0.5 * width) and Ks[scale][1, 2] == pytest.approx(0.5 * height)
        np.testing.assert_allclose(Ks[scale] @ inv_Ks[scale], np.eye(4), atol=1e-4)


def test_three_by_three_intrinsics_equal_their_four_by_four_form():
    Ks3, inv3 = intrinsics_pyramid(NORMALISED_KITTI_K[:3, :3], 320, 96, 2)
    Ks4, inv4 = intrinsics_pyramid(NORMALISED_KITTI_K, 320, 96, 2)
    for a, b in zip(Ks3 + inv3, Ks4 + inv4):
        np.testing.assert_array_equal(a, b)


def test_intrinsics_of_another_shape_are_refused():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        intrinsics_pyramid(np.zeros((2, 3)), 640, 192, 1)
