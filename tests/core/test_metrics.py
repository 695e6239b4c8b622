"""md2.core.metrics and md2.core.pose_metrics against hand-computed arrays and known transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from md2.core.metrics import (DepthErrors, batch_depth_errors, compute_depth_errors, depth_errors_torch,
                              eigen_crop_mask, median_scale, post_process_disparity)
from md2.core.pose_metrics import (compute_ate, dump_xyz, local_poses_from_global, snippet_errors, trajectory_errors,
                                   umeyama_alignment)
from md2.errors import DataError

# gt, pred and the seven metrics worked out by hand: differences 0, -2, 1; ratios 1, 2, 4/3.
HAND_GT, HAND_PRED = [1.0, 2.0, 4.0], [1.0, 4.0, 3.0]
HAND_ERRORS = DepthErrors(abs_rel=(0 + 2 / 2 + 1 / 4) / 3, sq_rel=(0 + 4 / 2 + 1 / 4) / 3, rmse=math.sqrt(5 / 3),
                          rmse_log=math.sqrt((math.log(2) ** 2 + math.log(4 / 3) ** 2) / 3),
                          a1=1 / 3, a2=2 / 3, a3=2 / 3)


def numpy_errors(gt, pred) -> dict[str, float]:
    return compute_depth_errors(np.array(gt), np.array(pred))._asdict()


def torch_errors(gt, pred) -> dict[str, float]:
    errors = depth_errors_torch(torch.tensor(gt, dtype=torch.float64), torch.tensor(pred, dtype=torch.float64))
    return {name: value.item() for name, value in errors.items()}


# -- depth metrics --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("errors", [numpy_errors, torch_errors])
def test_metrics_against_hand_computation(errors):
    result = errors(HAND_GT, HAND_PRED)
    assert list(result) == list(DepthErrors._fields)
    assert result == pytest.approx(HAND_ERRORS._asdict(), rel=1e-12)


@pytest.mark.parametrize("errors", [numpy_errors, torch_errors])
def test_perfect_prediction_has_no_error(errors):
    gt = list(np.linspace(1, 80, 50))
    result = errors(gt, gt)
    assert result["abs_rel"] == 0 and result["sq_rel"] == 0 and result["rmse"] == 0 and result["rmse_log"] == 0
    assert result["a1"] == 1 and result["a2"] == 1 and result["a3"] == 1


def test_masked_torch_metrics_equal_the_metrics_of_the_masked_pixels():
    generator = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 1, 9, 13, generator=generator) * 50 + 1
    pred = gt * (torch.rand(2, 1, 9, 13, generator=generator) + 0.5)
    mask = torch.rand(2, 1, 9, 13, generator=generator) > 0.4
    gt[~mask] = 0  # masked-out pixels may hold anything, zeros included
    masked = depth_errors_torch(gt, pred, mask)
    expected = compute_depth_errors(gt[mask].double().numpy(), pred[mask].double().numpy())
    assert {k: v.item() for k, v in masked.items()} == pytest.approx(expected._asdict(), rel=1e-5)


def test_torch_metrics_without_valid_pixels_are_nan():
    errors = depth_errors_torch(torch.zeros(4), torch.ones(4), torch.zeros(4, dtype=torch.bool))
    assert all(torch.isnan(value) for value in errors.values())


@pytest.mark.parametrize("size,rows,cols", [((375, 1242), (153, 371), (44, 1197)),
                                            ((370, 1224), (151, 366), (43, 1180))])
def test_eigen_crop_bounds_are_truncated_as_the_reference(size, rows, cols):
    mask = eigen_crop_mask(*size)
    assert mask.shape == size and mask.dtype == bool
    r, c = np.nonzero(mask)
    assert (r.min(), r.max() + 1, c.min(), c.max() + 1) == (*rows, *cols)
    assert mask.sum() == (rows[1] - rows[0]) * (cols[1] - cols[0])


@pytest.mark.parametrize("gt,pred,ratio", [([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], 2.0),
                                           ([1.0, 3.0, 5.0, 100.0], [1.0, 1.0, 2.0, 2.0], 4.0 / 1.5)])
def test_median_scaling_ratio(gt, pred, ratio):
    scaled, found = median_scale(np.array(gt), np.array(pred))
    assert found == pytest.approx(ratio)
    np.testing.assert_allclose(scaled, np.array(pred) * ratio)


# l = column / 100 for 101 columns; l_mask = 1 - clip(20 (l - 0.05), 0, 1), r_mask its mirror.
@pytest.mark.parametrize("column,l_mask,r_mask", [(0, 1.0, 0.0), (5, 1.0, 0.0), (7, 0.6, 0.0), (9, 0.2, 0.0),
                                                  (10, 0.0, 0.0), (50, 0.0, 0.0), (93, 0.0, 0.6), (100, 0.0, 1.0)])
def test_post_processing_weights_at_hand_computed_columns(column, l_mask, r_mask):
    disp, flipped_back = np.full((2, 3, 101), 2.0), np.full((2, 3, 101), 6.0)
    result = post_process_disparity(disp, flipped_back)
    assert result.shape == (2, 3, 101)
    # The left edge comes from the flipped-back prediction, the right edge from the original.
    expected = r_mask * 2.0 + l_mask * 6.0 + (1 - l_mask - r_mask) * 4.0
    np.testing.assert_allclose(result[..., column], expected, rtol=1e-12)


def reference_batch_errors(depth_pred: torch.Tensor, depth_gt: torch.Tensor) -> dict[str, float]:
    """The trainer's recipe written out with gathered pixels and torch.median, for comparison."""
    pred = torch.nn.functional.interpolate(depth_pred, [375, 1242], mode="bilinear", align_corners=False)
    pred = pred.clamp(1e-3, 80)
    crop = torch.zeros_like(depth_gt, dtype=torch.bool)
    crop[:, :, 153:371, 44:1197] = True
    mask = (depth_gt > 0) & crop
    gt, pred = depth_gt[mask], pred[mask]
    pred = (pred * (torch.median(gt) / torch.median(pred))).clamp(1e-3, 80)
    errors = compute_depth_errors(gt.double().numpy(), pred.double().numpy())
    return {f"de/{name}": value for name, value in errors._asdict().items()}


