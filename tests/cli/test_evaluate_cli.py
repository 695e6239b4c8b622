"""md2 evaluate-depth and md2 evaluate-pose end to end on synthetic KITTI drives and odometry sequences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from md2.cli.app import main
from tests.cli.test_app import run_md2
from tests.model_folders import random_model

SPLIT = "synth"


def md2_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``md2 ARGS`` in this process (faster than the executable); returns (exit code, stdout, stderr)."""
    try:
        main([str(arg) for arg in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _test_lines(root: Path) -> list[str]:
    return (root / "splits" / SPLIT / "test_files.txt").read_text().splitlines()


def _make_split(splits: Path, name: str, lines: list[str], data: Path) -> Path:
    """SPLITS/name/test_files.txt and its gt_depths.npz, written by `md2 export-gt`."""
    folder = splits / name
    folder.mkdir(parents=True)
    (folder / "test_files.txt").write_text("".join(f"{line}\n" for line in lines))
    code = main_code("export-gt", "--data-path", data, "--split", name, "--splits-dir", splits)
    assert code == 0 and (folder / "gt_depths.npz").is_file()
    return folder


def main_code(*args) -> int:
    try:
        main([str(arg) for arg in args])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


@pytest.fixture(scope="module")
def splits(synth_raw, tmp_path_factory) -> Path:
    """A splits folder with the synthetic test lines as split "synth" and as "eigen" (so the crop applies)."""
    folder = tmp_path_factory.mktemp("splits")
    for name in (SPLIT, "eigen"):
        _make_split(folder, name, _test_lines(synth_raw), synth_raw)
    return folder


@pytest.fixture(scope="module")
def perfect_disps(synth_raw, tmp_path_factory) -> Path:
    """1 / rendered depth of every test image, resized to 192 x 640 like a network's output."""
    disps = []
    for line in _test_lines(synth_raw):
        folder, frame, _ = line.split()
        depth = np.load(synth_raw / folder / "rendered_depth" / "image_02" / f"{int(frame):010d}.npy")
        disps.append(cv2.resize((1 / depth).astype(np.float32), (640, 192)))
    path = tmp_path_factory.mktemp("disps") / "perfect.npy"
    np.save(path, np.stack(disps))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A random-weights model (depth and pose networks), ResNet-18 at 64 x 192."""
    return random_model(tmp_path_factory.mktemp("model") / "weights_0", use_stereo=False, seed=0, pose=True)


def _depth_args(root: Path, splits: Path, *extra) -> list:
    return ["evaluate-depth", "--data-path", root, "--splits-dir", splits, "--eval-split", SPLIT, "--png",
            "--num-workers", "0", "--device", "cpu", *extra]


# -- evaluate-depth ------------------------------------------------------------------------------------------
def test_external_perfect_disparities_score_near_perfect(synth_raw, splits, perfect_disps, tmp_path):
    """The real executable: the reference's printout, a table, and every number in the JSON file."""
    report = tmp_path / "results.json"
    result = run_md2(*map(str, _depth_args(synth_raw, splits, "--ext-disp-to-eval", perfect_disps, "--eval-mono",
                                           "--json", report)))
    assert result.returncode == 0, result.stderr
    assert "Scaling ratios | med:" in result.stdout
    assert "abs_rel |   sq_rel |     rmse | rmse_log |" in result.stdout
    latex = [line for line in result.stdout.splitlines() if line.startswith("&")]
    assert len(latex) == 1 and latex[0].endswith("\\\\") and latex[0].count("&") == 7
    data = json.loads(report.read_text())
    metrics = data["metrics"]
    # Not exactly 0: the lidar's depth (its x axis, as the reference's export) is not the camera's z.
    assert metrics["abs_rel"] < 0.05 and metrics["a1"] > 0.98, metrics
    assert f"{metrics['abs_rel']:8.3f}" in latex[0]
    assert data["scaling_ratios"]["median"] == pytest.approx(1.0, abs=0.03)
    assert data["num_predictions"] == len(_test_lines(synth_raw))
    settings = data["settings"]
    assert settings["eval_mono"] is True and settings["eval_split"] == SPLIT and settings["median_scaling"] is True
    assert settings["ext_disp_to_eval"] == str(perfect_disps)


@pytest.mark.parametrize("split", [SPLIT, "eigen"])
def test_stereo_evaluation_scales_by_5_4_without_median_scaling(capsys, synth_raw, splits, perfect_disps,
                                                                tmp_path, split):
    stereo_disps = tmp_path / "stereo.npy"
    np.save(stereo_disps, np.load(perfect_disps) * 5.4)  # a stereo model's disparity: 0.1 baseline units
    report = tmp_path / "r.json"
    args = _depth_args(synth_raw, splits, "--ext-disp-to-eval", stereo_disps, "--eval-stereo", "--json", report)
    args[args.index("--eval-split") + 1] = split
    code, out, err = md2_in_process(capsys, *args)
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["metrics"]["abs_rel"] < 0.05 and data["metrics"]["a1"] > 0.98 and data["scaling_ratios"] is None
    assert data["settings"]["scale_factor"] == 5.4 and "Scaling ratios" not in out


def test_random_model_goes_through_the_network_and_scores_worse(capsys, synth_raw, splits, perfect_disps,
                                                                weights, tmp_path):
    perfect_json, model_json, post_json = tmp_path / "p.json", tmp_path / "m.json", tmp_path / "pp.json"
    assert md2_in_process(capsys, *_depth_args(synth_raw, splits, "--ext-disp-to-eval", perfect_disps,
                                               "--eval-mono", "--json", perfect_json))[0] == 0
    code, out, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--load-weights-folder", weights,
                                                         "--eval-mono", "--batch-size", "5", "--json", model_json))
    assert code == 0, err
    code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--load-weights-folder", weights,
                                                       "--eval-mono", "--post-process", "--json", post_json))
    assert code == 0, err
    perfect, model, post = (json.loads(p.read_text())["metrics"] for p in (perfect_json, model_json, post_json))
    for metrics in (model, post):
        assert all(np.isfinite(value) for value in metrics.values())
        assert metrics["abs_rel"] > perfect["abs_rel"] + 0.05 and metrics["a1"] < perfect["a1"]
    assert model != post
    assert json.loads(model_json.read_text())["model"]["height"] == 64


