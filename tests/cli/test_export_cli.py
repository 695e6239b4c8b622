"""md2 export end to end through the console script, then md2 predict on the exported files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli.test_app import run_md2
from tests.cli.test_predict import street_image
from tests.model_folders import random_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_model(tmp_path_factory.mktemp("model") / "weights_0", use_stereo=True, seed=0, pose=True)


@pytest.fixture(scope="module")
def predicted_with_the_folder(weights, tmp_path_factory) -> tuple[Path, Path]:
    """(photo, md2 predict's NAME_disp.npy for it with the weights folder)."""
    folder = tmp_path_factory.mktemp("photos")
    photo = street_image(folder / "street.jpg")
    result = run_md2("predict", str(photo), "--weights", str(weights), "--device", "cpu", "--precision", "fp32",
                     "--output-dir", str(folder / "from_folder"))
    assert result.returncode == 0, result.stderr
    return photo, folder / "from_folder" / "street_disp.npy"


def assert_predict_matches_the_folder(exported: Path, predicted_with_the_folder, out: Path) -> None:
    photo, reference = predicted_with_the_folder
    result = run_md2("predict", str(photo), "--weights", str(exported), "--device", "cpu", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert f"with {exported}" in result.stderr
    disp = np.load(out / "street_disp.npy")  # the scaled disparity, 0.01 .. 10
    assert disp.shape == (1, 1, 64, 192)
    np.testing.assert_allclose(disp, np.load(reference), rtol=1e-4, atol=1e-4)
    assert (out / "street_disp.jpeg").is_file()


def test_export_onnx_then_predict_gives_the_weights_folders_outputs(weights, predicted_with_the_folder, tmp_path):
    output = tmp_path / "deploy" / "depth.onnx"
    result = run_md2("export", "--weights", str(weights), "--output", str(output))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"depth network -> {output} (")
    assert "ONNX opset 18, fp32, 64x192 (height x width), batch 1): onnxruntime" in lines[0]
    assert "matches PyTorch within" in lines[0] and "(allowed 1e-4 in fp32; batch size 1)" in lines[0]
    assert sorted(path.name for path in output.parent.iterdir()) == ["depth.onnx"]  # no temporary left
    assert_predict_matches_the_folder(output, predicted_with_the_folder, tmp_path / "predicted")


def test_export_torchscript_of_a_zoo_model_with_pose(weights, predicted_with_the_folder, tmp_path):
    # In the cache, as a download leaves it: a zip of ours cannot have the published md5 that the zoo checks.
    shutil.copytree(weights, tmp_path / "home" / "models" / "mono+stereo_640x192")
    output = tmp_path / "depth.pt"
    env = {"MD2_HOME": str(tmp_path / "home"), "MD2_ZOO_URL": "http://127.0.0.1:9"}
    result = run_md2("export", "--model", "mono+stereo_640x192", "--output", str(output), "--with-pose",
                     "--dynamic-batch", "--verbose", env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    assert f"depth network -> {output} (" in result.stderr
    assert f"pose network -> {tmp_path / 'depth_pose.pt'} (" in result.stderr
    assert "torch.jit" in result.stderr and "batch sizes 1 and 3" in result.stderr
    assert "output transform (batchx4x4): 4x4 transform" in result.stderr  # --verbose: inputs and outputs
    extra = {"md2.json": ""}
    torch.jit.load(str(output), _extra_files=extra)
    assert json.loads(extra["md2.json"])["model"] == "mono+stereo_640x192"
    assert_predict_matches_the_folder(output, predicted_with_the_folder, tmp_path / "predicted")
