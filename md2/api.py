"""md2 inside your own code: ``md2.load_model("mono+stereo_640x192")`` returns a ready depth network; so does
``md2.load_model("depth.onnx")`` for a model written by ``md2 export`` (run by onnxruntime or torch.jit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from md2.core.geometry import disp_to_depth
from md2.core.inference import STEREO_SCALE_FACTOR, DepthPredictor, upsample


class PictureDepth:
    """``predict_depth`` for a model called as ``model(images)`` with ``height``, ``width``, ``use_stereo``,
    ``min_depth``, ``max_depth`` and ``input_device``."""

    @torch.inference_mode()
    def predict_depth(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """Depth (H, W) at the picture's own size: metres for stereo-trained models, relative otherwise."""
        picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        rgb = picture.convert("RGB")
        resized = np.asarray(rgb.resize((self.width, self.height), Image.LANCZOS), dtype=np.float32) / 255
        tensor = torch.from_numpy(resized).permute(2, 0, 1)[None].to(self.input_device)
        disp = upsample(self(tensor), rgb.height, rgb.width)
        depth = disp_to_depth(disp, self.min_depth, self.max_depth)[1][0, 0].float().cpu().numpy()
        return depth * STEREO_SCALE_FACTOR if self.use_stereo else depth


class DepthModel(PictureDepth, nn.Module):
    """A Monodepth2 depth network (encoder + decoder) in eval mode.

    ``model(images)`` takes (B, 3, height, width) RGB in [0, 1] at the model's resolution and returns the
    sigmoid disparity (B, 1, height, width). :meth:`predict_depth` does the whole job for one picture.
    """

    def __init__(self, predictor: DepthPredictor) -> None:
        super().__init__()
        self.encoder, self.decoder = predictor.encoder, predictor.decoder
        self.height, self.width, self.use_stereo = predictor.height, predictor.width, predictor.use_stereo
        self.precision, self.channels_last = predictor.precision, predictor.channels_last
        self.min_depth, self.max_depth = predictor.min_depth, predictor.max_depth
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            disp = self.decoder(self.encoder(images), scales=(0,))[0]
        return disp.float().contiguous()

    @property
    def input_device(self) -> torch.device:
        return next(self.parameters()).device


class ExportedModel(PictureDepth):
    """A depth network exported by ``md2 export``, with :class:`DepthModel`'s interface: ``model(images)`` takes
    (B, 3, height, width) RGB in [0, 1] at the file's fixed size and returns the sigmoid disparity (B, 1, height,
    width); :meth:`predict_depth` does the whole job for one picture. ``meta`` is the file's md2 metadata."""

    def __init__(self, predictor) -> None:
        self.predictor, self.meta = predictor, predictor.meta
        self.height, self.width, self.use_stereo = predictor.height, predictor.width, predictor.use_stereo
        self.min_depth, self.max_depth, self.precision = predictor.min_depth, predictor.max_depth, predictor.precision
        self.input_device = predictor.device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.predictor.disparity(images)


def load_model(name_or_folder: str | Path = "mono+stereo_640x192", device: str = "auto",
               precision: str | None = None) -> DepthModel | ExportedModel:
    """A pretrained model by name (downloaded once into the cache), a weights folder, or a file written by
    ``md2 export`` (``.onnx``; ``.pt`` or ``.ts`` for TorchScript), on ``device``.

    ``precision`` for a name or folder: "fp32" (the default, the reference's numbers), "bf16" or "auto" as
    :data:`md2.core.inference.PRECISIONS`; an exported file computes in the precision it was exported in (None or
    that one)."""
    from md2.core.exported import EXPORTED_SUFFIXES, load_predictor

    path = Path(name_or_folder).expanduser()
    if path.suffix.lower() in EXPORTED_SUFFIXES and not path.is_dir():
        return ExportedModel(load_predictor(path, device=device, precision=precision or "auto"))
    if not path.is_dir():
        from md2.core.zoo import fetch_model

        path = fetch_model(str(name_or_folder), progress=False)
    return DepthModel(DepthPredictor.from_folder(path, device=device, precision=precision or "fp32"))
