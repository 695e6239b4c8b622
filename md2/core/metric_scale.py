"""The metric scale of a model's depth, torch-free: x 5.4 for stereo-trained models (KITTI's 0.54 m baseline
over the 0.1 the networks learn), else the median of ``evaluate-depth``'s median-scaling ratios when
``--save-scale`` stored it in the weights folder (SCALE_FILE), else none."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from md2.errors import CheckpointError
from md2.files import atomic_path

STEREO_SCALE_FACTOR = 5.4
"""As md2.core.inference's (repeated here so that this module needs no torch)."""
SCALE_FILE = "md2_scale.json"
"""In a weights folder: {"scale": median ratio, "split": ..., "images": N, "ratio_std": ...}."""


@dataclass(frozen=True)
class DepthScale:
    """``factor`` x disp_to_depth's depth = depth in ``units``; ``metric`` when those are metres."""

    factor: float
    units: str
    metric: bool


def save_scale(folder: Path, scale: float, split: str, images: int, ratio_std: float | None) -> Path:
    """Store ``scale`` (the median of the median-scaling ratios of ``images`` images of ``split``) in
    FOLDER/SCALE_FILE, atomically."""
    if not (math.isfinite(scale) and scale > 0):
        raise CheckpointError(f"the median scaling ratio {scale} is not a positive number: nothing saved")
    path = Path(folder) / SCALE_FILE
    record = {"scale": float(scale), "split": split, "images": int(images),
              "ratio_std": None if ratio_std is None or not math.isfinite(ratio_std) else float(ratio_std)}
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")
    return path


def read_scale(folder: Path) -> float | None:
    """The scale stored in FOLDER/SCALE_FILE, None without one; a CheckpointError when it is unreadable."""
    path = Path(folder) / SCALE_FILE
    if not path.is_file():
        return None
    try:
        scale = json.loads(path.read_text())["scale"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"cannot read the saved scale {path}: {error}") from None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise CheckpointError(f"{path}: the scale must be a positive number, got {scale!r}")
    return float(scale)


def depth_scale(stereo: bool, weights: Path | None) -> DepthScale:
    """The scale of a model's depth: stereo x 5.4, else the saved median scale of ``weights`` (a folder), else 1."""
    if stereo:
        return DepthScale(STEREO_SCALE_FACTOR, f"metres (stereo model, depth x {STEREO_SCALE_FACTOR})", True)
    saved = read_scale(weights) if weights is not None and Path(weights).is_dir() else None
    if saved is not None:
        return DepthScale(saved, f"metres (median scale {saved:.4g} from evaluate-depth --save-scale)", True)
    return DepthScale(1.0, "the network's units (a mono model without a saved scale)", False)
