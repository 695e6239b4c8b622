"""The predict pipeline writes, byte for byte, what the plain one-image-after-another loop writes.

The loop below is md2 predict's definition (the reference's test_simple.py steps, with md2's batching): decode,
LANCZOS resize, the network on the readable images of each ``batch_size`` consecutive inputs (the grouping
decides the last bits of fp32 convolutions, so it is part of the definition), the .npy at the
network's resolution, the bilinear upsampling, the magma picture (vmin = minimum, vmax = 95th percentile,
colour = floor(256 x normalised), computed in float64) and the 16-bit depth PNG. The pipeline overlaps these
steps in threads; its files, their order of completion and its error reports must not change.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from md2.core.inference import STEREO_SCALE_FACTOR, DepthPredictor, upsample
from md2.core.networks import DepthDecoder, ResnetEncoder
from md2.core.pictures import PreparedAhead
from md2.core.predict import PredictOptions, load_image, predict_images
from md2.core.visualize import MAGMA, colorize_disparity
from md2.errors import DataError


def definition_colorize(disp: np.ndarray) -> np.ndarray:
    """The colour map as first written (and as the reference computes it, up to OpenCV's table)."""
    disp = np.asarray(disp, dtype=np.float64)
    vmin, vmax = float(disp.min()), float(np.percentile(disp, 95))
    normalised = (disp - vmin) / (vmax - vmin) if vmax > vmin else np.zeros_like(disp)
    return MAGMA[np.clip(np.floor(normalised * 256.0), 0, 255).astype(np.uint8)]


def serial_outputs(predictor: DepthPredictor, paths: list[Path], options: PredictOptions) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for start in range(0, len(paths), options.batch_size):
        group = []
        for path in paths[start:start + options.batch_size]:
            try:
                group.append((path, *load_image(path, predictor.width, predictor.height)))
            except DataError:
                pass
        if not group:
            continue
        disps = predictor.disparity(torch.stack([tensor for _, tensor, _ in group]))
        for index, (path, _, (height, width)) in enumerate(group):
            disp = disps[index:index + 1]
            buffer = io.BytesIO()
            if options.pred_metric_depth:
                name, array = f"{path.stem}_depth.npy", STEREO_SCALE_FACTOR * predictor.depth(disp)
            else:
                name, array = f"{path.stem}_disp.npy", predictor.scaled_disparity(disp)
            np.save(buffer, array.numpy())
            files[name] = buffer.getvalue()
            full = upsample(disp, height, width)
            buffer = io.BytesIO()
            Image.fromarray(definition_colorize(full[0, 0].numpy())).save(buffer, format="JPEG")
            files[f"{path.stem}_disp.jpeg"] = buffer.getvalue()
            if options.save_depth_png:
                depth = predictor.depth(full)[0, 0].numpy() * (STEREO_SCALE_FACTOR if predictor.use_stereo else 1)
                buffer = io.BytesIO()
                Image.fromarray(np.clip(np.round(depth * 256.0), 0, 65535).astype(np.uint16)).save(buffer, "PNG")
                files[f"{path.stem}_depth.png"] = buffer.getvalue()
    return files


@pytest.fixture(scope="module")
def fp32_predictor() -> DepthPredictor:
    torch.manual_seed(0)
    encoder = ResnetEncoder(18).eval()
    return DepthPredictor(encoder, DepthDecoder(encoder.num_ch_enc).eval(), 64, 192, True, torch.device("cpu"))


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("metric, depth_png", [(False, False), (True, True)])
def test_pipeline_files_equal_the_serial_loop_byte_for_byte(tmp_path, fp32_predictor, photos, batch_size, metric,
                                                            depth_png):
    options = PredictOptions(tmp_path, metric, depth_png, batch_size)
    done = []
    report = predict_images(fp32_predictor, photos, options, on_image=done.append)
    assert done == photos  # progress in input order, the bad image in its place
    assert [path for path, _ in report.failed] == [photos[3]] and "p3.png" in report.failed[0][1]
    expected = serial_outputs(fp32_predictor, photos, options)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    for name, content in expected.items():
        assert (tmp_path / name).read_bytes() == content, name
    assert [p.name for p in report.written] == [name for name in expected]  # written in input order


@pytest.mark.parametrize("shape", [(375, 1242), (7, 5), (1, 1)])
def test_colorize_equals_its_definition(shape):
    rng = np.random.default_rng(sum(shape))
    disp = rng.random(shape, dtype=np.float32)
    disp[: shape[0] // 2] = disp.flat[0]  # ties, as in a sky of equal values
    assert np.array_equal(colorize_disparity(disp), definition_colorize(disp))
    flat = np.full(shape, 0.25, dtype=np.float32)  # vmax == vmin: the bottom colour everywhere
    assert np.array_equal(colorize_disparity(flat), definition_colorize(flat))


@pytest.mark.parametrize("precision, size, batch", [("fp32", (192, 640), 1), ("auto", (192, 640), 4),
                                                    ("auto", (320, 1024), 1), ("bf16", (96, 320), 16)])
def test_default_batch_size_is_one_on_the_exact_path_and_else_by_pixels(precision, size, batch):
    from md2.core.predict import default_batch_size

    encoder = ResnetEncoder(18).eval()
    predictor = DepthPredictor(encoder, DepthDecoder(encoder.num_ch_enc).eval(), *size, False, torch.device("cpu"),
                               precision=precision)
    assert default_batch_size(predictor) == batch


@pytest.mark.parametrize("budget_pictures, size_matches", [(100, True), (2, True), (100, False)],
                         ids=["all-ahead", "two-ahead", "other-size"])
def test_pictures_prepared_ahead_give_the_same_files(tmp_path, fp32_predictor, photos, budget_pictures,
                                                     size_matches):
    """md2 predict starts preparing pictures before the model is loaded; whichever prepares a picture (ahead,
    or the pipeline for those it did not reach), the files, their order and the bad image's report are as
    without it. Pictures prepared at another size than the network's are not used."""
    width, height = fp32_predictor.width, fp32_predictor.height
    if not size_matches:
        width += 32
    ahead = PreparedAhead(photos, width, height, budget=budget_pictures * width * height * 3)
    ahead.stop()  # whatever was prepared by now, and at most the picture in hand
    options = PredictOptions(tmp_path, False, False, 3)
    report = predict_images(fp32_predictor, photos, options, ahead=ahead)
    assert [path for path, _ in report.failed] == [photos[3]] and "p3.png" in report.failed[0][1]
    expected = serial_outputs(fp32_predictor, photos, options)
    for name, content in expected.items():
        assert (tmp_path / name).read_bytes() == content, name
    assert [p.name for p in report.written] == list(expected)
    assert not ahead._thread.is_alive()  # closed by predict_images
