"""The colour map's percentile: numpy's linear percentile exactly, found without sorting the whole image."""

from __future__ import annotations

import numpy as np
import pytest

from md2.core.visualize import colorize_disparity, colorized_image, percentile


def _images():
    rng = np.random.default_rng(0)
    for index in range(40):
        count = int(rng.integers(50_000, 500_000))
        values = rng.random(count, dtype=np.float32) ** rng.uniform(0.2, 5.0)
        if index % 3 == 0:
            values[: count // 3] = values[0]  # a third of the pixels equal (a flat sky)
        if index % 5 == 0:
            values = np.round(values * 50) / 50  # few distinct values: long runs of ties
        yield values.astype(np.float32)


@pytest.mark.parametrize("q", [95.0, 50.0, 0.0, 100.0, 99.99])
def test_percentile_equals_numpys(q):
    for values in _images():
        assert percentile(values, q) == np.percentile(values.astype(np.float64), q)


def test_percentile_of_small_and_constant_images_equals_numpys():
    for values in (np.float32([0.5]), np.arange(7, dtype=np.float32), np.full(100_000, 0.3, np.float32)):
        assert percentile(values, 95) == np.percentile(values.astype(np.float64), 95)


def test_the_pillow_image_has_the_arrays_pixels():
    disp = np.random.default_rng(1).random((37, 53), dtype=np.float32)
    image = colorized_image(disp)
    assert image.mode == "RGB" and image.size == (53, 37)
    assert np.array_equal(np.asarray(image), colorize_disparity(disp))
