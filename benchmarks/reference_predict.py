"""A stand-in for the reference's test_simple.py, to time beside ``md2 predict`` (not part of md2).

    python -m benchmarks.reference_predict --image-path DIR_OR_FILE --weights FOLDER [--ext png]

Written for md2's benchmarks from the reference README's description of test_simple.py (no line of it is
copied): for each image, one after another on the CPU in fp32 with torch's default threads, PIL open and
``convert("RGB")``, LANCZOS resize to the model's size, ToTensor, the ResNet encoder (torchvision's resnet18,
as the reference builds it) and the depth decoder, bilinear upsampling to the photo's size, ``disp_to_depth``
and ``np.save`` of the scaled disparity, then the magma picture through matplotlib (vmin = minimum, vmax =
95th percentile) saved as JPEG. Differences: the decoder is md2's (the same layers; the reference's is the
same architecture), weights are read with ``weights_only=True``, and without matplotlib installed
(``pip install "md2[bench]"``) md2's colour map stands in, which the JSON of benchmarks.predict reports.
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

import numpy as np
import PIL.Image as pil
import torch
import torchvision.models
from torchvision import transforms


class ReferenceEncoder(torch.nn.Module):
    """torchvision's ResNet-18 returning its five feature maps, input normalised with 0.45 / 0.225."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torchvision.models.resnet18(weights=None)
        self.num_ch_enc = np.array([64, 64, 128, 256, 512])

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        net = self.encoder
        features = [net.relu(net.bn1(net.conv1((image - 0.45) / 0.225)))]
        for stage in (lambda x: net.layer1(net.maxpool(x)), net.layer2, net.layer3, net.layer4):
            features.append(stage(features[-1]))
        return features


def colour_mapper():
    """(H, W) disparity -> (H, W, 3) uint8 magma, as test_simple.py does it (matplotlib) when available."""
    try:
        import matplotlib as mpl
        import matplotlib.cm as cm
    except ImportError:
        from md2.core.visualize import colorize_disparity

        return colorize_disparity, "md2"

    def matplotlib_magma(disp: np.ndarray) -> np.ndarray:
        normalizer = mpl.colors.Normalize(vmin=disp.min(), vmax=np.percentile(disp, 95))
        mapper = cm.ScalarMappable(norm=normalizer, cmap="magma")
        return (mapper.to_rgba(disp)[:, :, :3] * 255).astype(np.uint8)

    return matplotlib_magma, "matplotlib"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-path", required=True)
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--ext", default="jpg")
    parser.add_argument("--output-dir", type=Path)
    args = parser.parse_args(argv)
    from md2.core.networks.depth_decoder import DepthDecoder

    encoder = ReferenceEncoder()
    loaded = torch.load(args.weights / "encoder.pth", map_location="cpu", weights_only=True)
    height, width = int(loaded["height"]), int(loaded["width"])
    encoder.load_state_dict({k: v for k, v in loaded.items() if k in encoder.state_dict()})
    decoder = DepthDecoder(num_ch_enc=encoder.num_ch_enc, scales=range(4))
    decoder.load_state_dict(torch.load(args.weights / "depth.pth", map_location="cpu", weights_only=True))
    encoder.eval()
    decoder.eval()
    colorize, _ = colour_mapper()
    if os.path.isfile(args.image_path):
        paths = [args.image_path]
    else:
        paths = sorted(glob.glob(os.path.join(args.image_path, f"*.{args.ext}")))
    with torch.no_grad():
        for path in paths:
            if path.endswith("_disp.jpg"):
                continue
            image = pil.open(path).convert("RGB")
            original_width, original_height = image.size
            tensor = transforms.ToTensor()(image.resize((width, height), pil.LANCZOS)).unsqueeze(0)
            disp = decoder(encoder(tensor))[0]
            disp_resized = torch.nn.functional.interpolate(disp, (original_height, original_width),
                                                           mode="bilinear", align_corners=False)
            scaled_disp = 1 / 100 + (1 / 0.1 - 1 / 100) * disp  # disp_to_depth(disp, 0.1, 100)[0]
            folder = args.output_dir or Path(path).parent
            stem = Path(path).stem
            np.save(folder / f"{stem}_disp.npy", scaled_disp.cpu().numpy())
            picture = colorize(disp_resized.squeeze().cpu().numpy())
            pil.fromarray(picture).save(folder / f"{stem}_disp.jpeg")


if __name__ == "__main__":
    main()
