"""PoseCNN: a small stand-alone pose network (an ablation of the paper)."""

from __future__ import annotations

import torch
from torch import nn

from md2.core.networks.pose_decoder import split_pose

CHANNELS = (16, 32, 64, 128, 256, 256, 256)
KERNELS = (7, 5, 3, 3, 3, 3, 3)


class PoseCNN(nn.Module):
    """Seven stride-2 convolutions with ReLU, a 1x1 convolution to 6 x (n - 1), mean over space.

    ``forward(x)`` takes n images stacked on channels, (B, 3n, H, W), and returns (axisangle, translation),
    each (B, n - 1, 1, 3).
    """

    def __init__(self, num_input_frames: int) -> None:
        super().__init__()
        self.num_input_frames = num_input_frames
        layers, in_channels = [], 3 * num_input_frames
        for out_channels, kernel in zip(CHANNELS, KERNELS):
            layers.append(nn.Conv2d(in_channels, out_channels, kernel, 2, kernel // 2))
            in_channels = out_channels
        # pose_conv is registered before net, as in the reference: the order of parameters() (and so of the
        # optimizer state in adam.pth) then matches the official files.
        self.pose_conv = nn.Conv2d(CHANNELS[-1], 6 * (num_input_frames - 1), 1)
        self.net = nn.ModuleList(layers)
        self.relu = nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3n, H, W) images (used as given, not normalised, as in the reference) -> (axisangle,
        translation), each (B, n - 1, 1, 3)."""
        for conv in self.net:
            x = self.relu(conv(x))
        x = self.pose_conv(x)
        return split_pose(x.mean(3).mean(2), self.num_input_frames - 1)
