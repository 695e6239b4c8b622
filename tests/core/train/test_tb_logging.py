"""TensorBoard logging: the images md2 writes are the pixels SummaryWriter.add_image would write."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.tensorboard.summary import image as add_image_summary

from md2.core.train.tb_logging import image_summary, to_image


def _decoded(summary) -> tuple[np.ndarray, tuple[int, int, int]]:
    picture = summary.value[0].image
    with Image.open(io.BytesIO(picture.encoded_image_string)) as png:
        return np.asarray(png.convert("RGB")), (picture.height, picture.width, picture.colorspace)


@pytest.mark.parametrize("channels", [3, 1])
def test_logged_images_decode_to_add_images_pixels(channels):
    generator = torch.Generator().manual_seed(0)
    # Values outside [0, 1] and on the rounding edges too: add_image clips and truncates.
    image = torch.rand(channels, 24, 80, generator=generator) * 1.2 - 0.1
    image[:, 0, :3] = torch.tensor([1 / 255, 254.999 / 255, 0.5 / 255]).view(1, 3).expand(channels, 3)
    ours = image_summary("color_0_0/0", to_image(image))
    theirs = add_image_summary("color_0_0/0", image, dataformats="CHW")
    ours_pixels, ours_header = _decoded(ours)
    theirs_pixels, theirs_header = _decoded(theirs)
    assert ours.value[0].tag == theirs.value[0].tag
    assert ours_header == theirs_header == (24, 80, 3)
    np.testing.assert_array_equal(ours_pixels, theirs_pixels)


def test_colour_mapped_uint8_images_are_written_as_they_are():
    colours = np.random.default_rng(0).integers(0, 256, (16, 40, 3), dtype=np.uint8)
    pixels, header = _decoded(image_summary("disp_0/0", colours))
    np.testing.assert_array_equal(pixels, colours)
    assert header == (16, 40, 3)


@pytest.mark.parametrize("size", [0, 1, 8, 1000, 65537])
def test_event_checksums_are_tensorboards(size):
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboards

    from md2.core.train.tb_logging import masked_crc32c

    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert masked_crc32c(data) == tensorboards(data)


def test_event_files_with_fast_checksums_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from md2.core.train.tb_logging import fast_event_checksums

    assert fast_event_checksums()
    with SummaryWriter(str(tmp_path)) as writer:
        writer.add_scalar("loss", 0.25, 3)
        writer.file_writer.add_summary(image_summary("color_0_0/0", np.full((8, 16, 3), 7, np.uint8)), 3)
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(3, 0.25)]
    assert events.Images("color_0_0/0")[0].width == 16