def test_saved_disparities_and_no_eval(capsys, synth_raw, splits, weights, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--load-weights-folder", weights,
                                                         "--eval-mono", "--save-pred-disps", "--no-eval",
                                                         "--eval-out-dir", out_dir))
    assert code == 0, err
    disps = np.load(out_dir / f"disps_{SPLIT}_split.npy")
    assert disps.shape == (len(_test_lines(synth_raw)), 64, 192) and disps.dtype == np.float32
    assert "abs_rel" not in out and not (weights / f"disps_{SPLIT}_split.npy").exists()


def test_saved_disparities_evaluate_like_the_model(capsys, synth_raw, splits, weights, tmp_path):
    """--save-pred-disps then --ext-disp-to-eval of that file gives the model run's numbers exactly."""
    direct, again = tmp_path / "d.json", tmp_path / "a.json"
    code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--load-weights-folder", weights,
                                                       "--eval-mono", "--save-pred-disps", "--eval-out-dir",
                                                       tmp_path, "--json", direct))
    assert code == 0, err
    code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--ext-disp-to-eval",
                                                       tmp_path / f"disps_{SPLIT}_split.npy", "--eval-mono",
                                                       "--json", again))
    assert code == 0, err
    assert json.loads(direct.read_text())["metrics"] == json.loads(again.read_text())["metrics"]


def test_eigen_to_benchmark_reindexes_external_disparities(capsys, synth_raw, perfect_disps, tmp_path):
    lines = _test_lines(synth_raw)
    ids = np.array([5, 0, 11, 3])
    splits = tmp_path / "splits"
    (splits / "benchmark").mkdir(parents=True)
    np.save(splits / "benchmark" / "eigen_to_benchmark_ids.npy", ids)
    _make_split(splits, "eigen_benchmark", [lines[i] for i in ids], synth_raw)
    report = tmp_path / "r.json"
    base = ["evaluate-depth", "--data-path", synth_raw, "--splits-dir", splits, "--eval-split", "eigen_benchmark",
            "--ext-disp-to-eval", perfect_disps, "--eval-mono"]
    code, _, err = md2_in_process(capsys, *base, "--eval-eigen-to-benchmark", "--json", report)
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["num_predictions"] == 4 and data["metrics"]["abs_rel"] < 0.05
    code, _, err = md2_in_process(capsys, *base)  # not re-indexed: 12 disparities for 4 maps
    assert code == 1 and f"{len(lines)} disparities" in err and "4 ground-truth" in err


