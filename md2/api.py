"""md2 inside your own code: ``md2.load_model("mono+stereo_640x192")`` returns a ready depth network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from md2.core.geometry import disp_to_depth
from md2.core.inference import STEREO_SCALE_FACTOR, DepthPredictor, upsample


class DepthModel(nn.Module):
    """A Monodepth2 depth network (encoder + decoder) in eval mode.

    ``model(images)`` takes (B, 3, height, width) RGB in [0, 1] at the model's resolution and returns the
    sigmoid disparity (B, 1, height, width). :meth:`predict_depth` does the whole job for one picture.
    """

    def __init__(self, predictor: DepthPredictor) -> None:
        super().__init__()
        self.encoder, self.decoder = predictor.encoder, predictor.decoder
        self.height, self.width, self.use_stereo = predictor.height, predictor.width, predictor.use_stereo
        self.precision, self.channels_last = predictor.precision, predictor.channels_last
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            disp = self.decoder(self.encoder(images))[0]
        return disp.float().contiguous()

    @torch.inference_mode()
    def predict_depth(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """Depth (H, W) at the picture's own size: metres for stereo-trained models, relative otherwise."""
        picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        rgb = picture.convert("RGB")
        resized = np.asarray(rgb.resize((self.width, self.height), Image.LANCZOS), dtype=np.float32) / 255
        device = next(self.parameters()).device
        tensor = torch.from_numpy(resized).permute(2, 0, 1)[None].to(device)
        disp = upsample(self(tensor), rgb.height, rgb.width)
        depth = disp_to_depth(disp, 0.1, 100)[1][0, 0].float().cpu().numpy()
        return depth * STEREO_SCALE_FACTOR if self.use_stereo else depth


def load_model(name_or_folder: str | Path = "mono+stereo_640x192", device: str = "auto",
               precision: str = "fp32") -> DepthModel:
    """A pretrained model by name (downloaded once into the cache) or a weights folder, on ``device``;
    ``precision`` "bf16" or "auto" as :data:`md2.core.inference.PRECISIONS` (fp32 gives the reference's numbers)."""
    folder = Path(name_or_folder).expanduser()
    if not folder.is_dir():
        from md2.core.zoo import fetch_model

        folder = fetch_model(str(name_or_folder), progress=False)
    return DepthModel(DepthPredictor.from_folder(folder, device=device, precision=precision))