def lidar_like(generator: torch.Generator) -> torch.Tensor:
    gt = torch.rand(2, 1, 375, 1242, generator=generator) * 70 + 2
    gt[torch.rand(gt.shape, generator=generator) > 0.1] = 0  # sparse, as a lidar scan
    gt[..., :153, :] = 1000.0  # outside the crop: must not count
    return gt


def test_batch_depth_errors_equal_the_gathered_recipe():
    generator = torch.Generator().manual_seed(1)
    depth_gt = lidar_like(generator)
    depth_pred = torch.rand(2, 1, 24, 80, generator=generator) * 30 + 1
    errors = {name: value.item() for name, value in batch_depth_errors(depth_pred, depth_gt).items()}
    assert errors == pytest.approx(reference_batch_errors(depth_pred, depth_gt), rel=1e-4)


def test_batch_depth_errors_of_a_scaled_perfect_prediction_are_zero():
    depth_gt = torch.full((2, 1, 375, 1242), 0.0)
    depth_gt[:, :, 200:300, 100:1100] = torch.linspace(5, 25, 1000)  # x 3 stays below the 80 m clamp
    errors = batch_depth_errors(3.0 * depth_gt.clamp(min=1.0), depth_gt)  # same size: no interpolation
    assert errors["de/abs_rel"].item() == pytest.approx(0, abs=1e-6)
    assert errors["de/a1"].item() == 1


# -- pose metrics ---------------------------------------------------------------------------------------------
def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = (axis + 1) % 3, (axis + 2) % 3
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def pose(R: np.ndarray, t) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, t
    return M


def driving_steps(count: int, seed: int = 0) -> np.ndarray:
    """(count, 4, 4) steps of about a metre forward with small turns."""
    rng = np.random.default_rng(seed)
    return np.stack([pose(rotation(1, rng.normal(0, 3)), rng.normal([0, 0, 1], 0.05)) for _ in range(count)])


def test_local_poses_are_the_inverse_steps_between_global_poses():
    steps = driving_steps(6)
    global_poses = np.stack([np.linalg.multi_dot([np.eye(4), *steps[:i]]) if i else np.eye(4) for i in range(7)])
    local = local_poses_from_global(global_poses)
    assert local.shape == (6, 4, 4)
    for i in range(1, 7):
        expected = np.linalg.inv(np.linalg.inv(global_poses[i - 1]) @ global_poses[i])
        np.testing.assert_allclose(local[i - 1], expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.inv(local), steps, atol=1e-12)


