"""The colour map: numpy's linear percentile exactly, found without sorting the whole image; matplotlib's index rule."""

from __future__ import annotations

import numpy as np
import pytest

from md2.core.visualize import colorize_disparity, colorized_image, magma_indices, percentile


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


def test_percentile_equals_numpys_when_the_sample_misses():
    """Every sampled value is the same (a pattern in step with the sample): the bounds read off the sample
    hold too few values and the plain partition answers."""
    values = np.random.default_rng(2).random(300_000, dtype=np.float32)
    values[::values.size // 16384] = 0.5
    for q in (95.0, 5.0, 50.0):
        assert percentile(values, q) == np.percentile(values.astype(np.float64), q)


def definition_indices(disp: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """matplotlib's rule for a 256-colour map, written plainly in float64."""
    normalised = (disp.astype(np.float64) - vmin) / (vmax - vmin)
    return np.clip(np.floor(normalised * 256.0), 0, 255).astype(np.uint8)


def test_colour_indices_follow_the_definition_at_every_boundary():
    """Values on, just below and just above each of the 257 colour boundaries, for many scales (float rounding
    near a boundary tells the definition's arithmetic from near-equivalents such as a reciprocal), and values
    below vmin and above vmax."""
    rng = np.random.default_rng(3)
    scales = [(0.0, 1.0), (0.2, 0.2000003), (1e-3, 7.5)]
    scales += [(float(np.float32(low)), float(np.float32(high)))
               for low, high in zip(rng.uniform(0, 0.1, 300), rng.uniform(0.2, 1.0, 300))]
    for vmin, vmax in scales:
        edges = (vmin + (vmax - vmin) * np.arange(257) / 256.0).astype(np.float32)
        disp = np.concatenate([np.nextafter(edges, -np.inf), edges, np.nextafter(edges, np.inf),
                               np.float32([vmin - 1, vmax + 1, vmin, vmax])]).reshape(5, -1)
        assert np.array_equal(magma_indices(disp, vmin=vmin, vmax=vmax), definition_indices(disp, vmin, vmax))


def test_colour_indices_of_an_image_use_its_minimum_and_95th_percentile():
    disp = np.random.default_rng(4).random((375, 1242), dtype=np.float32) ** 3
    expected = definition_indices(disp, float(disp.min()), float(np.percentile(disp.astype(np.float64), 95)))
    assert np.array_equal(magma_indices(disp), expected)
    assert not magma_indices(np.full((5, 5), 0.4, np.float32)).any()  # no spread: every pixel the first colour
