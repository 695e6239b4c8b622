"""Pose evaluation: the reference's snippet ATE, full-trajectory errors, ground-truth poses, the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from md2.core.checkpoint import save_weights_folder
from md2.core.evaluation.pose import (
    gt_relative_poses,
    predict_relative_poses,
    read_gt_poses,
    score_poses,
    snippet_errors,
    trajectory_positions,
)
from md2.core.evaluation.pose_job import load_pose_networks
from md2.core.evaluation.report import PLOT_COLOURS, plot_trajectories
from md2.core.geometry import transformation_from_parameters
from md2.core.networks import PoseDecoder, ResnetEncoder
from md2.data.kitti import KITTIOdomDataset
from md2.data.sample import collate_samples
from md2.errors import CheckpointError, DataError


def _rotation(yaw: float, pitch: float = 0.0) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return about_y @ about_x


def _drive(frames: int = 40, seed: int = 0) -> np.ndarray:
    """Camera-to-world poses (frames, 4, 4) of a car turning and going up and down a little."""
    rng = np.random.default_rng(seed)
    poses = np.zeros((frames, 4, 4))
    yaw, position = 0.3, np.array([2.0, -1.0, 5.0])
    for i in range(frames):
        yaw += rng.normal(0, 0.03)
        rotation = _rotation(yaw, 0.02 * np.sin(i / 5))
        position = position + rotation @ np.array([0.0, rng.normal(0, 0.02), 1.0 + rng.normal(0, 0.1)])
        poses[i, :3, :3], poses[i, :3, 3], poses[i, 3, 3] = rotation, position, 1
    return poses


def _write_poses(path: Path, poses: np.ndarray) -> Path:
    np.savetxt(path, poses[:, :3].reshape(len(poses), 12))
    return path


def test_relative_poses_map_points_from_one_camera_to_the_next():
    poses = _drive(6)
    local = gt_relative_poses(poses)
    point_in_camera_2 = np.array([0.3, -0.2, 7.0, 1.0])
    in_world = poses[2] @ point_in_camera_2
    assert np.allclose(local[2] @ point_in_camera_2, np.linalg.inv(poses[3]) @ in_world)


def test_trajectory_positions_recover_the_drive_from_its_relative_poses():
    poses = _drive(12)
    positions = trajectory_positions(gt_relative_poses(poses))
    assert np.allclose(positions, (np.linalg.inv(poses[0]) @ poses)[:, :3, 3], atol=1e-9)


def test_true_relative_poses_score_zero_everywhere():
    local = gt_relative_poses(_drive())
    scores = score_poses(local, local)
    assert scores.snippet_errors.shape == (len(local),)
    assert scores.snippet_mean < 1e-12 and scores.snippet_std < 1e-12
    assert scores.trajectory["ate_rmse"] < 1e-9
    assert scores.trajectory["rel_translation"] < 1e-9 and scores.trajectory["rel_rotation"] < 1e-5
    assert scores.trajectory["scale"] == pytest.approx(1.0)
    assert np.allclose(scores.pred_xyz, scores.gt_xyz, atol=1e-9)


def test_scale_free_prediction_is_aligned_by_the_scale():
    """Monocular networks predict translation up to scale: the snippet and Sim(3) alignments remove it."""
    local = gt_relative_poses(_drive())
    small = local.copy()
    small[:, :3, 3] *= 0.25
    scores = score_poses(small, local)
    assert scores.snippet_mean < 1e-12
    assert scores.trajectory["ate_rmse"] < 1e-9
    assert scores.trajectory["scale"] == pytest.approx(4.0)


def test_wrong_poses_score_clearly_higher():
    local = gt_relative_poses(_drive())
    rng = np.random.default_rng(1)
    noisy = local.copy()
    noisy[:, :3, 3] += rng.normal(0, 0.3, (len(local), 3))
    noisy[:, :3, :3] = noisy[:, :3, :3] @ np.stack([_rotation(a) for a in rng.normal(0, 0.05, len(local))])
    scores = score_poses(noisy, local)
    assert scores.snippet_mean > 0.05
    assert scores.trajectory["ate_rmse"] > 0.5
    assert scores.trajectory["rel_translation"] > 10 and scores.trajectory["rel_rotation"] > 1.0


def test_snippet_error_by_hand():
    """Two straight 1 m steps; the prediction's second step also moves 1 m sideways.

    The reference chains the relative poses themselves, so its positions run along -z. Snippet from frame 0
    (3 positions): gt (0,0,0) (0,0,-1) (0,0,-2); pred (0,0,0) (0,0,-1) (-1,0,-2); the best scale
    s = sum(gt * pred) / sum(pred^2) = 5 / 6; error = |pred s - gt| / 3. From frame 1 (2 positions): gt (0,0,0)
    (0,0,-1), pred (0,0,0) (-1,0,-1): s = 1 / 2, error = |(-0.5, 0, 0.5)| / 2.
    """
    step = np.eye(4)
    step[2, 3] = -1.0  # camera i -> i+1 when driving 1 m forward
    sideways = step.copy()
    sideways[0, 3] = -1.0
    gt = np.stack([step, step])
    pred = np.stack([step, sideways])
    first = np.array([[0, 0, 0], [0, 0, -5 / 6], [-5 / 6, 0, -10 / 6]]) - np.array([[0, 0, 0], [0, 0, -1], [0, 0, -2]])
    second = np.array([-0.5, 0, 0.5])
    expected = [np.sqrt((first**2).sum()) / 3, np.sqrt((second**2).sum()) / 2]
    assert np.allclose(snippet_errors(pred, gt, track_length=5), expected)


def test_snippets_need_one_prediction_per_ground_truth_step():
    local = gt_relative_poses(_drive(10))
    with pytest.raises(DataError, match="8 predicted poses for 9"):
        snippet_errors(local[:8], local)


def test_gt_poses_file_is_read_as_4x4(tmp_path):
    poses = _drive(5)
    assert np.allclose(read_gt_poses(_write_poses(tmp_path / "09.txt", poses)), poses)


@pytest.mark.parametrize("content, message", [(None, "missing ground-truth poses"),
                                              ("1 2 3\n4 5 6\n", "12 numbers"),
                                              ("not numbers\n", "cannot read poses")])
def test_bad_gt_poses_file_is_a_data_error(tmp_path, content, message):
    path = tmp_path / "09.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_gt_poses(path)


def test_plot_draws_both_trajectories(tmp_path):
    local = gt_relative_poses(_drive())
    scores = score_poses(local, local)
    noisy_xyz = scores.pred_xyz + np.array([3.0, 0, 0])
    path = plot_trajectories(tmp_path / "plots" / "odom.png", scores.gt_xyz, noisy_xyz, title="test", size=400)
    with Image.open(path) as image:
        assert image.size == (400, 400) and image.format == "PNG"
        colours = {colour for _, colour in image.convert("RGB").getcolors(400 * 400)}
    assert set(PLOT_COLOURS.values()) <= colours


# -- the network path, random weights ------------------------------------------------------------------------
def _odometry(root: Path, frames: int = 6) -> list[str]:
    """A tiny KITTI odometry sequence 09 (PNG images and poses) and its test lines."""
    images = root / "sequences" / "09" / "image_2"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for frame in range(frames):
        Image.fromarray(rng.integers(0, 255, (90, 300, 3), dtype=np.uint8)).save(images / f"{frame:06d}.png")
    (root / "poses").mkdir()
    _write_poses(root / "poses" / "09.txt", _drive(frames))
    return [f"9 {frame} l" for frame in range(frames - 1)]


def _pose_weights(folder: Path, num_layers: int = 18) -> Path:
    torch.manual_seed(0)
    encoder = ResnetEncoder(num_layers, pretrained=False, num_input_images=2)
    decoder = PoseDecoder(encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)
    return save_weights_folder(folder, {"pose_encoder": encoder, "pose": decoder}, height=64, width=192,
                               use_stereo=False)


def test_random_pose_network_predicts_one_transform_per_pair(tmp_path):
    lines = _odometry(tmp_path / "odom")
    encoder, decoder, layers = load_pose_networks(_pose_weights(tmp_path / "w"), None, torch.device("cpu"))
    assert layers == 18
    dataset = KITTIOdomDataset(tmp_path / "odom", lines, 64, 192, (0, 1), num_scales=1, img_ext=".png",
                               load_depth=False)
    poses = predict_relative_poses(encoder, decoder, dataset, torch.device("cpu"), batch_size=2,
                                   collate_fn=collate_samples)
    assert poses.shape == (5, 4, 4) and poses.dtype == np.float32
    assert np.allclose(poses[:, 3], [0, 0, 0, 1])
    assert np.allclose(np.linalg.det(poses[:, :3, :3]), 1, atol=1e-5)
    pair = torch.cat([dataset[3].color[0][0], dataset[3].color[1][0]])[None]
    with torch.no_grad():
        axisangle, translation = decoder([encoder(pair)])
    assert np.allclose(poses[3], transformation_from_parameters(axisangle[:, 0], translation[:, 0])[0], atol=1e-6)
    scores = score_poses(poses, gt_relative_poses(read_gt_poses(tmp_path / "odom" / "poses" / "09.txt")))
    assert np.isfinite(scores.snippet_mean) and scores.snippet_mean > 0.01


def test_pose_networks_are_sized_from_the_weights(tmp_path):
    *_, layers = load_pose_networks(_pose_weights(tmp_path / "w", num_layers=34), None, torch.device("cpu"))
    assert layers == 34


def test_weights_without_a_pose_network_are_refused(tmp_path):
    folder = _pose_weights(tmp_path / "w")
    (folder / "pose.pth").unlink()
    with pytest.raises(CheckpointError, match="no pose.pth"):
        load_pose_networks(folder, None, torch.device("cpu"))
