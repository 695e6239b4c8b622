"""Monodepth2's networks: ResNet encoder, depth decoder, pose decoder, PoseCNN, and the pose-network registry.

Networks know nothing of files; md2.core.checkpoint reads and writes their weights.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from md2.core.networks.depth_decoder import DepthDecoder
from md2.core.networks.pose_cnn import PoseCNN
from md2.core.networks.pose_decoder import PoseDecoder
from md2.core.networks.resnet_encoder import (ENCODERS, RESNETS, ResnetEncoder, encoder_channels,
                                              multi_image_conv1)
from md2.errors import UsageError


def _separate_resnet(num_layers: int, num_pose_frames: int, pretrained: bool) -> dict[str, nn.Module]:
    # The reference's own encoder for the stacked frames; its decoder always predicts 2 poses from 1 input.
    encoder = ResnetEncoder(num_layers, pretrained, num_input_images=num_pose_frames)
    return {"pose_encoder": encoder,
            "pose": PoseDecoder(encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)}


def _shared(num_layers: int, num_pose_frames: int, pretrained: bool) -> dict[str, nn.Module]:
    # The depth encoder's features of each frame are fed to the decoder; no encoder of its own.
    return {"pose": PoseDecoder(encoder_channels(num_layers), num_input_features=num_pose_frames)}


def _posecnn(num_layers: int, num_pose_frames: int, pretrained: bool) -> dict[str, nn.Module]:
    return {"pose": PoseCNN(num_pose_frames)}


PoseNetBuilder = Callable[[int, int, bool], dict[str, nn.Module]]

POSE_NETS: dict[str, PoseNetBuilder] = {
    "separate_resnet": _separate_resnet,
    "shared": _shared,
    "posecnn": _posecnn,
}
"""pose_model_type -> builder(num_layers, num_pose_frames, pretrained) -> {weights-file name: module}."""


def build_pose_networks(pose_model_type: str, num_layers: int = 18, num_pose_frames: int = 2,
                        pretrained: bool = False) -> dict[str, nn.Module]:
    """The pose network(s) of one type, keyed by their official weights-file names (``pose_encoder``, ``pose``).

    ``num_pose_frames``: frames given to the pose network at once (2 for pairs, all frames otherwise).
    """
    if pose_model_type not in POSE_NETS:
        raise UsageError(f"pose model type must be one of {', '.join(POSE_NETS)}, got {pose_model_type!r}")
    return POSE_NETS[pose_model_type](num_layers, num_pose_frames, pretrained)


__all__ = ["ENCODERS", "POSE_NETS", "RESNETS", "DepthDecoder", "PoseCNN", "PoseDecoder", "ResnetEncoder",
           "build_pose_networks", "encoder_channels", "multi_image_conv1"]
