"""ResNet encoder of Monodepth2: a torchvision ResNet returning five feature maps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.models as tvm
from torch import nn

from md2.errors import DownloadError


@dataclass(frozen=True)
class ResnetSpec:
    """How to build one ResNet depth: torchvision builder and its ImageNet weights."""

    builder: Callable[..., tvm.ResNet]
    weights: tvm.WeightsEnum
    bottleneck: bool


RESNETS: dict[int, ResnetSpec] = {
    18: ResnetSpec(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, False),
    34: ResnetSpec(tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1, False),
    50: ResnetSpec(tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, True),
    101: ResnetSpec(tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V1, True),
    152: ResnetSpec(tvm.resnet152, tvm.ResNet152_Weights.IMAGENET1K_V1, True),
}
"""ResNet depth -> spec. IMAGENET1K_V1 are the weights the reference's torchvision 0.2 shipped."""


def multi_image_conv1(weight: torch.Tensor, num_input_images: int) -> torch.Tensor:
    """conv1 weight for N stacked images: the pretrained (64, 3, 7, 7) repeated N times along the input
    channels and divided by N, so N copies of one image give the single-image response."""
    return torch.cat([weight] * num_input_images, dim=1) / num_input_images


def _imagenet_state(spec: ResnetSpec, num_layers: int) -> dict[str, torch.Tensor]:
    try:
        return spec.weights.get_state_dict(progress=False)
    except Exception as error:  # offline, blocked, corrupt download: all end the same way for the user
        raise DownloadError(
            f"cannot get the ImageNet weights for ResNet-{num_layers} ({type(error).__name__}: {error}); "
            "train from scratch with --weights-init scratch"
        ) from None


class ResnetEncoder(nn.Module):
    """Monodepth2's encoder.

    Args:
        num_layers: ResNet depth, one of 18, 34, 50, 101, 152.
        pretrained: start from torchvision's ImageNet weights (downloads on first use).
        num_input_images: N images stacked on channels (3N input channels), for the pose encoder.

    ``forward(x)`` takes (B, 3N, H, W) RGB in [0, 1] and returns five feature maps at 1/2, 1/4, 1/8, 1/16 and
    1/32 of the input size with ``num_ch_enc`` channels ([64, 64, 128, 256, 512], the last four x4 from 50
    layers on).
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, num_input_images: int = 1) -> None:
        super().__init__()
        if num_layers not in RESNETS:
            raise ValueError(f"num_layers must be one of {sorted(RESNETS)}, got {num_layers}")
        spec = RESNETS[num_layers]
        self.encoder = spec.builder(weights=None)
        if num_input_images > 1:
            self.encoder.conv1 = nn.Conv2d(3 * num_input_images, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if pretrained:
            state = _imagenet_state(spec, num_layers)
            if num_input_images > 1:
                state["conv1.weight"] = multi_image_conv1(state["conv1.weight"], num_input_images)
            self.encoder.load_state_dict(state)
        # The classifier is unused but kept, because the official checkpoints hold its weights. Frozen, it is
        # no "unused parameter" for DistributedDataParallel, whose buckets would otherwise never be reduced.
        self.encoder.fc.requires_grad_(False)
        self.num_ch_enc = np.array([64, 64, 128, 256, 512])
        if spec.bottleneck:
            self.num_ch_enc[1:] *= 4

    def forward(self, input_image: torch.Tensor) -> list[torch.Tensor]:
        x = (input_image - 0.45) / 0.225
        net = self.encoder
        x = net.relu(net.bn1(net.conv1(x)))
        features = [x]
        features.append(net.layer1(net.maxpool(features[-1])))
        features.append(net.layer2(features[-1]))
        features.append(net.layer3(features[-1]))
        features.append(net.layer4(features[-1]))
        return features
