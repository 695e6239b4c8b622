"""Fixtures shared by the tests of md2.core."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Eight pictures of different sizes and formats, one of them unreadable, in a fixed order."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(8):
        path = folder / f"p{index}.{'png' if index % 2 else 'jpg'}"
        if index == 3:
            path.write_bytes(b"not an image")
        else:
            height, width = 90 + 7 * index, 260 + 31 * index
            rows = np.linspace(230, 30, height)[:, None, None]
            Image.fromarray(np.clip(rows + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths
