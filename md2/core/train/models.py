"""The networks a training run owns, and the depth and pose forward passes of one step.

Models are an ``nn.ModuleDict`` keyed by the official weights-file names (encoder, depth, pose_encoder,
pose, predictive_mask) so a weights folder maps onto it one to one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from md2.core.geometry import transformation_from_parameters
from md2.core.networks import DepthDecoder, ResnetEncoder, build_pose_networks
from md2.core.train.config import TrainConfig

if TYPE_CHECKING:
    from md2.core.train.step import StepOutputs


def build_models(config: TrainConfig) -> nn.ModuleDict:
    """Depth encoder + decoder, the pose network(s) when needed, and the predictive mask when asked for."""
    pretrained = config.model.weights_init == "pretrained"
    encoder = ResnetEncoder(config.model.num_layers, pretrained)
    models: dict[str, nn.Module] = {
        "encoder": encoder,
        "depth": DepthDecoder(encoder.num_ch_enc, config.model.scales),
    }
    if config.use_pose_net:
        models.update(build_pose_networks(config.model.pose_model_type, config.model.num_layers,
                                          config.num_pose_frames, pretrained))
    if config.model.predictive_mask:
        # One channel per source frame, "s" included (the reference counted its frame_ids after adding "s").
        models["predictive_mask"] = DepthDecoder(encoder.num_ch_enc, config.model.scales,
                                                 num_output_channels=len(config.frame_ids) - 1)
    return nn.ModuleDict(models)


def predict_depth(models: nn.ModuleDict, batch, config: TrainConfig) -> tuple["StepOutputs", dict]:
    """Disparities of the target frame; returns (outputs, features) where features maps frame id -> encoder
    features (every frame with the shared pose model, else only frame 0)."""
    from md2.core.train.step import StepOutputs

    if config.model.pose_model_type == "shared":
        frames = config.frame_ids
        stacked = models["encoder"](torch.cat([batch.color_aug[f][0] for f in frames]))
        per_frame = [torch.chunk(level, len(frames)) for level in stacked]
        features = {f: [level[i] for level in per_frame] for i, f in enumerate(frames)}
    else:
        features = {0: models["encoder"](batch.color_aug[0][0])}
    outputs = StepOutputs(disp=models["depth"](features[0]))
    if "predictive_mask" in models:
        outputs.predictive_mask = models["predictive_mask"](features[0])
    return outputs, features


def predict_poses(models: nn.ModuleDict, batch, features: dict, config: TrainConfig,
                  outputs: "StepOutputs") -> None:
    """Relative poses target -> each temporal source frame (fills cam_T_cam, axisangle, translation)."""
    pose_type = config.model.pose_model_type
    sources = [f for f in config.frame_ids[1:] if f != "s"]
    if config.num_pose_frames == 2:
        inputs = features if pose_type == "shared" else {f: batch.color_aug[f][0] for f in config.frame_ids}
        for frame_id in sources:
            pair = [inputs[frame_id], inputs[0]] if frame_id < 0 else [inputs[0], inputs[frame_id]]
            axisangle, translation = models["pose"](_pose_input(models, pose_type, pair))
            _store(outputs, frame_id, axisangle, translation, index=0, invert=frame_id < 0)
        return
    temporal = [f for f in config.frame_ids if f != "s"]
    if pose_type == "shared":
        pose_input = [features[f] for f in temporal]
    else:
        pose_input = _pose_input(models, pose_type, [batch.color_aug[f][0] for f in temporal])
    axisangle, translation = models["pose"](pose_input)
    for index, frame_id in enumerate(config.frame_ids[1:]):
        if frame_id != "s":
            _store(outputs, frame_id, axisangle, translation, index=index, invert=False)


def _pose_input(models: nn.ModuleDict, pose_type: str, frames: list):
    if pose_type == "shared":
        return frames
    stacked = torch.cat(frames, 1)
    if pose_type == "separate_resnet":
        return [models["pose_encoder"](stacked)]
    return stacked


def _store(outputs: "StepOutputs", frame_id: int, axisangle: torch.Tensor, translation: torch.Tensor,
           index: int, invert: bool) -> None:
    # Each frame keeps its own column (B, 1, 1, 3). With pose input "all" and PoseCNN the reference rebuilt
    # every frame's transform from column 0 with invert = frame < 0; md2 uses the frame's own prediction.
    outputs.axisangle[frame_id] = axisangle[:, index:index + 1]
    outputs.translation[frame_id] = translation[:, index:index + 1]
    outputs.pose_inverted[frame_id] = invert
    outputs.cam_T_cam[frame_id] = transformation_from_parameters(axisangle[:, index], translation[:, index],
                                                                 invert=invert)
