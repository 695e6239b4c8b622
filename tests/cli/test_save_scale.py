"""md2 evaluate-depth --save-scale on synthetic drives, and md2 predict using the stored scale."""

from __future__ import annotations

import json
import shutil

import pytest

from md2.core.metric_scale import SCALE_FILE, read_scale
from tests.cli.test_evaluate_cli import _depth_args, md2_in_process, splits, weights  # noqa: F401 -- fixtures
from tests.cli.test_predict import street_image
from tests.core.test_pointcloud import read_ply


def test_save_scale_stores_the_median_ratio_and_predict_uses_it(capsys, synth_raw, splits, weights,  # noqa: F811
                                                                 tmp_path):
    folder = tmp_path / "weights_0"
    shutil.copytree(weights, folder)
    report = tmp_path / "r.json"
    code, out, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--load-weights-folder", folder,
                                                         "--eval-mono", "--save-scale", "--json", report))
    assert code == 0, err
    median = json.loads(report.read_text())["scaling_ratios"]["median"]
    assert read_scale(folder) == pytest.approx(median, rel=1e-12) and median > 0
    assert f"saved to {folder / SCALE_FILE}" in err.replace("\n", "")
    image = street_image(tmp_path / "s.jpg")
    code, _, err = md2_in_process(capsys, "predict", image, "--weights", folder, "--point-cloud", "--device", "cpu")
    assert code == 0, err
    header, _ = read_ply(tmp_path / "s.ply")
    assert f"comment units: metres (median scale {median:.4g} from evaluate-depth --save-scale)" in header


@pytest.mark.parametrize("extra, message", [
    (["--eval-stereo"], "--eval-mono"), (["--eval-mono", "--disable-median-scaling"], "--eval-mono"),
    (["--eval-mono", "--no-eval"], "--no-eval")])
def test_save_scale_without_mono_median_scaling_is_a_usage_error(capsys, synth_raw, splits, weights,  # noqa: F811
                                                                 extra, message):
    code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--load-weights-folder", weights,
                                                       "--save-scale", *extra))
    assert code == 2 and message in err and not (weights / SCALE_FILE).exists()


def test_corrupt_saved_scale_is_one_clear_line(capsys, weights, tmp_path):  # noqa: F811
    folder = tmp_path / "w"
    shutil.copytree(weights, folder)
    (folder / SCALE_FILE).write_text('{"scale": -3}')
    code, _, err = md2_in_process(capsys, "predict", street_image(tmp_path / "c.jpg"), "--weights", folder,
                                  "--point-cloud", "--device", "cpu")
    assert code == 1 and "the scale must be a positive number" in err
