"""A newcomer's second pass (issue 28): silent traps say what is wrong, and commands say what happened."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from md2.core.train.tb_logging import validation_summary
from md2.data.video import list_frames, video_folders
from tests.cli.test_app import run_md2
from tests.core.test_video_predict import encode, frame_count
from tests.core.train.helpers import tiny_split
from tests.httpserver import LocalServer

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


def _frames(synth_raw: Path) -> list[Path]:
    return sorted((synth_raw / DRIVE / "image_02" / "data").glob("*.png"))


def test_predict_on_a_folder_of_pngs_names_the_types_it_holds(synth_raw, tmp_path, weights):
    folder = tmp_path / "shots"
    folder.mkdir()
    for frame in _frames(synth_raw)[:3]:
        shutil.copy(frame, folder)
    result = run_md2("predict", str(folder), "--weights", str(weights))
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "looked for *.jpg" in line and "it holds 3 .png: add --ext png" in line and "\n" not in line


def test_video_dataset_skips_what_md2_predict_wrote_beside_the_frames(synth_raw, tmp_path, weights):
    folder = tmp_path / "clip"
    folder.mkdir()
    frames = [Path(shutil.copy(frame, folder)) for frame in _frames(synth_raw)[:4]]
    result = run_md2("predict", str(folder), "--ext", "png", "--weights", str(weights), "--save-depth-png")
    assert result.returncode == 0, result.stderr
    assert len(list(folder.glob("*_disp.jpeg"))) == 4 and len(list(folder.glob("*_depth.png"))) == 4
    assert list_frames(folder) == frames
    assert video_folders(tmp_path) == [folder]


def test_dry_run_offline_says_the_server_could_not_be_reached(synth_raw, tmp_path):
    splits = tmp_path / "splits"
    shutil.copytree(synth_raw / "splits" / "synth", splits / "synth")
    with LocalServer({}) as server:
        gone = server.url("/raw_data")
    # the server is shut down: its port refuses connections, as an offline machine's requests fail
    result = run_md2("download-kitti", "--output", str(tmp_path / "k"), "--split", "synth", "--splits-dir",
                     str(splits), "--base-url", gone, "--dry-run")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not be reached" in lines[0] and "127.0.0.1" in lines[0], result.stderr
    assert "0.00 GB in total" not in result.stdout and "unknown size" in result.stdout


def test_a_video_summary_names_the_output_its_frames_and_the_rate(synth_raw, tmp_path, weights):
    clip = encode(_frames(synth_raw)[:5], tmp_path / "clip.mp4")
    result = run_md2("predict", str(clip), "--weights", str(weights), env={"COLUMNS": "40"})
    assert result.returncode == 0, result.stderr
    output = tmp_path / "clip_disp.mp4"
    assert frame_count(output)[0] == 5
    line = next(line for line in result.stderr.splitlines() if line.startswith("clip.mp4 -> "))
    assert f"{output}: 5 frames written at " in line and line.endswith(" frames/s")


def test_train_prints_each_epochs_validation_on_one_unwrapped_line(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits", train=2, val=2)
    result = run_md2("train", "--data-path", str(synth_raw), "--splits-dir", str(splits), "--split", "synth",
                     "--png", "--height", "64", "--width", "64", "--batch-size", "2", "--num-workers", "0",
                     "--weights-init", "scratch", "--log-dir", str(tmp_path), "--model-name", "run",
                     "--num-epochs", "2", "--log-frequency", "1", env={"COLUMNS": "40"})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if ": validation (" in line]
    assert [line.split(":")[0] for line in lines] == ["epoch 0", "epoch 1"]
    for line in lines:  # the loss and all seven metrics on the one line, though the console is 40 wide
        assert "(1 batch) loss " in line and "abs_rel " in line and line.split(", ")[-1].startswith("a3 ")


def test_validation_summary_averages_and_never_shows_a_non_finite_number():
    summary = validation_summary([{"loss": 0.5, "de/abs_rel": 0.1}, {"loss": 0.25, "de/abs_rel": math.nan}])
    assert summary == "loss 0.3750, abs_rel n/a"


def test_verbose_settings_are_the_resolved_ones(synth_raw, tmp_path, weights):
    splits = tmp_path / "splits"
    shutil.copytree(synth_raw / "splits" / "synth", splits / "synth")
    exported = run_md2("export-gt", "--data-path", str(synth_raw), "--split", "synth", "--splits-dir", str(splits),
                       "-v")
    assert exported.returncode == 0, exported.stderr
    assert "source lidar, " in exported.stderr and "chosen by split" not in exported.stderr
    assert " all jobs" not in exported.stderr
    evaluated = run_md2("evaluate-depth", "--load-weights-folder", str(weights), "--eval-mono", "--eval-split",
                        "synth", "--splits-dir", str(splits), "--data-path", str(synth_raw), "--png",
                        "--num-workers", "0", "--device", "auto", "-v")
    assert evaluated.returncode == 0, evaluated.stderr
    assert ("  device: cpu" in evaluated.stderr or "  device: cuda" in evaluated.stderr)
    assert "device: auto" not in evaluated.stderr
    assert f"  load_weights_folder: {weights}" in evaluated.stderr and "  model: None" in evaluated.stderr
