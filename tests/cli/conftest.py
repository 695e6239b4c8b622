"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model_folders import random_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """An md2-written ResNet-18 depth model at 64 x 192 (stereo, seed 0)."""
    return random_model(tmp_path_factory.mktemp("model") / "weights_0", use_stereo=True, seed=0)
