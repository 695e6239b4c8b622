"""``md2 evaluate-depth --gt-dir DIR``: your own images and 16-bit depth PNGs score exactly as the same pictures
and depths given as a split would, with --gt-scale for other conventions and --eigen-crop for Garg's crop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from md2.core.evaluation.depth import score_disparities
from md2.data.groundtruth import load_gt_depths
from tests.cli.test_evaluate_cli import md2_in_process

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
FRAMES = range(1, 7)


def _depth_png(path: Path, depth: np.ndarray, scale: float) -> np.ndarray:
    """Write depth x scale as a 16-bit PNG; returns the metres it stores (as a reader gets them back)."""
    stored = np.clip(np.round(depth * scale), 0, 65535).astype(np.uint16)
    stored[:, :3] = 0  # some unknown pixels, as in real ground truth
    Image.fromarray(stored).save(path)
    return stored.astype(np.float32) / np.float32(scale)


def gt_folder(synth_raw: Path, folder: Path, scale: float = 256.0, names: str = "shot_{frame}") -> list[np.ndarray]:
    """FOLDER/NAME.png (the synthetic left images) and NAME_depth.png (their exact depth); returns the depths."""
    folder.mkdir(parents=True)
    depths = []
    for frame in FRAMES:
        name = names.format(frame=frame)
        shutil.copy(synth_raw / DRIVE / "image_02" / "data" / f"{frame:010d}.png", folder / f"{name}.png")
        depth = np.load(synth_raw / DRIVE / "rendered_depth" / "image_02" / f"{frame:010d}.npy")
        depths.append(_depth_png(folder / f"{name}_depth.png", depth, scale))
    return depths


def split_of(splits: Path, name: str, depths: list[np.ndarray]) -> None:
    """The same pictures as split NAME: test_files.txt and gt_depths.npz (md2's keys)."""
    folder = splits / name
    folder.mkdir(parents=True)
    (folder / "test_files.txt").write_text("".join(f"{DRIVE} {frame} l\n" for frame in FRAMES))
    np.savez_compressed(folder / "gt_depths.npz", **{f"{i:04d}": depth for i, depth in enumerate(depths)})


def metrics_of(capsys, *args) -> dict:
    code, _, err = md2_in_process(capsys, "evaluate-depth", *args, "--num-workers", "0", "--quiet")
    assert code == 0, err
    return json.loads(Path(args[args.index("--json") + 1]).read_text())


@pytest.mark.parametrize("mode", [["--eval-mono"], ["--eval-stereo"]])
def test_gt_dir_scores_a_model_exactly_as_the_same_split(synth_raw, weights, tmp_path, capsys, mode):
    depths = gt_folder(synth_raw, tmp_path / "mine")
    split_of(tmp_path / "splits", "mine", depths)
    common = ["--load-weights-folder", weights, *mode]
    by_folder = metrics_of(capsys, *common, "--gt-dir", tmp_path / "mine", "--json", tmp_path / "a.json")
    by_split = metrics_of(capsys, *common, "--eval-split", "mine", "--splits-dir", tmp_path / "splits",
                          "--data-path", synth_raw, "--png", "--json", tmp_path / "b.json")
    assert by_folder["num_predictions"] == 6
    assert by_folder["metrics"] == by_split["metrics"]
    assert by_folder["scaling_ratios"] == by_split["scaling_ratios"]


def test_gt_scale_reads_millimetres_and_perfect_disparities_score_zero(synth_raw, tmp_path, capsys):
    depths = gt_folder(synth_raw, tmp_path / "mm", scale=1000.0)
    disps = np.stack([np.where(depth > 0, 1 / np.maximum(depth, 1e-3), 1).astype(np.float32) for depth in depths])
    np.save(tmp_path / "perfect.npy", disps)
    result = metrics_of(capsys, "--ext-disp-to-eval", tmp_path / "perfect.npy", "--eval-mono",
                        "--disable-median-scaling", "--gt-dir", tmp_path / "mm", "--gt-scale", "1000",
                        "--json", tmp_path / "r.json")
    assert result["metrics"]["abs_rel"] < 1e-6 and result["metrics"]["a1"] == 1.0
    wrong = metrics_of(capsys, "--ext-disp-to-eval", tmp_path / "perfect.npy", "--eval-mono",
                       "--disable-median-scaling", "--gt-dir", tmp_path / "mm", "--json", tmp_path / "w.json")
    assert wrong["metrics"]["abs_rel"] > 0.5  # read as x256: the depths are 3.9 times too large


def test_eigen_crop_applies_gargs_crop_and_median_scaling(synth_raw, tmp_path, capsys):
    depths = gt_folder(synth_raw, tmp_path / "mine")
    rng = np.random.default_rng(0)
    disps = rng.uniform(0.05, 1.0, size=(6, 32, 96)).astype(np.float32)
    np.save(tmp_path / "d.npy", disps)
    args = ["--ext-disp-to-eval", tmp_path / "d.npy", "--eval-mono", "--gt-dir", tmp_path / "mine"]
    cropped = metrics_of(capsys, *args, "--eigen-crop", "--json", tmp_path / "c.json")
    plain = metrics_of(capsys, *args, "--json", tmp_path / "p.json")
    for crop, result in ((True, cropped), (False, plain)):
        expected = score_disparities(disps, depths, eigen_crop=crop, median_scaling=True)
        assert result["metrics"] == expected.metrics
        assert result["scaling_ratios"]["median"] == expected.ratio_median
    assert cropped["metrics"] != plain["metrics"]


def test_an_image_without_its_depth_png_is_named(synth_raw, tmp_path, capsys):
    gt_folder(synth_raw, tmp_path / "mine")
    (tmp_path / "mine" / "shot_3_depth.png").unlink()
    code, _, err = md2_in_process(capsys, "evaluate-depth", "--ext-disp-to-eval", tmp_path / "x.npy",
                                  "--eval-mono", "--gt-dir", tmp_path / "mine")
    assert code == 1
    assert "shot_3.png" in err and "shot_3_depth.png" in err and len(err.strip().splitlines()) == 1


def test_an_rgb_png_as_ground_truth_is_refused(synth_raw, tmp_path, capsys):
    gt_folder(synth_raw, tmp_path / "mine")
    np.save(tmp_path / "d.npy", np.ones((6, 32, 96), np.float32))
    shutil.copy(tmp_path / "mine" / "shot_1.png", tmp_path / "mine" / "shot_2_depth.png")
    code, _, err = md2_in_process(capsys, "evaluate-depth", "--ext-disp-to-eval", tmp_path / "d.npy",
                                  "--eval-mono", "--gt-dir", tmp_path / "mine")
    assert code == 1 and "not a single-channel 16-bit PNG" in err, err


@pytest.mark.parametrize("extra", [["--eigen-crop"], ["--gt-scale", "1000"]])
def test_gt_options_without_gt_dir_are_refused(tmp_path, capsys, extra):
    code, _, err = md2_in_process(capsys, "evaluate-depth", "--ext-disp-to-eval", tmp_path / "x.npy",
                                  "--eval-mono", *extra)
    assert code == 2 and "--gt-dir" in err, err


def test_real_kitti_frames_with_eigen_crop_score_as_the_eigen_split(shared_dir, tmp_path, capsys):
    """Ten real KITTI frames: their lidar depth as 16-bit PNGs in a --gt-dir, against the same frames as an
    "eigen" split whose ground truth md2 export-gt projects (float metres): the same crop and median scaling, so
    the metrics agree to the PNGs' 1/256 m quantisation."""
    real = shared_dir / "kitti_real"
    drive = real / "2011_09_26" / "2011_09_26_drive_0060_sync"
    frames = sorted(int(path.stem) for path in (drive / "image_02" / "data").glob("*.png"))
    assert len(frames) == 10
    splits = tmp_path / "splits"
    (splits / "eigen").mkdir(parents=True)
    (splits / "eigen" / "test_files.txt").write_text(
        "".join(f"2011_09_26/2011_09_26_drive_0060_sync {frame} l\n" for frame in frames))
    code, _, err = md2_in_process(capsys, "export-gt", "--data-path", real, "--split", "eigen", "--splits-dir",
                                  splits, "--quiet")
    assert code == 0, err
    lidar = load_gt_depths(splits / "eigen" / "gt_depths.npz")
    folder = tmp_path / "real"
    folder.mkdir()
    for frame, depth in zip(frames, lidar):
        shutil.copy(drive / "image_02" / "data" / f"{frame:010d}.png", folder / f"{frame:010d}.png")
        Image.fromarray(np.round(depth * 256).astype(np.uint16)).save(folder / f"{frame:010d}_depth.png")
    disps = np.random.default_rng(1).uniform(0.02, 0.5, size=(10, 192, 640)).astype(np.float32)
    np.save(tmp_path / "d.npy", disps)
    common = ["--ext-disp-to-eval", tmp_path / "d.npy", "--eval-mono"]
    by_split = metrics_of(capsys, *common, "--eval-split", "eigen", "--splits-dir", splits,
                          "--json", tmp_path / "s.json")
    by_folder = metrics_of(capsys, *common, "--gt-dir", folder, "--eigen-crop", "--json", tmp_path / "f.json")
    for name, value in by_split["metrics"].items():
        assert by_folder["metrics"][name] == pytest.approx(value, rel=2e-3, abs=2e-3), name
    uncropped = metrics_of(capsys, *common, "--gt-dir", folder, "--json", tmp_path / "u.json")
    assert uncropped["metrics"]["abs_rel"] != pytest.approx(by_folder["metrics"]["abs_rel"], rel=1e-4)
