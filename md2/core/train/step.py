"""One training step of Monodepth2, as a pure function: (models, batch, config) -> losses and outputs.

Numerics follow the reference trainer exactly (depth and pose prediction, view synthesis, per-pixel minimum
reprojection with auto-masking, edge-aware smoothness, predictive mask); see :func:`compute_losses`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from md2.core.geometry import BackprojectDepth, Project3D, disp_to_depth, transformation_from_parameters, warp
from md2.core.losses import SSIM, photometric_error, smoothness_loss
from md2.core.train.config import FrameId, TrainConfig
from md2.core.train.models import predict_depth, predict_poses

IDENTITY_NOISE_STD = 1e-5
"""Gaussian noise added to the identity reprojection error to break ties with the warped error."""


@dataclass
class StepOutputs:
    """What a step predicted, for logging and tests. Shapes for batch B at training size H x W.

    disp: scale -> (B, 1, H/2^s, W/2^s) sigmoid disparity.
    depth: scale -> depth used for warping, (B, 1, H, W) (or the scale's size with v1 multiscale).
    cam_T_cam: source frame -> (B, 4, 4) transform from the target camera to the source camera.
    warped: (source frame, scale) -> (B, 3, H, W) source image sampled into the target view.
    identity_selection: scale -> (B, H, W) 1 where a warped error beat every identity error (auto-mask).
    predictive_mask: scale -> (B, sources, h, w) when the predictive mask is on.
    """

    disp: dict[int, torch.Tensor]
    depth: dict[int, torch.Tensor] = field(default_factory=dict)
    cam_T_cam: dict[FrameId, torch.Tensor] = field(default_factory=dict)
    axisangle: dict[FrameId, torch.Tensor] = field(default_factory=dict)
    translation: dict[FrameId, torch.Tensor] = field(default_factory=dict)
    pose_inverted: dict[FrameId, bool] = field(default_factory=dict)
    warped: dict[tuple[FrameId, int], torch.Tensor] = field(default_factory=dict)
    identity_selection: dict[int, torch.Tensor] = field(default_factory=dict)
    predictive_mask: dict[int, torch.Tensor] | None = None


class Warpers(nn.Module):
    """Backprojection and projection layers for every source scale (pixel grids cached as buffers): the grid
    that warps a source image into the target view at scale s is ``project[s](backproject[s](depth, inv_K), K, T)``
    (back-projected once per depth, projected once per source frame)."""

    def __init__(self, height: int, width: int, num_scales: int) -> None:
        super().__init__()
        sizes = [(height // 2**s, width // 2**s) for s in range(num_scales)]
        self.backproject = nn.ModuleList(BackprojectDepth(h, w) for h, w in sizes)
        self.project = nn.ModuleList(Project3D(h, w) for h, w in sizes)


def training_step(models: nn.ModuleDict, batch, config: TrainConfig, warpers: Warpers,
                  ssim: SSIM | None) -> tuple[dict[str, torch.Tensor], StepOutputs]:
    """Forward pass and losses for one batch (no backward, no optimiser).

    ``batch`` is a :class:`md2.data.sample.Batch` on the models' device; ``ssim`` is None with ``--no-ssim``.
    Returns ({"loss": total, "loss/0": ..., ...}, outputs).
    """
    outputs, features = predict_depth(models, batch, config)
    if config.use_pose_net:
        predict_poses(models, batch, features, config, outputs)
    synthesize_views(batch, outputs, config, warpers)
    return compute_losses(batch, outputs, config, ssim), outputs


def synthesize_views(batch, outputs: StepOutputs, config: TrainConfig, warpers: Warpers) -> None:
    """Warp every source frame into the target view at every scale (fills depth and warped)."""
    height, width = config.data.height, config.data.width
    for scale in config.model.scales:
        disp = outputs.disp[scale]
        if config.loss.v1_multiscale:
            source_scale = scale
        else:
            disp = F.interpolate(disp, [height, width], mode="bilinear", align_corners=False)
            source_scale = 0
        depth = disp_to_depth(disp, config.model.min_depth, config.model.max_depth)[1]
        outputs.depth[scale] = depth
        points = warpers.backproject[source_scale](depth, batch.inv_K[source_scale])
        for frame_id in config.frame_ids[1:]:
            T = _source_transform(frame_id, depth, batch, outputs, config)
            grid = warpers.project[source_scale](points, batch.K[source_scale], T)
            outputs.warped[(frame_id, scale)] = warp(batch.color[frame_id][source_scale], grid)


def _source_transform(frame_id: FrameId, depth: torch.Tensor, batch, outputs: StepOutputs,
                      config: TrainConfig) -> torch.Tensor:
    if frame_id == "s":
        return batch.stereo_T
    if config.model.pose_model_type == "posecnn":
        # PoseCNN predicts translation up to the depth's scale: the reference multiplies it by the mean
        # inverse depth of the prediction at each scale.
        mean_inv_depth = (1.0 / depth).mean(3, True).mean(2, True)
        return transformation_from_parameters(outputs.axisangle[frame_id][:, 0],
                                              outputs.translation[frame_id][:, 0] * mean_inv_depth[:, 0],
                                              invert=outputs.pose_inverted[frame_id])
    return outputs.cam_T_cam[frame_id]


def compute_losses(batch, outputs: StepOutputs, config: TrainConfig,
                   ssim: SSIM | None) -> dict[str, torch.Tensor]:
    """Per-scale minimum reprojection + smoothness losses and their mean over scales.

    Per scale s: the photometric error (0.85 SSIM + 0.15 L1, or L1) of every warped source against the target;
    with auto-masking, the errors of the unwarped sources (plus N(0, 1e-5) noise) join them; per pixel the
    minimum (or the mean with --avg-reprojection); its mean; plus smoothness x edge-aware smoothness of
    disp / mean(disp) at scale s, divided by 2^s. With the predictive mask the warped errors are multiplied by
    the mask and 0.2 x BCE(mask, 1) is added.
    """
    loss_config, sources = config.loss, config.frame_ids[1:]
    automask = not loss_config.disable_automasking
    losses: dict[str, torch.Tensor] = {}
    total = 0.0
    identity_full = None
    for scale in config.model.scales:
        source_scale = scale if loss_config.v1_multiscale else 0
        target = batch.color[0][source_scale]
        reprojection = torch.cat([photometric_error(outputs.warped[(f, scale)], target, ssim) for f in sources], 1)
        loss = 0.0
        identity = None
        if automask:
            # At full resolution the identity error is the same at every scale: computed once (same numbers).
            if identity_full is None or loss_config.v1_multiscale:
                identity_full = torch.cat([photometric_error(batch.color[f][source_scale], target, ssim)
                                           for f in sources], 1)
            identity = identity_full.mean(1, keepdim=True) if loss_config.avg_reprojection else identity_full
        elif config.model.predictive_mask:
            mask = outputs.predictive_mask[scale]
            if not loss_config.v1_multiscale:
                mask = F.interpolate(mask, [config.data.height, config.data.width], mode="bilinear",
                                     align_corners=False)
            reprojection = reprojection * mask
            loss = loss + 0.2 * F.binary_cross_entropy(mask, torch.ones_like(mask))
        if loss_config.avg_reprojection:
            reprojection = reprojection.mean(1, keepdim=True)
        if automask:
            identity = identity + torch.randn_like(identity) * IDENTITY_NOISE_STD
            combined = torch.cat((identity, reprojection), dim=1)
        else:
            combined = reprojection
        if combined.shape[1] == 1:
            to_optimise = combined
        else:
            to_optimise, chosen = torch.min(combined, dim=1)
            if automask:
                outputs.identity_selection[scale] = (chosen > identity.shape[1] - 1).float()
        loss = loss + to_optimise.mean()
        disp = outputs.disp[scale]
        norm_disp = disp / (disp.mean(2, True).mean(3, True) + 1e-7)
        loss = loss + loss_config.disparity_smoothness * smoothness_loss(norm_disp, batch.color[0][scale]) / 2**scale
        total = total + loss
        losses[f"loss/{scale}"] = loss
    losses["loss"] = total / len(config.model.scales)
    return losses
