"""Weights folders written by md2 with random weights, as the tests' models."""

from __future__ import annotations

from pathlib import Path

import torch

from md2.core.checkpoint import save_weights_folder
from md2.core.networks import DepthDecoder, PoseDecoder, ResnetEncoder


def random_model(folder: Path, *, use_stereo: bool, seed: int | None = None, pose: bool = False, layers: int = 18,
                 height: int = 64, width: int = 192) -> Path:
    """``folder`` holding a ResNet depth network (and with ``pose`` its pose network) of random weights, drawn
    after ``torch.manual_seed(seed)`` when a seed is given; the networks are built in one order (depth encoder,
    pose encoder, depth decoder, pose decoder), so a seed always gives the same weights."""
    if seed is not None:
        torch.manual_seed(seed)
    encoder = ResnetEncoder(layers)
    pose_encoder = ResnetEncoder(layers, num_input_images=2) if pose else None
    modules = {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)}
    if pose_encoder is not None:
        modules.update(pose_encoder=pose_encoder, pose=PoseDecoder(pose_encoder.num_ch_enc, num_input_features=1,
                                                                    num_frames_to_predict_for=2))
    return save_weights_folder(folder, modules, height=height, width=width, use_stereo=use_stereo)
