"""Depth metrics of the KITTI benchmarks, Eigen crop, median scaling and Monodepth's post-processing.

Evaluation runs in numpy (as the reference's evaluate_depth.py); :func:`depth_errors_torch` computes the same
metrics on tensors and :func:`batch_depth_errors` is what the trainer logs on lidar ground truth. Depths are in
metres. Odometry metrics are in :mod:`md2.core.pose_metrics`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

MIN_EVAL_DEPTH = 1e-3
MAX_EVAL_DEPTH = 80.0
GARG_CROP = (153, 371, 44, 1197)
"""Rows 153:371 and columns 44:1197 of a 375 x 1242 map: the crop the trainer's logged metrics use."""


class DepthErrors(NamedTuple):
    """The seven metrics, in the reference's order."""

    abs_rel: float
    sq_rel: float
    rmse: float
    rmse_log: float
    a1: float
    a2: float
    a3: float


def compute_depth_errors(gt: np.ndarray, pred: np.ndarray) -> DepthErrors:
    """Metrics between ground-truth and predicted depths (1-D arrays of the valid pixels, metres)."""
    thresh = np.maximum(gt / pred, pred / gt)
    a1 = (thresh < 1.25).mean()
    a2 = (thresh < 1.25 ** 2).mean()
    a3 = (thresh < 1.25 ** 3).mean()
    rmse = np.sqrt(((gt - pred) ** 2).mean())
    rmse_log = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    abs_rel = np.mean(np.abs(gt - pred) / gt)
    sq_rel = np.mean(((gt - pred) ** 2) / gt)
    return DepthErrors(abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3)


def eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """Bool (H, W) mask of Garg/Eigen's crop: rows [0.40810811 H, 0.99189189 H), cols [0.03594771 W, 0.96405229 W).

    Bounds are truncated to int32 as the reference did (``np.array(...).astype(np.int32)``).
    """
    top, bottom, left, right = np.array([0.40810811 * height, 0.99189189 * height,
                                         0.03594771 * width, 0.96405229 * width]).astype(np.int32)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def median_scale(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, float]:
    """Scale ``pred`` by median(gt) / median(pred); returns (scaled pred, ratio)."""
    ratio = float(np.median(gt) / np.median(pred))
    return pred * ratio, ratio


def post_process_disparity(disp: np.ndarray, flipped_back_disp: np.ndarray) -> np.ndarray:
    """Monodepth v1's combination of a disparity and the (flipped back) disparity of the flipped image.

    Both (N, H, W). With l = linspace(0, 1, W) per row, l_mask = 1 - clip(20 (l - 0.05), 0, 1) and r_mask the
    mirror of l_mask: r_mask * disp + l_mask * flipped_back_disp + (1 - l_mask - r_mask) * their mean. The left
    edge (occluded in the original view) comes from the flipped prediction, the right edge from the original.
    """
    _, height, width = disp.shape
    mean = 0.5 * (disp + flipped_back_disp)
    l, _ = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    l_mask = (1.0 - np.clip(20 * (l - 0.05), 0, 1))[None, ...]
    r_mask = l_mask[:, :, ::-1]
    return r_mask * disp + l_mask * flipped_back_disp + (1.0 - l_mask - r_mask) * mean


def depth_errors_torch(gt: torch.Tensor, pred: torch.Tensor,
                       mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The seven metrics on tensors, over the pixels where ``mask`` is True (all when None).

    ``gt``, ``pred`` (and ``mask``) of one shape, depths > 0 where masked in. Returns 0-d tensors keyed by
    :class:`DepthErrors`' field names. Masked-out pixels are replaced rather than gathered, so nothing waits
    for the device; with no valid pixel every metric is NaN.
    """
    if mask is not None:
        gt, pred = torch.where(mask, gt, 1.0), torch.where(mask, pred, 1.0)
        weight = mask.to(gt.dtype)
    else:
        weight = torch.ones_like(gt)
    count = weight.sum()

    def mean(values: torch.Tensor) -> torch.Tensor:
        return (values * weight).sum() / count

    thresh = torch.maximum(gt / pred, pred / gt)
    errors = {
        "abs_rel": mean(torch.abs(gt - pred) / gt),
        "sq_rel": mean((gt - pred) ** 2 / gt),
        "rmse": torch.sqrt(mean((gt - pred) ** 2)),
        "rmse_log": torch.sqrt(mean((torch.log(gt) - torch.log(pred)) ** 2)),
        "a1": mean((thresh < 1.25).to(gt.dtype)),
        "a2": mean((thresh < 1.25 ** 2).to(gt.dtype)),
        "a3": mean((thresh < 1.25 ** 3).to(gt.dtype)),
    }
    return {name: errors[name] for name in DepthErrors._fields}


def _masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """torch.median(values[mask]) (the lower middle value) without gathering: NaN elsewhere, nanmedian."""
    return torch.nanmedian(torch.where(mask, values, torch.nan))


def batch_depth_errors(depth_pred: torch.Tensor, depth_gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """The trainer's metrics on lidar ground truth, over the whole batch at once (one mask, as the reference).

    Args:
        depth_pred: (B, 1, h, w) predicted depth; upsampled bilinearly (align_corners=False) to the ground
            truth's size and clamped to [1e-3, 80].
        depth_gt: (B, 1, 375, 1242) lidar depth in metres, 0 where unknown.
    Pixels with gt > 0 inside the Garg crop (rows 153:371, columns 44:1197) count; the prediction is scaled by
    median(gt) / median(pred) over them (torch's median: the lower middle value, as the reference) and clamped
    again. Returns {"de/abs_rel": ..., ...} as 0-d float32 tensors, with no host synchronisation.
    """
    height, width = depth_gt.shape[-2:]
    depth_gt = depth_gt.detach().float()
    pred = F.interpolate(depth_pred.detach().float(), [height, width], mode="bilinear", align_corners=False)
    pred = torch.clamp(pred, MIN_EVAL_DEPTH, MAX_EVAL_DEPTH)
    # Slicing the crop out (after the full-size interpolation) keeps the same pixels as a crop mask, for half
    # the work.
    top, bottom, left, right = GARG_CROP
    depth_gt, pred = depth_gt[..., top:bottom, left:right], pred[..., top:bottom, left:right]
    mask = depth_gt > 0
    ratio = _masked_median(depth_gt, mask) / _masked_median(pred, mask)
    pred = torch.clamp(pred * ratio, MIN_EVAL_DEPTH, MAX_EVAL_DEPTH)
    errors = depth_errors_torch(depth_gt, pred, mask)
    return {f"de/{name}": value for name, value in errors.items()}
