"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from md2.core.checkpoint import save_weights_folder
from md2.core.networks import DepthDecoder, ResnetEncoder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """An md2-written ResNet-18 depth model at 64 x 192 (stereo, seed 0)."""
    folder = tmp_path_factory.mktemp("model") / "weights_0"
    torch.manual_seed(0)
    encoder = ResnetEncoder(18)
    save_weights_folder(folder, {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                        height=64, width=192, use_stereo=True)
    return folder
