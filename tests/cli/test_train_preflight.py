"""`md2 train` checks its split's files before it creates anything, and says how to write a list option."""

from __future__ import annotations

import shutil

import pytest

from tests.cli.test_app import run_md2
from tests.core.train.helpers import tiny_split


def _args(data, splits, log_dir, *extra: str) -> list[str]:
    return ["train", "--data-path", str(data), "--splits-dir", str(splits), "--split", "synth", "--height", "64",
            "--width", "64", "--batch-size", "2", "--num-workers", "0", "--weights-init", "scratch",
            "--log-dir", str(log_dir), "--model-name", "run", "--num-epochs", "1", *extra]


def test_png_layout_without_png_fails_before_the_run_folder_saying_add_png(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits")
    result = run_md2(*_args(synth_raw, splits, tmp_path / "logs"))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the images are .png: add --png" in lines[0], result.stderr
    assert ".jpg" in lines[0] and "train split line" in lines[0]
    assert not (tmp_path / "logs").exists()


def test_use_stereo_without_image_03_fails_before_the_run_folder_naming_the_camera(synth_raw, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_raw, data, ignore=shutil.ignore_patterns("image_03", "sequences", "rendered_depth"))
    splits = tiny_split(data, tmp_path / "splits")
    result = run_md2(*_args(data, splits, tmp_path / "logs", "--png", "--use-stereo"))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "image_03" in lines[0] and "--use-stereo needs both cameras" in lines[0], lines
    assert not (tmp_path / "logs").exists()


def test_last_line_missing_is_found_before_training(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits")
    train = splits / "synth" / "train_files.txt"
    train.write_text(train.read_text() + "2011_09_26/2011_09_26_drive_0001_sync 900 l\n")
    result = run_md2(*_args(synth_raw, splits, tmp_path / "logs", "--png"))
    assert result.returncode == 1 and "0000000900.png" in result.stderr, result.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("ids, written", [(["0", "-1", "1"], "0,-1,1"), (["0", "-2", "-1", "1", "2"], "0,-2,-1,1,2")])
def test_frame_ids_spelt_as_the_reference_says_how_to_write_them(tmp_path, ids, written):
    result = run_md2("train", "--frame-ids", *ids, "--log-dir", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"write --frame-ids {written}" in lines[0], result.stderr


@pytest.mark.parametrize("args, written", [
    (["--scales", "0", "1", "2", "3"], "--scales 0,1,2,3"),
    (["--models-to-load", "encoder", "depth"], "--models-to-load encoder,depth"),
])
def test_other_space_separated_lists_say_how_to_write_them(tmp_path, args, written):
    result = run_md2("train", *args, "--log-dir", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"write {written})" in lines[0], result.stderr


@pytest.mark.parametrize("args", [["--model-name", "my", "model"], ["--png", "1"]])
def test_an_extra_word_after_a_single_value_option_gets_no_list_hint(tmp_path, args):
    result = run_md2("train", *args, "--log-dir", str(tmp_path))
    assert result.returncode == 2 and "a list is one value" not in result.stderr
    assert "md2 train --help" in result.stderr
