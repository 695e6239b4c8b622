"""``md2 train --max-steps N``: a smoke run stops after N optimiser steps with its weights and state saved,
and ``--resume`` continues it where it stopped."""

from __future__ import annotations

from md2.core.train.loop import resume_training, run_training
from md2.core.train.state import read_state
from tests.cli.test_app import run_md2
from tests.core.train.helpers import tiny_config, tiny_split


def test_max_steps_stops_inside_the_first_epoch_and_saves_weights_and_state(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits", train=6)  # 3 steps per epoch at batch 2
    steps = []
    config = tiny_config(synth_raw, tmp_path, splits_dir=str(splits), num_epochs=3, max_steps=2)
    run = run_training(config, on_step=lambda step, loss: steps.append(step))
    assert steps == [0, 1]
    progress = read_state(run).progress
    assert (progress.epoch, progress.step, progress.batch_in_epoch) == (0, 2, 2)
    assert (run / "models" / "weights_0" / "depth.pth").is_file()
    more = []
    resume_training(run, overrides={"max_steps": 4}, on_step=lambda step, loss: more.append(step))
    assert more == [2, 3]
    progress = read_state(run).progress
    assert (progress.epoch, progress.step, progress.batch_in_epoch) == (1, 4, 1)


def test_max_steps_from_the_command_line_says_where_it_stopped(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits", train=6)
    result = run_md2("train", "--data-path", str(synth_raw), "--splits-dir", str(splits), "--split", "synth",
                     "--png", "--height", "64", "--width", "64", "--batch-size", "2", "--num-workers", "0",
                     "--weights-init", "scratch", "--log-dir", str(tmp_path), "--model-name", "smoke",
                     "--max-steps", "1")
    assert result.returncode == 0, result.stderr
    assert "done: 1 steps (--max-steps 1)" in result.stderr
    assert read_state(tmp_path / "smoke").progress.step == 1


def test_negative_max_steps_is_refused(tmp_path):
    result = run_md2("train", "--max-steps", "-1", "--log-dir", str(tmp_path))
    assert result.returncode == 2 and "--max-steps" in result.stderr, result.stderr
