"""Monodepth2's depth decoder: a U-Net style decoder with sigmoid disparities at four scales."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from md2.core.networks.capture import capturing_a_graph


class Conv3x3(nn.Module):
    """3x3 convolution after a padding of 1 (reflection, or zeros)."""

    def __init__(self, in_channels: int, out_channels: int, use_reflection: bool = True) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1) if use_reflection else nn.ZeroPad2d(1)
        self.conv = nn.Conv2d(int(in_channels), int(out_channels), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 followed by ELU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


class DepthDecoder(nn.Module):
    """Decoder from the five encoder feature maps to disparities.

    For i = 4..0: ConvBlock, nearest x2 upsampling, concatenation with encoder features i-1 (i > 0), ConvBlock;
    at each scale s in ``scales`` a Conv3x3 + sigmoid gives ``num_output_channels`` maps.

    ``forward(features)`` returns {s: (B, num_output_channels, H/2^s, W/2^s)} in [0, 1] for an input of H x W.
    The module list ``decoder`` is ordered as the official checkpoints: upconv (4,0), (4,1), ..., (0,1), then
    one dispconv per scale in the order of ``scales`` (decoder.10 .. decoder.13 for scales 0..3).
    """

    num_ch_dec = (16, 32, 64, 128, 256)

    def __init__(self, num_ch_enc: Sequence[int], scales: Iterable[int] = range(4), num_output_channels: int = 1,
                 use_skips: bool = True) -> None:
        super().__init__()
        self.scales = tuple(scales)
        if not set(self.scales) <= set(range(5)) or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales must be distinct values in 0..4, got {self.scales}")
        self.use_skips = use_skips
        self.num_output_channels = num_output_channels
        # Built in the reference's order (upconv (4,0), (4,1), ..., (0,1), dispconv per scale) so that the
        # indices of ``decoder`` are the official key names.
        layers: list[nn.Module] = []
        for i in range(4, -1, -1):
            in_channels = num_ch_enc[-1] if i == 4 else self.num_ch_dec[i + 1]
            layers.append(ConvBlock(in_channels, self.num_ch_dec[i]))
            in_channels = self.num_ch_dec[i] + (num_ch_enc[i - 1] if use_skips and i > 0 else 0)
            layers.append(ConvBlock(in_channels, self.num_ch_dec[i]))
        for s in self.scales:
            layers.append(Conv3x3(self.num_ch_dec[s], num_output_channels))
        self.decoder = nn.ModuleList(layers)

    def forward(self, input_features: Sequence[torch.Tensor],
                scales: Iterable[int] | None = None) -> dict[int, torch.Tensor]:
        """Five encoder maps (B, C_k, H/2^(k+1), W/2^(k+1)) -> {s: (B, num_output_channels, H/2^s, W/2^s)} for
        ``scales`` (default: all of the decoder's).

        Without gradients (prediction, validation, evaluation) this is :meth:`infer`: the same numbers, less data
        movement.
        """
        wanted = self._wanted(scales)
        if not torch.is_grad_enabled() and not capturing_a_graph():
            return self.infer(input_features, wanted)
        outputs: dict[int, torch.Tensor] = {}
        x = input_features[-1]
        for step, i in enumerate(range(4, -1, -1)):
            x = self.decoder[2 * step](x)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if self.use_skips and i > 0:
                x = torch.cat([x, input_features[i - 1]], 1)
            x = self.decoder[2 * step + 1](x)
            if i in wanted:
                outputs[i] = torch.sigmoid(self.decoder[10 + self.scales.index(i)](x))
        return outputs

    def _wanted(self, scales: Iterable[int] | None) -> tuple[int, ...]:
        wanted = self.scales if scales is None else tuple(scales)
        if not set(wanted) <= set(self.scales):
            raise ValueError(f"scales {wanted} are not all among the decoder's {self.scales}")
        return wanted

    @torch.no_grad()
    def infer(self, input_features: Sequence[torch.Tensor], scales: Iterable[int] = (0,)) -> dict[int, torch.Tensor]:
        """:meth:`forward`'s disparities at ``scales`` only (a subset of the decoder's), without gradients.

        The same convolutions on the same values in the same memory layout, so the same numbers bit for bit
        (tested); what changes is the data movement around them: every convolution's reflection padding is
        written once, into a buffer that the nearest upsampling and the skip concatenation fill directly
        (forward pads, upsamples and concatenates in three passes), a map padded once serves both convolutions
        that read it, and the disparity convolutions of scales not asked for are not run.
        """
        wanted = self._wanted(scales)
        outputs: dict[int, torch.Tensor] = {}
        padded = _reflect_pad(input_features[-1])
        for step, i in enumerate(range(4, -1, -1)):
            up = self.decoder[2 * step]
            x = up.nonlin(up.conv.conv(padded))
            padded = _upsample_concat_pad(x, input_features[i - 1] if self.use_skips and i > 0 else None)
            block = self.decoder[2 * step + 1]
            padded = _reflect_pad(block.nonlin(block.conv.conv(padded)))
            if i in wanted:
                outputs[i] = torch.sigmoid(self.decoder[10 + self.scales.index(i)].conv(padded))
            if i <= min(wanted):
                break
        return outputs


def _reflect_pad(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 1, 1, 1), mode="reflect")


def _upsample_concat_pad(x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    """reflect_pad(cat([nearest_x2(x), skip], 1)) written in one pass into one buffer (same values, same
    memory format as F.pad's result): (B, C, h, w), (B, S, 2h, 2w) -> (B, C + S, 2h + 2, 2w + 2)."""
    batch, channels, height, width = x.shape
    extra = 0 if skip is None else skip.shape[1]
    layout = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    out = torch.empty((batch, channels + extra, 2 * height + 2, 2 * width + 2), dtype=x.dtype, device=x.device,
                      memory_format=layout)
    inner = out[:, :, 1:-1, 1:-1]
    inner[:, :channels].unflatten(3, (width, 2)).unflatten(2, (height, 2)).copy_(
        x[:, :, :, None, :, None].expand(batch, channels, height, 2, width, 2))
    if skip is not None:
        inner[:, channels:].copy_(skip)
    # Reflection of one pixel: the border row / column copies the second row / column from the edge.
    out[:, :, 0, 1:-1] = out[:, :, 2, 1:-1]
    out[:, :, -1, 1:-1] = out[:, :, -3, 1:-1]
    out[:, :, :, 0] = out[:, :, :, 2]
    out[:, :, :, -1] = out[:, :, :, -3]
    return out


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
