"""Odometry metrics: the reference's 5-frame snippet ATE, and full-trajectory ATE / relative errors.

Poses are 4x4 numpy arrays, translations in metres for the ground truth (arbitrary units for monocular
predictions: every error here first aligns the prediction's scale). "Global" poses G are camera-to-world;
"local" poses are transforms between consecutive frames.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from md2.errors import DataError


def local_poses_from_global(global_poses: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-to-world poses -> (N-1, 4, 4) local poses ``inv(inv(G[i-1]) @ G[i])``, as the reference.

    ``inv(G[i-1]) @ G[i]`` is camera i's pose in camera i-1's frame; its inverse, returned, maps points from
    camera i-1's frame to camera i's (what the pose network predicts for the pair [i-1, i]).
    """
    global_poses = np.asarray(global_poses, dtype=np.float64)
    steps = np.linalg.inv(global_poses[:-1]) @ global_poses[1:]
    return np.linalg.inv(steps)


def dump_xyz(source_to_target_transformations: np.ndarray) -> np.ndarray:
    """Positions (N+1, 3) of ``cam_to_world`` chained from the identity: ``cam_to_world = cam_to_world @ T``.

    The first row is the identity's position (the origin); row k is the translation of T_0 @ ... @ T_{k-1}.
    """
    cam_to_world = np.eye(4)
    xyzs = [cam_to_world[:3, 3]]
    for transform in source_to_target_transformations:
        cam_to_world = cam_to_world @ transform
        xyzs.append(cam_to_world[:3, 3])
    return np.array(xyzs)


def compute_ate(gtruth_xyz: np.ndarray, pred_xyz_in: np.ndarray) -> float:
    """The reference's snippet ATE of two (L, 3) position tracks.

    The prediction is shifted so that the first positions coincide, scaled by the least-squares factor
    sum(gt * pred) / sum(pred^2), and the error is sqrt(sum of squared residuals) / L (the reference divides
    the root of the sum, not the sum, by the track length).
    """
    offset = gtruth_xyz[0] - pred_xyz_in[0]
    pred_xyz = pred_xyz_in + offset[None, :]
    scale = np.sum(gtruth_xyz * pred_xyz) / np.sum(pred_xyz ** 2)
    alignment_error = pred_xyz * scale - gtruth_xyz
    return float(np.sqrt(np.sum(alignment_error ** 2)) / gtruth_xyz.shape[0])


def snippet_errors(gt_local: np.ndarray, pred_local: np.ndarray, track_length: int = 5) -> np.ndarray:
    """The reference's ATE for every start frame: (N,) errors for N local poses (N + 1 frames).

    For i in 0 .. N-1 (the reference's ``range(num_frames - 1)``), the local poses i .. i + track_length - 2
    (fewer at the end, down to one) of each sequence are chained by :func:`dump_xyz` and compared by
    :func:`compute_ate`.

    Raises:
        DataError: the two sequences differ in length.
    """
    if len(gt_local) != len(pred_local):
        raise DataError(f"{len(pred_local)} predicted poses for {len(gt_local)} ground-truth steps")
    steps = track_length - 1
    errors = np.empty(len(gt_local))
    for i in range(len(gt_local)):
        errors[i] = compute_ate(dump_xyz(gt_local[i:i + steps]), dump_xyz(pred_local[i:i + steps]))
    return errors


def umeyama_alignment(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Similarity (R (3, 3), t (3,), s) minimising sum |target - (s R source + t)|^2 over (N, 3) point sets.

    Umeyama (1991): R from the SVD of the cross-covariance (a proper rotation, no reflection), s = trace(D S) /
    variance of the source; s = 1 when the source points all coincide.
    """
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
    """Root mean square position error over the N + 1 aligned positions, metres."""
    rel_translation: float
    """Mean over steps of |s t_pred - t_gt| / |t_gt|, in % (steps with |t_gt| < 1 micrometre are left out)."""
    rel_rotation: float
    """Mean over steps of the angle of R_gt^T R_pred, in degrees per frame (not per metre)."""
    scale: float
    """The alignment's scale s (predicted units -> metres)."""


def trajectory_errors(gt_motion: np.ndarray, pred_motion: np.ndarray) -> TrajectoryErrors:
    """Chain both step sequences from the identity, align the positions, and measure ATE and relative errors.

    Args:
        gt_motion, pred_motion: (N, 4, 4) steps M_i chained as ``C_{i+1} = C_i @ M_i`` (:func:`dump_xyz`), so
            for the true camera path M_i is camera i+1's pose in camera i's frame, the inverse of
            :func:`local_poses_from_global`'s poses (the reference's snippets chain those uninverted).
    The positions are aligned by :func:`umeyama_alignment`; the relative errors compare each step M_i alone,
    its translation scaled by the alignment's scale (see :class:`TrajectoryErrors` for the definitions).
    """
    if len(gt_motion) != len(pred_motion):
        raise DataError(f"{len(pred_motion)} predicted poses for {len(gt_motion)} ground-truth steps")
    gt_xyz, pred_xyz = dump_xyz(gt_motion), dump_xyz(pred_motion)
    R, t, scale = umeyama_alignment(pred_xyz, gt_xyz)
    aligned = scale * pred_xyz @ R.T + t
    ate = float(np.sqrt(np.mean(np.sum((aligned - gt_xyz) ** 2, axis=1))))
    step_gt = np.linalg.norm(gt_motion[:, :3, 3], axis=1)
    step_error = np.linalg.norm(scale * pred_motion[:, :3, 3] - gt_motion[:, :3, 3], axis=1)
    valid = step_gt > 1e-6
    rel_translation = float(100 * np.mean(step_error[valid] / step_gt[valid])) if valid.any() else 0.0
    relative_rotations = np.einsum("nji,njk->nik", gt_motion[:, :3, :3], pred_motion[:, :3, :3])
    cosines = np.clip((np.trace(relative_rotations, axis1=1, axis2=2) - 1) / 2, -1, 1)
    rel_rotation = float(np.degrees(np.arccos(cosines)).mean())
    return TrajectoryErrors(ate, rel_translation, rel_rotation, scale)
