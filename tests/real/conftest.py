"""Real KITTI frames from ../shared/kitti_real (see its SOURCE.txt): ten frames of drive 2011_09_26_drive_0060
(left camera image_02 PNGs, velodyne scans, the real calibration; no right camera). Read-only: tests copy what
they change. Every test here skips when ../shared/kitti_real is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATE = "2011_09_26"
DRIVE = f"{DATE}/{DATE}_drive_0060_sync"
FRAMES = range(10)


@pytest.fixture
def kitti_real(shared_dir) -> Path:
    """../shared/kitti_real (the KITTI data folder: DATE/calib_*.txt and DRIVE/...)."""
    root = shared_dir / "kitti_real"
    if not (root / DRIVE / "image_02" / "data").is_dir():
        pytest.skip("../shared/kitti_real not present")
    return root


def scan_path(root: Path, frame: int) -> Path:
    return root / DRIVE / "velodyne_points" / "data" / f"{frame:010d}.bin"


def image_path(root: Path, frame: int) -> Path:
    return root / DRIVE / "image_02" / "data" / f"{frame:010d}.png"


def write_split(splits: Path, name: str, lines: list[str]) -> Path:
    """SPLITS/name/test_files.txt holding ``lines``; returns SPLITS."""
    (splits / name).mkdir(parents=True, exist_ok=True)
    (splits / name / "test_files.txt").write_text("".join(f"{line}\n" for line in lines))
    return splits


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """An md2-written ResNet-18 depth model at 64 x 192 (mono, seed 0)."""
    from md2.core.checkpoint import save_weights_folder
    from md2.core.networks import DepthDecoder, ResnetEncoder

    torch.manual_seed(0)
    encoder = ResnetEncoder(18)
    return save_weights_folder(tmp_path_factory.mktemp("real_model") / "weights_0",
                               {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                               height=64, width=192, use_stereo=False)
