"""Depth inference with a trained encoder + decoder: device choice, batching, disparity to depth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from md2.core.checkpoint import load_depth_model
from md2.core.depth_arrays import STEREO_SCALE_FACTOR  # noqa: F401 -- importable from here as before
from md2.core.geometry import disp_to_depth
from md2.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16")
"""Inference precisions: fp32 (the reference's numbers), bf16 (autocast, channels_last; disparities within 1%
of fp32), auto (bf16 where the device has fast bf16 arithmetic, fp32 otherwise)."""


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


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 natively: a CUDA GPU that supports it, or a CPU whose oneDNN has bf16
    kernels (AVX-512 BF16 / AMX). Elsewhere bf16 is emulated and far slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return device.type == "cpu" and check is not None and bool(check())
    except RuntimeError:
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where :func:`fast_bf16`, else ``fp32``; ``fp32`` and ``bf16`` as they are."""
    if name not in PRECISIONS:
        raise UsageError(f"--precision {name!r} is not one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return name


@dataclass
class DepthPredictor:
    """A depth network ready for inference.

    ``height`` x ``width`` is the resolution the network was trained at (from encoder.pth); inputs must be
    resized to it by the caller (the reference resizes with LANCZOS). ``precision`` "bf16" runs the networks
    under autocast; "bf16" and "auto" in channels_last memory format (outputs are float32 either way).
    """

    encoder: torch.nn.Module
    decoder: torch.nn.Module
    height: int
    width: int
    use_stereo: bool
    device: torch.device
    min_depth: float = 0.1
    max_depth: float = 100.0
    precision: str = "fp32"
    channels_last: bool = False
    engine = "torch"
    arrays = False
    """Whether :meth:`disparity` takes and gives NumPy arrays (:class:`md2.core.exported.ExportedPredictor` on
    onnxruntime) rather than tensors."""

    def __post_init__(self) -> None:
        # "auto" is the fast path: channels_last always (fp32 convolutions ~15% faster on the CPU, outputs within
        # 1e-6 of NCHW), bf16 where native. "fp32" alone keeps the reference's memory layout and numbers.
        self.channels_last = self.channels_last or self.precision in ("auto", "bf16")
        self.precision = resolve_precision(self.precision, self.device)
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)

    @classmethod
    def from_folder(cls, folder: Path, device: str = "auto", num_layers: int | None = None,
                    precision: str = "fp32") -> "DepthPredictor":
        """Load ``encoder.pth`` and ``depth.pth`` from a weights folder onto ``device``."""
        target = resolve_device(device)
        resolve_precision(precision, target)  # a bad name is a usage error before the weights are read
        encoder, decoder, meta = load_depth_model(Path(folder), device=target, num_layers=num_layers)
        return cls(encoder, decoder, meta.height, meta.width, bool(meta.use_stereo), target, precision=precision)

    @torch.inference_mode()
    def disparity(self, images: torch.Tensor) -> torch.Tensor:
        """Sigmoid disparity at scale 0.

        Args:
            images: (B, 3, height, width) RGB in [0, 1].
        Returns:
            (B, 1, height, width) disparity in [0, 1], on the predictor's device.
        """
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            disp = self.decoder(self.encoder(images), scales=(0,))[0]
        return disp.float().contiguous()

    def scaled_disparity(self, disp: torch.Tensor) -> torch.Tensor:
        """disp_to_depth's scaled disparity (1 / depth) for ``min_depth``..``max_depth``."""
        return disp_to_depth(disp, self.min_depth, self.max_depth)[0]

    def depth(self, disp: torch.Tensor) -> torch.Tensor:
        """Depth in the network's units (x 5.4 gives metres for stereo-trained models)."""
        return disp_to_depth(disp, self.min_depth, self.max_depth)[1]

    def upsample(self, disp: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """:func:`upsample`: (B, 1, h, w) -> (B, 1, height, width)."""
        return upsample(disp, height, width)


def upsample(disp: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize (align_corners=False, as the reference) of (B, 1, h, w) to (B, 1, height, width)."""
    return F.interpolate(disp, (height, width), mode="bilinear", align_corners=False)