def test_benchmark_split_writes_pngs_and_stops(capsys, weights, tmp_path):
    """Model path on benchmark-style test images (DATA/image/0000000000.png), PNGs into the output folder."""
    data = tmp_path / "test_depth_prediction_anonymous"
    (data / "image").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (352, 1216, 3), dtype=np.uint8)).save(data / "image" / f"{index:010d}.png")
    splits = tmp_path / "splits"
    (splits / "benchmark").mkdir(parents=True)
    (splits / "benchmark" / "test_files.txt").write_text("image 0\nimage 1\nimage 2\n")
    code, out, err = md2_in_process(capsys, "evaluate-depth", "--load-weights-folder", weights, "--eval-stereo",
                                    "--eval-split", "benchmark", "--splits-dir", splits, "--data-path", data, "--png",
                                    "--eval-out-dir", tmp_path / "out", "--num-workers", "0")
    assert code == 0, err
    pngs = sorted((tmp_path / "out" / "benchmark_predictions").iterdir())
    assert [p.name for p in pngs] == [f"{i:010d}.png" for i in range(3)]
    stored = cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.shape == (352, 1216) and 0 < stored.max() <= 80 * 256
    assert "abs_rel" not in out


@pytest.mark.parametrize("flags", [[], ["--eval-mono", "--eval-stereo"]])
def test_exactly_one_of_mono_and_stereo(capsys, synth_raw, splits, perfect_disps, flags):
    code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--ext-disp-to-eval", perfect_disps,
                                                       *flags))
    assert code == 2 and "--eval-mono" in err and "--eval-stereo" in err
    assert len(err.strip().splitlines()) == 1


def test_missing_ground_truth_names_the_export_command(capsys, synth_raw, perfect_disps, tmp_path):
    (tmp_path / "splits" / SPLIT).mkdir(parents=True)
    shutil.copy(synth_raw / "splits" / SPLIT / "test_files.txt", tmp_path / "splits" / SPLIT)
    code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, tmp_path / "splits", "--ext-disp-to-eval",
                                                       perfect_disps, "--eval-mono"))
    assert code == 1 and "gt_depths.npz" in err
    assert f"md2 export-gt --data-path {synth_raw} --split {SPLIT} --splits-dir {tmp_path / 'splits'}" in err


def test_wrong_prediction_count_is_a_clear_error(capsys, synth_raw, splits, perfect_disps, tmp_path):
    short = tmp_path / "short.npy"
    np.save(short, np.load(perfect_disps)[:5])
    code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--ext-disp-to-eval", short, "--eval-mono"))
    assert code == 1 and "5 disparities" in err and f"{len(_test_lines(synth_raw))} ground-truth" in err


def test_missing_images_and_bad_weights_are_clear_errors(capsys, synth_raw, splits, weights, tmp_path):
    code, _, err = md2_in_process(capsys, *_depth_args(tmp_path, splits, "--load-weights-folder", weights,
                                                       "--eval-mono"))
    assert code == 1 and "missing" in err and "0000000001.png" in err
    no_depth = tmp_path / "no_depth"
    shutil.copytree(weights, no_depth)
    (no_depth / "depth.pth").unlink()
    code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--load-weights-folder", no_depth,
                                                       "--eval-mono"))
    assert code == 1 and "depth.pth" in err


def test_corrupt_image_in_a_loader_worker_is_one_line(capsys, synth_raw, splits, weights, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_raw / "2011_09_26", data / "2011_09_26")
    folder, frame, _ = _test_lines(synth_raw)[3].split()
    broken = data / folder / "image_02" / "data" / f"{int(frame):010d}.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    args = _depth_args(data, splits, "--load-weights-folder", weights, "--eval-mono")
    args[args.index("--num-workers") + 1] = "1"
    code, _, err = md2_in_process(capsys, *args)
    assert code == 1 and str(broken) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# -- evaluate-pose -------------------------------------------------------------------------------------------
def _pose_args(root: Path, weights: Path, *extra) -> list[str]:
    return ["evaluate-pose", "--load-weights-folder", str(weights), "--data-path", str(root), "--splits-dir",
            str(root / "splits"), "--eval-split", "odom_9", "--png", "--height", "64", "--width", "192",
            "--num-workers", "0", "--device", "cpu", *map(str, extra)]


def test_evaluate_pose_scores_saves_poses_and_plots(synth_raw, weights, tmp_path):
    """The real executable on synthetic sequence 09 with a random pose network."""
    report, plot = tmp_path / "pose.json", tmp_path / "trajectory.png"
    result = run_md2(*_pose_args(synth_raw, weights, "--eval-out-dir", tmp_path / "out", "--plot", plot,
                                 "--json", report))
    assert result.returncode == 0, result.stderr
    assert "Trajectory error:" in result.stdout and "ATE" in result.stdout
    pairs = len((synth_raw / "splits" / "odom" / "test_files_09.txt").read_text().splitlines())
    poses = np.load(tmp_path / "out" / "poses.npy")
    assert poses.shape == (pairs, 4, 4)
    data = json.loads(report.read_text())
    metrics = data["metrics"]
    assert data["num_pairs"] == pairs and metrics["snippet_ate_mean"] > 0
    assert all(np.isfinite(metrics[k]) for k in ("snippet_ate_std", "ate_rmse", "rel_translation", "rel_rotation"))
    assert data["settings"]["sequence"] == 9
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 100


