"""The networks as md2 exports them: one module per file, with named inputs and outputs.

A depth graph maps an image to the scale-0 sigmoid disparity and, unless disparity only, the scaled disparity and
depth of ``disp_to_depth`` with ``min_depth``/``max_depth`` baked in. A pose graph maps two frames to the axis-angle
and translation of the first predicted pose and its 4x4 transform (the reference's separate ResNet pose network,
``[:, 0]`` of its two predictions, as ``md2 evaluate-pose``). Inputs and outputs are float32 whatever the precision:
lower precisions cast inside the graph, so an fp16 file is a drop-in replacement for an fp32 one.
"""

from __future__ import annotations

import torch
from torch import nn

from md2.core.export.metadata import TensorSpec
from md2.core.geometry import disp_to_depth, transformation_from_parameters

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
"""Export precision -> dtype of the weights and of the computation inside the graph."""

_IMAGE = "RGB in [0, 1], float32, NCHW, at the model's height x width (see preprocessing)"


class DepthGraph(nn.Module):
    """``forward(image (B, 3, H, W))`` -> disp, or (disp, scaled_disp, depth), each (B, 1, H, W) float32."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, min_depth: float, max_depth: float,
                 disp_only: bool = False, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.min_depth, self.max_depth, self.disp_only, self.dtype = min_depth, max_depth, disp_only, dtype

    def forward(self, image: torch.Tensor):
        disp = self.decoder(self.encoder(image.to(self.dtype)))[0].float()
        if self.disp_only:
            return disp
        scaled_disp, depth = disp_to_depth(disp, self.min_depth, self.max_depth)
        return disp, scaled_disp, depth


class PoseGraph(nn.Module):
    """``forward(frame_0, frame_1 (B, 3, H, W))`` -> axisangle (B, 3), translation (B, 3), transform (B, 4, 4)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.encoder, self.decoder, self.dtype = encoder, decoder, dtype

    def forward(self, frame_0: torch.Tensor, frame_1: torch.Tensor):
        pair = torch.cat([frame_0, frame_1], 1).to(self.dtype)
        axisangle, translation = self.decoder([self.encoder(pair)])
        axisangle, translation = axisangle[:, 0].float(), translation[:, 0].float()  # (B, 1, 3): the first pose
        transform = transformation_from_parameters(axisangle, translation)
        return axisangle[:, 0], translation[:, 0], transform


def depth_specs(height: int, width: int, batch: int | str, min_depth: float, max_depth: float,
                disp_only: bool) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of a depth graph."""
    map_shape = (batch, 1, height, width)
    outputs = [TensorSpec("disp", map_shape, "sigmoid disparity at scale 0, in [0, 1] (md2 predict resizes it "
                          "bilinearly to the photo's size)")]
    if not disp_only:
        outputs += [
            TensorSpec("scaled_disp", map_shape, f"1 / depth: 1/{max_depth:g} + (1/{min_depth:g} - 1/{max_depth:g}) "
                       "x disp (disp_to_depth with min_depth and max_depth baked in); what md2 predict saves as "
                       "NAME_disp.npy"),
            TensorSpec("depth", map_shape, f"1 / scaled_disp, from {min_depth:g} to {max_depth:g} in the network's "
                       "units; x stereo_scale_factor (5.4) gives metres for a model trained with stereo "
                       "(use_stereo true), a relative depth otherwise"),
        ]
    return (TensorSpec("image", (batch, 3, height, width), _IMAGE),), tuple(outputs)


def pose_specs(height: int, width: int, batch: int | str) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of a pose graph."""
    frame = (batch, 3, height, width)
    inputs = (TensorSpec("frame_0", frame, f"the earlier frame: {_IMAGE}"),
              TensorSpec("frame_1", frame, f"the later frame: {_IMAGE}"))
    outputs = (
        TensorSpec("axisangle", (batch, 3), "rotation from frame_0 to frame_1 as an axis-angle vector, radians"),
        TensorSpec("translation", (batch, 3), "translation from frame_0 to frame_1 in the network's units (x 5.4 "
                   "for metres with a stereo-trained model)"),
        TensorSpec("transform", (batch, 4, 4), "4x4 transform taking 3D points from frame_0's camera coordinates to "
                   "frame_1's (transformation_from_parameters(axisangle, translation), as md2 evaluate-pose)"),
    )
    return inputs, outputs


def probe_images(count: int, batch: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``count`` deterministic (batch, 3, height, width) images in [0, 1]: a bright sky over darker ground with
    texture, each one different, so that the networks' outputs vary across the picture."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0.9, 0.2, height)[:, None].expand(height, width)
    return tuple((rows + 0.3 * torch.rand(batch, 3, height, width, generator=generator)).clamp(0, 1)
                 for _ in range(count))
