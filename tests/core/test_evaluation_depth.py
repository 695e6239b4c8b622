"""Depth evaluation: the reference's per-image procedure, masks, scaling, benchmark PNGs, predictions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from md2.core.checkpoint import save_weights_folder
from md2.core.evaluation.depth import (
    load_external_disparities,
    predict_disparities,
    save_disparities,
    score_disparities,
    score_image,
    write_benchmark_pngs,
)
from md2.core.evaluation.depth_job import DepthEvalSettings, check_settings
from md2.core.evaluation.report import DEPTH_METRICS, latex_line
from md2.core.inference import DepthPredictor
from md2.core.networks import DepthDecoder, ResnetEncoder
from md2.data.kitti import KITTIRawDataset
from md2.data.sample import collate_samples
from md2.errors import DataError, UsageError

KITTI_SIZES = [(375, 1242), (370, 1224)]


def _ground_truth(count: int = 4, seed: int = 0, sparsity: float = 0.9) -> list[np.ndarray]:
    """Lidar-like float32 maps of both KITTI sizes: depths in 1..90 m on ``1 - sparsity`` of the pixels."""
    rng = np.random.default_rng(seed)
    maps = []
    for i in range(count):
        height, width = KITTI_SIZES[i % 2]
        depth = rng.uniform(1, 90, (height, width)).astype(np.float32)
        depth[rng.random((height, width)) < sparsity] = 0
        maps.append(depth)
    return maps


def _reference_scores(disps, gts, eigen: bool, mono: bool, factor: float):
    """The reference's evaluation loop, written out independently of md2 (float32 as the reference)."""
    rows, ratios = [], []
    for disp, gt in zip(disps, gts):
        height, width = gt.shape
        pred = 1 / cv2.resize(disp, (width, height))
        if eigen:
            crop = np.array([0.40810811 * height, 0.99189189 * height,
                             0.03594771 * width, 0.96405229 * width]).astype(np.int32)
            crop_mask = np.zeros(gt.shape)
            crop_mask[crop[0]:crop[1], crop[2]:crop[3]] = 1
            mask = np.logical_and(np.logical_and(gt > 1e-3, gt < 80), crop_mask)
        else:
            mask = gt > 0
        pred, truth = pred[mask], gt[mask]
        pred *= factor
        if mono:
            ratio = np.median(truth) / np.median(pred)
            ratios.append(ratio)
            pred *= ratio
        pred[pred < 1e-3] = 1e-3
        pred[pred > 80] = 80
        thresh = np.maximum(truth / pred, pred / truth)
        rows.append(((np.abs(truth - pred) / truth).mean(), ((truth - pred) ** 2 / truth).mean(),
                     np.sqrt(((truth - pred) ** 2).mean()), np.sqrt(((np.log(truth) - np.log(pred)) ** 2).mean()),
                     (thresh < 1.25).mean(), (thresh < 1.25 ** 2).mean(), (thresh < 1.25 ** 3).mean()))
    return np.array(rows).mean(0), np.array(ratios)


@pytest.mark.parametrize("eigen", [True, False])
@pytest.mark.parametrize("mono", [True, False])
def test_scores_equal_the_reference_loop_bit_for_bit(eigen, mono):
    gts = _ground_truth()
    disps = np.random.default_rng(1).uniform(0.01, 0.3, (len(gts), 48, 160)).astype(np.float32)
    factor = 1.0 if mono else 5.4
    scores = score_disparities(disps, gts, eigen_crop=eigen, median_scaling=mono, scale_factor=factor)
    expected, ratios = _reference_scores(disps, gts, eigen, mono, factor)
    assert [scores.metrics[name] for name in DEPTH_METRICS] == expected.tolist()
    if mono:
        median = np.median(ratios)
        assert scores.ratio_median == float(median)
        assert scores.ratio_std == float(np.std(ratios / median))
    else:
        assert scores.ratios is None and scores.ratio_median is None