@pytest.mark.parametrize("extra, code, message", [
    (["--eval-split", "odom_11"], 2, "odom_9, odom_10"),
    (["--plot", "trajectory.jpg"], 2, "FILE.png"),
])
def test_evaluate_pose_usage_errors(capsys, synth_raw, weights, extra, code, message):
    result = md2_in_process(capsys, *_pose_args(synth_raw, weights, *extra))
    assert result[0] == code and message in result[2]


def test_evaluate_pose_without_pose_weights_or_poses(capsys, synth_raw, weights, tmp_path):
    depth_only = tmp_path / "depth_only"
    shutil.copytree(weights, depth_only)
    (depth_only / "pose_encoder.pth").unlink()
    code, _, err = md2_in_process(capsys, *_pose_args(synth_raw, depth_only))
    assert code == 1 and "pose_encoder.pth" in err
    data = tmp_path / "odom"
    shutil.copytree(synth_raw / "sequences", data / "sequences")
    shutil.copytree(synth_raw / "splits", data / "splits")
    code, _, err = md2_in_process(capsys, *_pose_args(data, weights))
    assert code == 1 and "09.txt" in err


# -- pretrained models by name (--model) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def zoo_zips(weights, tmp_path_factory) -> dict[str, bytes]:
    """mono_odom_640x192 as the random model with pose networks, mono_640x192 as the same without them."""
    from tests.kitti_mirror import zip_members

    files = {path.name: path.read_bytes() for path in sorted(weights.iterdir())}
    depth_only = {name: data for name, data in files.items() if not name.startswith("pose")}
    return {"/mono_odom_640x192.zip": zip_members(files), "/mono_640x192.zip": zip_members(depth_only)}


@pytest.fixture
def local_zoo(zoo_zips, tmp_path, monkeypatch) -> Path:
    """``zoo_zips`` served from 127.0.0.1 (MD2_ZOO_URL); MD2_HOME in tmp_path (returned)."""
    from tests.httpserver import LocalServer
    from tests.zoo_table import publish_for_paths

    publish_for_paths(monkeypatch, zoo_zips)  # the table holds these zips' md5 for the test
    with LocalServer(zoo_zips) as server:
        monkeypatch.setenv("MD2_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("MD2_ZOO_URL", server.url())
        yield tmp_path / "home"


def test_evaluate_pose_and_depth_take_a_pretrained_model_by_name(capsys, local_zoo, synth_raw, splits, weights,
                                                                  tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_name = _pose_args(synth_raw, weights, "--json", "named.json")
    by_name[1:3] = ["--model", "mono_odom_640x192"]
    code, _, err = md2_in_process(capsys, *by_name)
    assert code == 0, err
    named = json.loads((tmp_path / "named.json").read_text())
    assert named["model"]["name"] == "mono_odom_640x192"
    assert named["model"]["weights_folder"] == str(local_zoo / "models" / "mono_odom_640x192")
    cached = local_zoo / "models" / "mono_odom_640x192"
    assert (tmp_path / "poses.npy").is_file() and not (cached / "poses.npy").exists()  # not into the cache
    code, _, err = md2_in_process(capsys, *_pose_args(synth_raw, weights, "--eval-out-dir", "w", "--json", "w.json"))
    assert code == 0, err
    assert named["metrics"] == json.loads((tmp_path / "w.json").read_text())["metrics"]
    results = []
    for model in (["--model", "mono_odom_640x192"], ["--load-weights-folder", weights]):
        code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, *model, "--eval-mono", "--json",
                                                           "d.json"))
        assert code == 0, err
        results.append(json.loads((tmp_path / "d.json").read_text())["metrics"])
    assert results[0] == results[1]


def test_evaluate_pose_refuses_a_pretrained_model_without_pose_network(capsys, local_zoo, synth_raw, weights):
    args = _pose_args(synth_raw, weights)
    args[1:3] = ["--model", "mono_640x192"]
    code, _, err = md2_in_process(capsys, *args)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "model mono_640x192 has no pose network" in err and "pose_encoder.pth" in err
    args[2] = "stereo_640x192"  # known to have none: refused before any download
    code, _, err = md2_in_process(capsys, *args)
    assert code == 2 and "model stereo_640x192 has no pose network" in err and "mono_odom_640x192" in err
    assert not (local_zoo / "models" / "stereo_640x192").exists()
