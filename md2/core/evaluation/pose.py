"""KITTI odometry evaluation of the pose network, as the reference's evaluate_pose.py, plus full trajectories.

Poses are 4x4 matrices. A relative pose ``T_i`` maps points from camera i to camera i+1 (what the pose
network predicts for frames [0, 1] of a test line); its ground truth is ``inv(inv(G_i) @ G_{i+1})`` from the
camera-to-world poses ``G`` of ``poses/NN.txt``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from md2.core.evaluation.datasets import evaluation_loader, worker_batches
from md2.core.geometry import transformation_from_parameters
from md2.core import pose_metrics
from md2.core.pose_metrics import dump_xyz, local_poses_from_global, trajectory_errors, umeyama_alignment
from md2.errors import DataError

TRACK_LENGTH = 5
"""Frames per snippet in the reference's ATE: 4 relative poses chained from the identity."""


@dataclass(frozen=True)
class PoseScores:
    """Snippet ATE (the paper's number, in metres after per-snippet scale alignment) and full-trajectory
    errors of one sequence.

    snippet_errors: (N,) one ATE per start frame.
    trajectory: full-trajectory metrics (``ate_rmse`` m, ``rel_translation`` %, ``rel_rotation`` degrees per
        frame, ``scale``): see :func:`score_poses`.
    gt_xyz, pred_xyz: (N + 1, 3) true positions and predicted positions after the similarity alignment.
    """

    snippet_errors: np.ndarray
    trajectory: dict[str, float]
    gt_xyz: np.ndarray
    pred_xyz: np.ndarray

    @property
    def snippet_mean(self) -> float:
        return float(np.mean(self.snippet_errors))

    @property
    def snippet_std(self) -> float:
        return float(np.std(self.snippet_errors))


# -- predictions -------------------------------------------------------------------------------------------
@torch.inference_mode()
def predict_relative_poses(pose_encoder: torch.nn.Module, pose_decoder: torch.nn.Module, dataset: Dataset,
                           device: torch.device, batch_size: int = 16, num_workers: int = 0,
                           collate_fn: Callable | None = None,
                           on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Relative poses frame 0 -> frame 1 of every sample (the reference's separate-ResNet pose network).

    ``dataset`` yields samples with frames 0 and 1 (``color[f][0]`` (3, H, W)); the two images are stacked on
    the channel axis, encoded, decoded, and the first predicted transform kept:
    ``transformation_from_parameters(axisangle[:, 0], translation[:, 0])``.

    Returns:
        (N, 4, 4) float32.
    """
    loader = evaluation_loader(dataset, batch_size, num_workers, device.type == "cuda", collate_fn)
    chunks = []
    for batch in worker_batches(loader):
        pair = torch.cat([batch.color[0][0], batch.color[1][0]], 1).to(device, non_blocking=True)
        axisangle, translation = pose_decoder([pose_encoder(pair)])
        poses = transformation_from_parameters(axisangle[:, 0], translation[:, 0])
        chunks.append(poses.float().cpu().numpy())
        if on_batch is not None:
            on_batch(pair.shape[0])
    if not chunks:
        raise DataError("the split lists no frame pairs to predict")
    return np.concatenate(chunks)


# -- ground truth ------------------------------------------------------------------------------------------
def read_gt_poses(path: Path) -> np.ndarray:
    """Camera-to-world poses (N, 4, 4) float64 from a KITTI odometry poses file (one 3x4 matrix a line)."""
    path = Path(path).expanduser()
    try:
        rows = np.loadtxt(path, ndmin=2)
    except FileNotFoundError:
        raise DataError(f"missing ground-truth poses {path} (KITTI odometry: data_odometry_poses.zip)") from None
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read poses {path}: {error}") from None
    if rows.shape[1] != 12 or len(rows) < 2:
        raise DataError(f"{path} must hold at least two lines of 12 numbers (3x4 poses), got shape {rows.shape}")
    poses = np.zeros((len(rows), 4, 4))
    poses[:, :3] = rows.reshape(-1, 3, 4)
    poses[:, 3, 3] = 1
    return poses


def gt_relative_poses(global_poses: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-to-world poses -> (N - 1, 4, 4) relative poses ``inv(inv(G[i-1]) @ G[i])``."""
    return local_poses_from_global(global_poses)


# -- scoring -----------------------------------------------------------------------------------------------
def snippet_errors(pred_poses: np.ndarray, gt_local_poses: np.ndarray,
                   track_length: int = TRACK_LENGTH) -> np.ndarray:
    """The reference's ATE: for each start i, the next ``track_length - 1`` relative poses (fewer at the end)
    chained from the identity, aligned on the first position and by the least-squares scale.

    Args:
        pred_poses, gt_local_poses: (N, 4, 4) relative poses, predicted and true.
    Returns:
        (N,) errors in the ground truth's units (metres).
    """
    return pose_metrics.snippet_errors(gt_local_poses, pred_poses, track_length)


def trajectory_positions(relative_poses: np.ndarray) -> np.ndarray:
    """Camera positions (N + 1, 3) in the first camera's frame from N relative poses camera i -> i+1.

    The reference's snippets chain the relative poses themselves (``C @ T``), which is not the path of the
    camera once it turns; the camera's own motion is ``inv(T)``, so ``C_{i+1} = C_i @ inv(T_i)``.
    """
    return dump_xyz(np.linalg.inv(np.asarray(relative_poses, dtype=np.float64)))


def score_poses(pred_poses: np.ndarray, gt_local_poses: np.ndarray,
                track_length: int = TRACK_LENGTH) -> PoseScores:
    """Snippet ATE (the reference's numbers) and full-trajectory errors of predicted relative poses.

    The full trajectory is the true camera path (see :func:`trajectory_positions`), its positions aligned to
    the truth by a 7-DoF similarity: ``ate_rmse`` (m), ``rel_translation`` (% of each true step),
    ``rel_rotation`` (degrees per frame), ``scale``.
    """
    errors = snippet_errors(pred_poses, gt_local_poses, track_length)
    # pose_metrics.trajectory_errors chains what it is given with C @ step: give it the camera motions.
    pred_motion = np.linalg.inv(np.asarray(pred_poses, dtype=np.float64))
    gt_motion = np.linalg.inv(np.asarray(gt_local_poses, dtype=np.float64))
    trajectory = trajectory_errors(gt_motion, pred_motion)._asdict()
    gt_xyz, pred_xyz = trajectory_positions(gt_local_poses), trajectory_positions(pred_poses)
    rotation, translation, scale = umeyama_alignment(pred_xyz, gt_xyz)
    aligned = scale * pred_xyz @ rotation.T + translation
    return PoseScores(errors, {k: float(v) for k, v in trajectory.items()}, gt_xyz, aligned)
