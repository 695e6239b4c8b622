"""ResNet encoder of Monodepth2: md2's ResNet (torchvision's parameter names) returning five feature maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from md2.core.networks.max_pool import stem_max_pool
from md2.core.networks.resnet import ResNet
from md2.errors import DownloadError, UsageError


@dataclass(frozen=True)
class ResnetSpec:
    """One ResNet depth: the name of torchvision's ImageNet weights enum for it, and its block type."""

    weights: str
    bottleneck: bool


ENCODERS: dict[int, ResnetSpec] = {
    18: ResnetSpec("ResNet18_Weights", False),
    34: ResnetSpec("ResNet34_Weights", False),
    50: ResnetSpec("ResNet50_Weights", True),
    101: ResnetSpec("ResNet101_Weights", True),
    152: ResnetSpec("ResNet152_Weights", True),
}
"""ResNet depth -> spec. Their IMAGENET1K_V1 weights are the ones the reference's torchvision 0.2 shipped."""

RESNETS = ENCODERS
"""The name docs/design.md uses for the same table."""

# The reference normalised its [0, 1] input with one mean and deviation for all channels, not ImageNet's.
INPUT_MEAN = 0.45
INPUT_STD = 0.225


def encoder_channels(num_layers: int) -> np.ndarray:
    """Channels of the five feature maps of a ResNet: [64, 64, 128, 256, 512], the last four x4 for
    bottleneck ResNets (50 layers and more)."""
    channels = np.array([64, 64, 128, 256, 512])
    if _spec(num_layers).bottleneck:
        channels[1:] *= 4
    return channels


def multi_image_conv1(weight: torch.Tensor, num_input_images: int) -> torch.Tensor:
    """conv1 weight for N stacked images from a single-image one.

    (64, 3, 7, 7) -> (64, 3N, 7, 7): repeated N times along the input channels and divided by N, so N
    copies of one image give the same response as that image alone.
    """
    return torch.cat([weight] * num_input_images, dim=1) / num_input_images


def _spec(num_layers: int) -> ResnetSpec:
    if num_layers not in ENCODERS:
        raise UsageError(f"num_layers must be one of {', '.join(map(str, ENCODERS))}, got {num_layers}")
    return ENCODERS[num_layers]


def _imagenet_state(spec: ResnetSpec, num_layers: int) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state dict (downloaded on first use into TORCH_HOME).

    The only use of torchvision here: imported for ``--weights-init pretrained`` alone, so that inference and
    training from md2's own checkpoints start without it."""
    try:
        import torchvision.models

        return getattr(torchvision.models, spec.weights).IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as error:  # offline, blocked, corrupt download: all end the same way for the user
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise DownloadError(
            f"cannot get the ImageNet weights for ResNet-{num_layers} ({reason}); "
            "connect to the internet or train from scratch with --weights-init scratch"
        ) from None


class ResnetEncoder(nn.Module):
    """Monodepth2's encoder.

    Args:
        num_layers: ResNet depth, one of 18, 34, 50, 101, 152.
        pretrained: start from torchvision's ImageNet weights (downloaded on first use; DownloadError when
            they cannot be had).
        num_input_images: N images stacked on channels (3N input channels), for the pose encoder.

    ``forward(x)`` takes (B, 3N, H, W) RGB in [0, 1] and returns five feature maps at 1/2, 1/4, 1/8, 1/16 and
    1/32 of the input size with ``num_ch_enc`` channels. ``.encoder`` is a ResNet with torchvision's layout
    (:mod:`md2.core.networks.resnet`), so the state dict keys are the official ones (``encoder.conv1.weight`` ... ``encoder.fc.bias``).
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, num_input_images: int = 1) -> None:
        super().__init__()
        spec = _spec(num_layers)
        self.num_layers = num_layers
        self.num_input_images = num_input_images
        self.encoder = ResNet(num_layers)
        if num_input_images > 1:
            # Replacing the attribute keeps conv1 first in the state dict, as in the official files.
            self.encoder.conv1 = nn.Conv2d(3 * num_input_images, 64, kernel_size=7, stride=2, padding=3, bias=False)
            if not self.encoder.conv1.weight.is_meta:  # see ResNet: nothing to draw on the meta device
                nn.init.kaiming_normal_(self.encoder.conv1.weight, mode="fan_out", nonlinearity="relu")
        if pretrained:
            state = _imagenet_state(spec, num_layers)
            state["conv1.weight"] = multi_image_conv1(state["conv1.weight"], num_input_images)
            self.encoder.load_state_dict(state)
        # The classifier is unused but kept, because the official checkpoints hold its weights. Frozen, it is
        # no "unused parameter" for DistributedDataParallel, whose buckets would otherwise never be reduced.
        self.encoder.fc.requires_grad_(False)
        self.num_ch_enc = encoder_channels(num_layers)

    def forward(self, input_image: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3N, H, W) in [0, 1] -> [(B, C0, H/2, W/2), (B, C1, H/4, W/4), ..., (B, C4, H/32, W/32)]."""
        net = self.encoder
        x = (input_image - INPUT_MEAN) / INPUT_STD
        features = [net.relu(net.bn1(net.conv1(x)))]
        features.append(net.layer1(stem_max_pool(features[-1])))  # net.maxpool's numbers, faster on the CPU
        features.append(net.layer2(features[-1]))
        features.append(net.layer3(features[-1]))
        features.append(net.layer4(features[-1]))
        return features
