"""Shared fixtures: small synthetic KITTI datasets written by md2's own generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from md2.data.synth import SynthOptions, generate_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory) -> Path:
    """Two drives x 8 frames at 256x80 in the KITTI raw layout, with lidar, depth-benchmark PNGs and the
    odometry layout (sequences 09 and 10). Split files under ROOT/splits/synth and ROOT/splits/odom.
    Read-only for tests: copy it before changing anything."""
    root = tmp_path_factory.mktemp("synth_raw")
    return generate_dataset(root, SynthOptions(drives=2, frames=8, width=256, height=80, seed=0,
                                               depth_benchmark=True, odometry=True))


@pytest.fixture
def shared_dir() -> Path:
    """../shared beside the checkout; tests using it skip when it is absent."""
    if not SHARED.exists():
        pytest.skip("../shared not present")
    return SHARED
