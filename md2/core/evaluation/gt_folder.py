"""``md2 evaluate-depth --gt-dir DIR``: a folder of images and their depth PNGs as a test set.

``DIR/NAME.jpg`` (or .jpeg, .png) is an image and ``DIR/NAME_depth.png`` its ground truth: a single-channel
16-bit PNG holding depth x ``scale`` (KITTI's convention is 256, the name ``md2 predict --save-depth-png``
writes), 0 where the depth is unknown. Pairs are taken in the images' sorted file-name order (the order
``--ext-disp-to-eval`` disparities must follow).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from md2.data.datasets.base import FrameDataset
from md2.data.datasets.refs import FrameRef
from md2.data.kitti import KITTI_K
from md2.errors import DataError
from md2.files import OUTPUT_SUFFIXES  # md2 predict's outputs and NAME_depth.png: never images
from md2.images import UNREADABLE_IMAGE

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
GT_SUFFIX = "_depth.png"
KITTI_GT_SCALE = 256.0


@dataclass(frozen=True)
class GroundTruthPair:
    image: Path
    depth: Path


def find_pairs(folder: Path) -> list[GroundTruthPair]:
    """Every image of ``folder`` with its ``NAME_depth.png``, sorted by name; a DataError when the folder is
    missing, holds no image, or an image has no ground truth (the first one named)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"--gt-dir: no such folder: {folder}")
    images = sorted(path for path in folder.iterdir()
                    if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.endswith(OUTPUT_SUFFIXES)
                    and path.is_file())
    if not images:
        raise DataError(f"--gt-dir {folder} holds no images (.jpg, .jpeg or .png beside NAME_depth.png)")
    pairs = [GroundTruthPair(image, image.with_name(image.stem + GT_SUFFIX)) for image in images]
    missing = [pair for pair in pairs if not pair.depth.is_file()]
    if missing:
        raise DataError(f"--gt-dir: {len(missing)} of {len(pairs)} images have no ground truth, first "
                        f"{missing[0].image.name} (expected {missing[0].depth.name})")
    return pairs


def read_gt_depth(path: Path, scale: float = KITTI_GT_SCALE) -> np.ndarray:
    """A 16-bit depth PNG as (H, W) float32 metres (stored value / ``scale``; 0 stays 0, unknown)."""
    try:
        with Image.open(path) as image:
            stored = np.array(image)
    except UNREADABLE_IMAGE as error:
        raise DataError(f"cannot read depth ground truth {path}: {error}") from None
    if stored.ndim != 2 or stored.dtype.kind not in "iu" or stored.dtype.itemsize < 2:
        raise DataError(f"depth ground truth {path} is not a single-channel 16-bit PNG "
                        f"(got {stored.dtype} {stored.shape})")
    # As the KITTI benchmark's reading (and md2's KITTIDepthDataset): float32 of the value, then divided.
    return stored.astype(np.float32) / np.float32(scale)


class FolderImages(FrameDataset):
    """The images of ``--gt-dir`` pairs at the model's size (LANCZOS, as the KITTI test images)."""

    def __init__(self, pairs: list[GroundTruthPair], height: int, width: int) -> None:
        self.images = [pair.image for pair in pairs]
        refs = [FrameRef(".", index, None) for index in range(len(pairs))]
        super().__init__(refs, height, width, (0,), KITTI_K, num_scales=1, is_train=False, load_depth=False)

    def image_path(self, ref: FrameRef, frame: int, camera: int | None) -> Path:
        return self.images[frame]
