"""Odometry metrics: the reference's 5-frame snippet ATE, and full-trajectory ATE / relative errors.

Poses are 4x4 numpy arrays. "Local" poses are transforms between consecutive frames.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def local_poses_from_global(global_poses: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-to-world poses -> (N-1, 4, 4) local poses inv(inv(G[i-1]) @ G[i]), as the reference."""
    return np.stack([np.linalg.inv(np.linalg.inv(global_poses[i - 1]) @ global_poses[i])
                     for i in range(1, len(global_poses))])


def dump_xyz(source_to_target_transformations: np.ndarray) -> np.ndarray:
    """Camera positions (N+1, 3) when chaining transforms from the identity: cam_to_world = cam_to_world @ T."""
    cam_to_world = np.eye(4)
    xyzs = [cam_to_world[:3, 3]]
    for transform in source_to_target_transformations:
        cam_to_world = cam_to_world @ transform
        xyzs.append(cam_to_world[:3, 3])
    return np.array(xyzs)


def compute_ate(gtruth_xyz: np.ndarray, pred_xyz_in: np.ndarray) -> float:
    """The reference's snippet ATE: align the first positions, least-squares scale, sqrt(sum r^2) / length."""
    offset = gtruth_xyz[0] - pred_xyz_in[0]
    pred_xyz = pred_xyz_in + offset[None, :]
    scale = np.sum(gtruth_xyz * pred_xyz) / np.sum(pred_xyz ** 2)
    alignment_error = pred_xyz * scale - gtruth_xyz
    return float(np.sqrt(np.sum(alignment_error ** 2)) / gtruth_xyz.shape[0])


def snippet_errors(gt_local: np.ndarray, pred_local: np.ndarray, track_length: int = 5) -> np.ndarray:
    """ATE of every snippet of ``track_length - 1`` transforms starting at 0 .. N-2 (shorter at the end)."""
    count = len(pred_local)
    errors = []
    for i in range(0, count - 1):
        gt_xyz = dump_xyz(gt_local[i:i + track_length - 1])
        pred_xyz = dump_xyz(pred_local[i:i + track_length - 1])
        errors.append(compute_ate(gt_xyz, pred_xyz))
    return np.array(errors)


def umeyama_alignment(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Similarity (R, t, s) minimising |target - (s R source + t)|^2 over (N, 3) point sets (Umeyama 1991)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    src, tgt = source - mu_s, target - mu_t
    covariance = tgt.T @ src / len(source)
    U, D, Vt = np.linalg.svd(covariance)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    variance = (src ** 2).sum() / len(source)
    scale = float(np.trace(np.diag(D) @ S) / variance) if variance > 0 else 1.0
    t = mu_t - scale * R @ mu_s
    return R, t, scale


class TrajectoryErrors(NamedTuple):
    """Full-trajectory errors after a 7-DoF similarity alignment of the predicted positions."""

    ate_rmse: float
    """Root mean square position error, metres."""
    rel_translation: float
    """Mean relative translation error of consecutive frames, % of the true step length."""
    rel_rotation: float
    """Mean relative rotation error of consecutive frames, degrees per frame."""
    scale: float
    """The alignment's scale (predicted units -> metres)."""


def trajectory_errors(gt_local: np.ndarray, pred_local: np.ndarray) -> TrajectoryErrors:
    """Chain both local-pose sequences from the identity, align, and measure ATE and relative errors."""
    gt_xyz, pred_xyz = dump_xyz(gt_local), dump_xyz(pred_local)
    R, t, scale = umeyama_alignment(pred_xyz, gt_xyz)
    aligned = (scale * (R @ pred_xyz.T)).T + t
    ate = float(np.sqrt(np.mean(np.sum((aligned - gt_xyz) ** 2, axis=1))))
    step_gt = np.linalg.norm(gt_local[:, :3, 3], axis=1)
    step_error = np.linalg.norm(scale * pred_local[:, :3, 3] - gt_local[:, :3, 3], axis=1)
    valid = step_gt > 1e-6
    rel_translation = float(100 * np.mean(step_error[valid] / step_gt[valid])) if valid.any() else 0.0
    relative_rotations = np.einsum("nji,njk->nik", gt_local[:, :3, :3], pred_local[:, :3, :3])
    cosines = np.clip((np.trace(relative_rotations, axis1=1, axis2=2) - 1) / 2, -1, 1)
    rel_rotation = float(np.degrees(np.arccos(cosines)).mean())
    return TrajectoryErrors(ate, rel_translation, rel_rotation, scale)