@pytest.mark.parametrize("eigen", [True, False])
@pytest.mark.parametrize("mono", [True, False])
def test_perfect_prediction_scores_zero_error(eigen, mono):
    gts = [np.clip(gt, 0, 79) for gt in _ground_truth()]
    # Stereo models' depth is 5.4 x 1/disparity, so their perfect disparity is 5.4 / depth.
    numerator = 1.0 if mono else 5.4
    disps = [np.where(gt > 0, numerator / np.maximum(gt, 1e-3), 1.0).astype(np.float32) for gt in gts]
    scores = score_disparities(disps, gts, eigen_crop=eigen, median_scaling=mono, scale_factor=numerator)
    assert scores.metrics["abs_rel"] < 1e-6 and scores.metrics["rmse"] < 1e-4
    assert scores.metrics["a1"] == scores.metrics["a2"] == scores.metrics["a3"] == 1.0
    if mono:
        assert scores.ratio_median == pytest.approx(1.0, abs=1e-6)


def test_median_scaling_undoes_a_constant_scale():
    gts = [np.clip(gt, 0, 79) for gt in _ground_truth(3)]
    disps = [np.where(gt > 0, 2.0 / np.maximum(gt, 1e-3), 1.0).astype(np.float32) for gt in gts]  # half depth
    scores = score_disparities(disps, gts, eigen_crop=False, median_scaling=True)
    assert np.allclose(scores.ratios, 2.0, rtol=1e-6)
    assert scores.ratio_std < 1e-6 and scores.metrics["abs_rel"] < 1e-6
    unscaled = score_disparities(disps, gts, eigen_crop=False, median_scaling=False)
    assert unscaled.metrics["abs_rel"] == pytest.approx(0.5, abs=1e-3)


def test_metrics_are_averaged_over_images_not_pixels():
    dense, sparse = _ground_truth(2, sparsity=0.0)[0], _ground_truth(2, sparsity=0.99)[1]
    disps = [np.full((48, 160), 0.05, np.float32)] * 2
    scores = score_disparities(disps, [dense, sparse], eigen_crop=False, median_scaling=False)
    assert np.allclose(scores.per_image.mean(0), [scores.metrics[name] for name in DEPTH_METRICS])
    single = [score_disparities([d], [g], False, False).metrics["abs_rel"] for d, g in zip(disps, [dense, sparse])]
    assert scores.metrics["abs_rel"] == pytest.approx(np.mean(single))


@pytest.mark.parametrize("size, rows, cols", [((375, 1242), (153, 371), (44, 1197)),
                                              ((370, 1224), (151, 366), (43, 1180))])
def test_eigen_evaluation_uses_only_the_crop(size, rows, cols):
    """A wrong pixel counts exactly when it is inside rows [top, bottom) and columns [left, right)."""
    gt = np.full(size, 10.0, np.float32)
    perfect = np.full(size, 0.1, np.float32)

    def abs_rel_with_wrong_pixel(row: int, col: int, eigen: bool) -> float:
        disp = perfect.copy()
        disp[row, col] = 0.05
        return score_image(disp, gt, eigen, median_scaling=False)[0][0]

    inside = [(rows[0], cols[0]), (rows[1] - 1, cols[1] - 1)]
    outside = [(rows[0] - 1, cols[0]), (rows[1], cols[0]), (rows[0], cols[0] - 1), (rows[0], cols[1])]
    assert all(abs_rel_with_wrong_pixel(r, c, True) > 0 for r, c in inside)
    assert all(abs_rel_with_wrong_pixel(r, c, True) == 0 for r, c in outside)
    assert all(abs_rel_with_wrong_pixel(r, c, False) > 0 for r, c in outside)


