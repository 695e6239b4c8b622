"""Depth inference with a trained encoder + decoder: device choice, batching, disparity to depth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from md2.core.checkpoint import load_depth_model
from md2.core.geometry import disp_to_depth
from md2.errors import UsageError

STEREO_SCALE_FACTOR = 5.4
"""Stereo models learn a 0.1 baseline; KITTI's rig is 0.54 m, so metric depth = 5.4 x predicted depth."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return device


@dataclass
class DepthPredictor:
    """A depth network ready for inference.

    ``height`` x ``width`` is the resolution the network was trained at (from encoder.pth); inputs must be
    resized to it by the caller (the reference resizes with LANCZOS).
    """

    encoder: torch.nn.Module
    decoder: torch.nn.Module
    height: int
    width: int
    use_stereo: bool
    device: torch.device
    min_depth: float = 0.1
    max_depth: float = 100.0

    @classmethod
    def from_folder(cls, folder: Path, device: str = "auto", num_layers: int | None = None) -> "DepthPredictor":
        """Load ``encoder.pth`` and ``depth.pth`` from a weights folder onto ``device``."""
        target = resolve_device(device)
        encoder, decoder, meta = load_depth_model(Path(folder), device=target, num_layers=num_layers)
        return cls(encoder, decoder, meta.height, meta.width, bool(meta.use_stereo), target)

    @torch.inference_mode()
    def disparity(self, images: torch.Tensor) -> torch.Tensor:
        """Sigmoid disparity at scale 0.

        Args:
            images: (B, 3, height, width) RGB in [0, 1].
        Returns:
            (B, 1, height, width) disparity in [0, 1], on the predictor's device.
        """
        images = images.to(self.device, non_blocking=True)
        return self.decoder(self.encoder(images))[0]

    def scaled_disparity(self, disp: torch.Tensor) -> torch.Tensor:
        """disp_to_depth's scaled disparity (1 / depth) for ``min_depth``..``max_depth``."""
        return disp_to_depth(disp, self.min_depth, self.max_depth)[0]

    def depth(self, disp: torch.Tensor) -> torch.Tensor:
        """Depth in the network's units (x 5.4 gives metres for stereo-trained models)."""
        return disp_to_depth(disp, self.min_depth, self.max_depth)[1]


def upsample(disp: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize (align_corners=False, as the reference) of (B, 1, h, w) to (B, 1, height, width)."""
    return F.interpolate(disp, (height, width), mode="bilinear", align_corners=False)
