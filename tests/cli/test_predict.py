"""md2 predict end to end: a checkpoint written by md2, real image files, the real executable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_app import run_md2

SHARED_IMAGE = Path(__file__).resolve().parents[2].parent / "shared" / "images" / "test_image.jpg"


def street_image(path: Path, width: int = 300, height: int = 100) -> Path:
    """A generated image: a gradient with texture, saved as ``path``."""
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 255, height)[:, None, None]
    pixels = np.clip(rows + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_predict_writes_disparity_and_picture(tmp_path, weights):
    image = street_image(tmp_path / "street.jpg")
    result = run_md2("predict", str(image), "--weights", str(weights))
    assert result.returncode == 0, result.stderr
    disp = np.load(tmp_path / "street_disp.npy")
    assert disp.shape == (1, 1, 64, 192)
    assert disp.min() >= 1 / 100 - 1e-6 and disp.max() <= 1 / 0.1 + 1e-4  # disp_to_depth(., 0.1, 100) range
    with Image.open(tmp_path / "street_disp.jpeg") as picture:
        assert picture.size == (300, 100) and picture.mode == "RGB"


def test_predict_folder_batched_skips_earlier_outputs(tmp_path, weights):
    for index in range(3):
        street_image(tmp_path / f"frame{index}.jpg")
    first = run_md2("predict", str(tmp_path), "--weights", str(weights), "--batch-size", "2")
    assert first.returncode == 0, first.stderr
    again = run_md2("predict", str(tmp_path), "--weights", str(weights), "--ext", "jpeg")
    assert again.returncode == 1 and "no images" in again.stderr  # only *_disp.jpeg there: not inputs


def test_batched_equals_one_by_one(tmp_path, weights):
    for index in range(3):
        street_image(tmp_path / f"f{index}.png", width=200 + 10 * index)
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    assert run_md2("predict", str(tmp_path), "--ext", "png", "--weights", str(weights),
                   "--output-dir", str(out_a)).returncode == 0
    assert run_md2("predict", str(tmp_path), "--ext", "png", "--weights", str(weights), "--batch-size", "3",
                   "--output-dir", str(out_b)).returncode == 0
    for index in range(3):
        a, b = np.load(out_a / f"f{index}_disp.npy"), np.load(out_b / f"f{index}_disp.npy")
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_metric_depth_and_png(tmp_path, weights):
    image = street_image(tmp_path / "s.jpg")
    result = run_md2("predict", str(image), "--weights", str(weights), "--pred-metric-depth", "--save-depth-png")
    assert result.returncode == 0, result.stderr
    depth = np.load(tmp_path / "s_depth.npy")
    assert depth.shape == (1, 1, 64, 192) and depth.min() >= 5.4 * 0.1 - 1e-4
    png = np.array(Image.open(tmp_path / "s_depth.png"))
    assert png.dtype == np.uint16 and png.shape == (100, 300)
    assert not (tmp_path / "s_disp.npy").exists()


def test_unreadable_image_is_named_and_others_still_run(tmp_path, weights):
    street_image(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg")
    result = run_md2("predict", str(tmp_path), "--weights", str(weights))
    assert result.returncode == 1
    assert "bad.jpg" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "good_disp.npy").exists() and not (tmp_path / "bad_disp.npy").exists()


def test_output_dir_is_not_created_when_nothing_is_written(tmp_path, weights):
    (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg")
    result = run_md2("predict", str(tmp_path / "bad.jpg"), "--weights", str(weights), "--output-dir",
                     str(tmp_path / "out"))
    assert result.returncode == 1 and "bad.jpg" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("problem", ["missing", "not_a_checkpoint", "truncated"])
def test_bad_weights_give_one_line(tmp_path, weights, problem):
    image = street_image(tmp_path / "x.jpg")
    folder = tmp_path / "w"
    if problem != "missing":
        folder.mkdir()
        for name in ("encoder.pth", "depth.pth"):
            data = (weights / name).read_bytes()
            (folder / name).write_bytes(b"garbage" if problem == "not_a_checkpoint" else data[: len(data) // 3])
    result = run_md2("predict", str(image), "--weights", str(folder))
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.skipif(not SHARED_IMAGE.exists(), reason="../shared/images/test_image.jpg not present")
def test_predict_on_real_street_photo(tmp_path, weights):
    result = run_md2("predict", str(SHARED_IMAGE), "--weights", str(weights), "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with Image.open(SHARED_IMAGE) as photo, Image.open(tmp_path / "test_image_disp.jpeg") as picture:
        assert picture.size == photo.size
    assert np.isfinite(np.load(tmp_path / "test_image_disp.npy")).all()


def test_python_api_loads_a_weights_folder_and_predicts(weights):
    import md2

    model = md2.load_model(weights, device="cpu")
    depth = model.predict_depth(Image.new("RGB", (150, 50), (100, 120, 90)))
    assert depth.shape == (50, 150) and np.isfinite(depth).all() and depth.min() > 0


def test_a_folder_is_prepared_while_torch_is_imported(tmp_path, weights):
    """In a fresh interpreter the first pictures are decoded and resized while torch is being imported and the
    model loaded: the pipeline finds them done (what it takes is counted) and writes the files it writes without."""
    for index in range(4):
        street_image(tmp_path / f"f{index}.png", width=200 + 10 * index)
    script = f"""
import sys
import md2.core.pictures as pictures
from md2.cli.app import main
taken, original = [], pictures.PreparedAhead.take
def take(self, path):
    ready = original(self, path)
    taken.append(ready is not None)
    return ready
pictures.PreparedAhead.take = take
assert "torch" not in sys.modules
try:
    main(["predict", {str(tmp_path)!r}, "--ext", "png", "--weights", {str(weights)!r}, "--output-dir",
          {str(tmp_path / "ahead")!r}, "--quiet"])
except SystemExit as end:
    assert not end.code, end.code
print(taken)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[True,", "True,", "True,", "True]"]
    from md2.core.exported import load_predictor
    from md2.core.pictures import collect_inputs
    from md2.core.predict import PredictOptions, default_batch_size, predict_images

    predictor = load_predictor(weights, device="auto", precision="auto")  # md2 predict's defaults, nothing ahead
    options = PredictOptions(tmp_path / "plain", batch_size=default_batch_size(predictor))
    assert not predict_images(predictor, collect_inputs([str(tmp_path)], "png"), options).failed
    for index in range(4):
        for suffix in ("_disp.npy", "_disp.jpeg"):
            name = f"f{index}{suffix}"
            assert (tmp_path / "ahead" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