def test_eigen_ignores_ground_truth_beyond_80_m_and_predictions_are_clamped():
    gt = np.full((375, 1242), 50.0, np.float32)
    gt[200, 600] = 95.0
    disp = np.full(gt.shape, 1 / 50, np.float32)
    disp[200, 600] = 1 / 500  # would be 500 m: clamped to 80
    eigen, _ = score_image(disp, gt, True, median_scaling=False)
    other, _ = score_image(disp, gt, False, median_scaling=False)
    assert eigen[0] == pytest.approx(0, abs=1e-6)
    assert other[2] == pytest.approx(np.sqrt((95 - 80) ** 2 / gt.size), rel=1e-3)  # rmse of the one pixel


def test_prediction_count_must_match_the_ground_truth():
    with pytest.raises(DataError, match="3 predictions for 4 ground-truth"):
        score_disparities(np.ones((3, 8, 8), np.float32), _ground_truth(4), False, True)


def test_benchmark_pngs_hold_truncated_depth_times_256(tmp_path):
    disps = np.stack([np.full((48, 160), value, np.float32) for value in (0.1, 0.07, 0.01)])
    paths = write_benchmark_pngs(disps, tmp_path / "benchmark_predictions")
    assert [p.name for p in paths] == ["0000000000.png", "0000000001.png", "0000000002.png"]
    expected = [int(5.4 / np.float32(0.1) * 256), int(5.4 / np.float32(0.07) * 256), 80 * 256]
    assert expected[1] == 19748  # 77.142857 m x 256 = 19748.57: truncated, not rounded
    for path, value in zip(paths, expected):
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert stored.dtype == np.uint16 and stored.shape == (352, 1216)
        assert np.all(stored == value)


def test_external_disparities_are_squeezed_and_reindexed(tmp_path):
    disps = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 1, 4, 6), np.float32)
    np.save(tmp_path / "d.npy", disps)
    loaded = load_external_disparities(tmp_path / "d.npy", reindex=np.array([4, 0, 2]))
    assert loaded.shape == (3, 4, 6) and loaded[:, 0, 0].tolist() == [4, 0, 2]


@pytest.mark.parametrize("content, message", [(None, "no such disparity file"),
                                              (np.ones((4, 6), np.float32), r"shape \(N, h, w\)"),
                                              (np.ones((2, 4, 6), np.int64), "float disparities")])
def test_bad_external_disparities_are_data_errors(tmp_path, content, message):
    path = tmp_path / "d.npy"
    if content is not None:
        np.save(path, content)
    with pytest.raises(DataError, match=message):
        load_external_disparities(path)


def test_reindexing_needs_every_eigen_image(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((3, 4, 6), np.float32))
    with pytest.raises(DataError, match="holds 3 disparities"):
        load_external_disparities(tmp_path / "d.npy", reindex=np.array([0, 5]))


def test_saved_disparities_load_back(tmp_path):
    disps = np.random.default_rng(0).random((2, 4, 6)).astype(np.float32)
    path = save_disparities(disps, tmp_path / "out", "eigen")
    assert path.name == "disps_eigen_split.npy" and np.array_equal(np.load(path), disps)


# -- predictions through a real (random-weights) network ----------------------------------------------------
def _raw_images(root: Path, count: int = 3) -> list[str]:
    """A tiny KITTI raw drive (PNG images) and its split lines."""
    folder = "2011_09_26/2011_09_26_drive_0001_sync"
    images = root / folder / "image_02" / "data"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for frame in range(count):
        Image.fromarray(rng.integers(0, 255, (90, 300, 3), dtype=np.uint8)).save(images / f"{frame:010d}.png")
    return [f"{folder} {frame} l" for frame in range(count)]


