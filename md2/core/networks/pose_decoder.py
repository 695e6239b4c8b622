"""Monodepth2's pose decoder: relative camera motion from encoder features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def split_pose(out: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 6F) pose vector -> (axisangle, translation), each (B, F, 1, 3), after the reference's 0.01 scaling
    (small initial motions; the pretrained weights expect it). Axis-angle in radians, translation in the
    network's (unscaled) units."""
    out = 0.01 * out.view(-1, num_frames, 1, 6)
    return out[..., :3], out[..., 3:]


class PoseDecoder(nn.Module):
    """Pose decoder.

    Args:
        num_ch_enc: the encoder's channels (the last one is used).
        num_input_features: number of feature lists given to ``forward`` (concatenated after squeezing).
        num_frames_to_predict_for: F poses predicted; default num_input_features - 1.

    ``forward(input_features)`` takes a list of feature lists (each the encoder's five maps) and returns
    (axisangle, translation), each (B, F, 1, 3).
    ``net`` holds, in the official checkpoints' order: squeeze (1x1 to 256), two 3x3 convs, the 1x1 pose conv.
    """

    def __init__(self, num_ch_enc: Sequence[int], num_input_features: int,
                 num_frames_to_predict_for: int | None = None, stride: int = 1) -> None:
        super().__init__()
        self.num_input_features = num_input_features
        self.num_frames = (num_input_features - 1 if num_frames_to_predict_for is None
                           else num_frames_to_predict_for)
        self.net = nn.ModuleList([
            nn.Conv2d(int(num_ch_enc[-1]), 256, 1),
            nn.Conv2d(num_input_features * 256, 256, 3, stride, 1),
            nn.Conv2d(256, 256, 3, stride, 1),
            nn.Conv2d(256, 6 * self.num_frames, 1),
        ])
        self.relu = nn.ReLU()

    def forward(self, input_features: Sequence[Sequence[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_input_features`` feature lists (only the last map, (B, C4, h, w), is used) ->
        (axisangle, translation), each (B, F, 1, 3)."""
        squeeze = self.net[0]
        out = torch.cat([self.relu(squeeze(features[-1])) for features in input_features], 1)
        out = self.relu(self.net[1](out))
        out = self.relu(self.net[2](out))
        out = self.net[3](out)
        return split_pose(out.mean(3).mean(2), self.num_frames)