def test_dump_xyz_starts_at_the_origin_and_chains_on_the_right():
    steps = np.stack([pose(rotation(1, 90), [0, 0, 1]), pose(np.eye(3), [0, 0, 2])])
    # cam = I @ A: position (0, 0, 1); then cam @ B: (0, 0, 1) + R_y(90) (0, 0, 2) = (2, 0, 1).
    np.testing.assert_allclose(dump_xyz(steps), [[0, 0, 0], [0, 0, 1], [2, 0, 1]], atol=1e-12)


@pytest.mark.parametrize("pred,expected", [
    ([[0, 0, 0], [0, 1, 0]], 0.5),        # scale 0: the residual is the whole second point, sqrt(1) / 2
    ([[5, 5, 5], [7, 5, 5]], 0.0),        # offset and scale 2 are aligned away
    ([[0, 0, 0], [1, 1, 0]], math.sqrt(0.5) / 2),  # scale 1/2: residual (-1/2, 1/2, 0)
])
def test_snippet_ate_against_hand_computation(pred, expected):
    gt = np.array([[0.0, 0, 0], [1, 0, 0]])
    assert compute_ate(gt, np.array(pred, dtype=float)) == pytest.approx(expected, abs=1e-12)


def test_snippet_ate_is_zero_for_the_truth_at_any_scale_and_positive_otherwise():
    gt = driving_steps(12)
    scaled = gt.copy()
    scaled[:, :3, 3] *= 0.3
    errors = snippet_errors(gt, scaled)
    assert errors.shape == (12,) and errors.max() < 1e-12
    noisy = gt.copy()
    noisy[:, :3, 3] += np.random.default_rng(1).normal(0, 0.2, (12, 3))
    assert np.all(snippet_errors(gt, noisy)[:-1] > 1e-3)


def test_snippets_start_at_every_frame_and_shorten_at_the_end():
    gt, pred = driving_steps(7, seed=2), driving_steps(7, seed=3)
    errors = snippet_errors(gt, pred, track_length=5)
    for i, error in enumerate(errors):
        end = min(i + 4, 7)
        assert error == compute_ate(dump_xyz(gt[i:end]), dump_xyz(pred[i:end]))


def test_snippets_of_different_lengths_are_refused():
    with pytest.raises(DataError, match="6 predicted poses for 7"):
        snippet_errors(driving_steps(7), driving_steps(6))


@pytest.mark.parametrize("mirrored", [False, True])
def test_umeyama_recovers_a_similarity(mirrored):
    rng = np.random.default_rng(4)
    points = rng.normal(size=(30, 3))
    R = rotation(0, 20) @ rotation(1, -35) @ rotation(2, 50)
    t = np.array([1.0, -2.0, 0.5])
    target = 2.5 * points @ R.T + t
    if mirrored:
        target[:, 0] *= -1  # no proper rotation fits: the result must stay a rotation
    R_est, t_est, s_est = umeyama_alignment(points, target)
    assert np.linalg.det(R_est) == pytest.approx(1.0)
    if not mirrored:
        np.testing.assert_allclose(R_est, R, atol=1e-9)
        np.testing.assert_allclose(t_est, t, atol=1e-9)
        assert s_est == pytest.approx(2.5)


def test_trajectory_of_a_scaled_truth_has_no_error():
    gt = driving_steps(20)
    pred = gt.copy()
    pred[:, :3, 3] *= 0.5
    errors = trajectory_errors(gt, pred)
    assert errors.scale == pytest.approx(2.0)
    assert errors.ate_rmse < 1e-9 and errors.rel_translation < 1e-7 and errors.rel_rotation < 1e-5


def test_trajectory_rotation_error_is_in_degrees_per_frame():
    gt = driving_steps(20)
    pred = gt.copy()
    pred[:, :3, :3] = gt[:, :3, :3] @ rotation(0, 1.5)
    errors = trajectory_errors(gt, pred)
    assert errors.rel_rotation == pytest.approx(1.5)
    assert errors.ate_rmse > 0.01