@pytest.fixture()
def predictor(tmp_path) -> DepthPredictor:
    torch.manual_seed(0)
    encoder = ResnetEncoder(18)
    save_weights_folder(tmp_path / "weights", {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                        height=64, width=192, use_stereo=False)
    return DepthPredictor.from_folder(tmp_path / "weights", device="cpu")


def test_predicted_disparities_are_scaled_and_in_split_order(tmp_path, predictor):
    lines = _raw_images(tmp_path / "data")
    dataset = KITTIRawDataset(tmp_path / "data", lines, 64, 192, (0,), num_scales=1, img_ext=".png",
                              load_depth=False)
    disps = predict_disparities(predictor, dataset, batch_size=2, collate_fn=collate_samples)
    assert disps.shape == (3, 64, 192) and disps.dtype == np.float32
    assert disps.min() >= 1 / 100 and disps.max() <= 1 / 0.1
    single = predictor.scaled_disparity(predictor.disparity(dataset[2].color[0][0][None]))
    assert np.allclose(disps[2], single[0, 0].numpy(), atol=1e-6)


def test_post_processing_blends_the_mirrored_prediction(tmp_path, predictor):
    lines = _raw_images(tmp_path / "data", count=2)
    dataset = KITTIRawDataset(tmp_path / "data", lines, 64, 192, (0,), num_scales=1, img_ext=".png",
                              load_depth=False)
    blended = predict_disparities(predictor, dataset, batch_size=2, post_process=True, collate_fn=collate_samples)
    images = torch.stack([dataset[i].color[0][0] for i in range(2)])
    plain = predictor.scaled_disparity(predictor.disparity(images))[:, 0].numpy()
    mirrored = predictor.scaled_disparity(predictor.disparity(images.flip(3)))[:, 0].numpy()[:, :, ::-1]
    assert blended.dtype == np.float64 and blended.shape == (2, 64, 192)
    # Columns 0..~5% come from the mirrored pass, the last ~5% from the plain one, the middle is the mean.
    assert np.allclose(blended[:, :, 0], mirrored[:, :, 0], atol=1e-5)
    assert np.allclose(blended[:, :, -1], plain[:, :, -1], atol=1e-5)
    assert np.allclose(blended[:, :, 96], (plain[:, :, 96] + mirrored[:, :, 96]) / 2, atol=1e-5)


def test_latex_line_is_the_reference_format():
    line = latex_line([0.1154, 0.903, 4.8637, 0.1932, 0.8771, 0.959, 0.9812])
    assert line == "&   0.115  &   0.903  &   4.864  &   0.193  &   0.877  &   0.959  &   0.981  \\\\"


# -- settings ------------------------------------------------------------------------------------------------
def test_stereo_settings_override_median_scaling_and_factor():
    stereo = DepthEvalSettings(eval_stereo=True, pred_depth_scale_factor=2.0, load_weights_folder=Path("w"))
    assert not stereo.median_scaling and stereo.scale_factor == 5.4
    mono = DepthEvalSettings(eval_mono=True, disable_median_scaling=True, pred_depth_scale_factor=2.0,
                             load_weights_folder=Path("w"))
    assert not mono.median_scaling and mono.scale_factor == 2.0
    assert DepthEvalSettings(eval_mono=True, load_weights_folder=Path("w")).median_scaling


def test_outputs_go_to_the_weights_folder_unless_told_otherwise():
    assert DepthEvalSettings(eval_mono=True, load_weights_folder=Path("w")).out_dir == Path("w")
    assert DepthEvalSettings(eval_mono=True, ext_disp_to_eval=Path("d.npy")).out_dir == Path(".")
    assert DepthEvalSettings(eval_mono=True, load_weights_folder=Path("w"), eval_out_dir=Path("o")).out_dir == Path("o")


@pytest.mark.parametrize("options, message", [
    ({"eval_mono": True}, "--load-weights-folder"),
    ({"eval_mono": True, "load_weights_folder": Path("w"), "eval_eigen_to_benchmark": True}, "--ext-disp-to-eval"),
    ({"eval_mono": True, "load_weights_folder": Path("w"), "min_depth": 200.0}, "--min-depth"),
    ({"eval_mono": True, "eval_stereo": True, "load_weights_folder": Path("w")}, "exactly one"),
])
def test_bad_settings_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        check_settings(DepthEvalSettings(**options))
