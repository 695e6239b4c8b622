"""Exact resume: an interrupted run continues with the same batches, random numbers and optimiser state; the
saved state survives kill -9 at any moment; interrupted saves are tidied."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from md2.core.checkpoint import load_module, load_state_dict_file, save_weights_folder
from md2.core.train.loop import resume_training, run_training
from md2.core.train.models import build_models
from md2.core.train.state import STATE_FILE, read_state, recover_interrupted_saves
from md2.errors import CheckpointError, UsageError
from tests.core.train.helpers import tiny_config, tiny_split


class Interrupt(Exception):
    """Stands for Ctrl-C in the middle of a run."""


def _record(into: dict):
    return lambda step, loss: into.__setitem__(step, loss)


def _interrupt_at(stop: int, into: dict):
    def on_step(step, loss):
        into[step] = loss
        if step == stop:
            raise Interrupt
    return on_step


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])  # workers: ~25 s
def test_resume_after_an_interruption_continues_with_identical_losses(synth_raw, tmp_path, workers):
    # 2 steps per epoch, 2 epochs; a state every step within an epoch and at epoch ends; validation at every
    # other step and at epoch starts (it draws random numbers too: step 0's comes before the saved state, step
    # 2's after the resume); interrupted during step 1, after the state of step 1 (mid-epoch 0), so the resumed
    # run finishes epoch 0 from its second batch and crosses into epoch 1. 64 x 64, the smallest size md2 trains.
    splits = tiny_split(synth_raw, tmp_path / "splits", train=4, val=4)
    options = dict(splits_dir=str(splits), num_epochs=2, log_frequency=2, num_workers=workers,
                   modality="mono+stereo", width=64)
    straight: dict[int, float] = {}
    run_training(tiny_config(synth_raw, tmp_path / "a", **options), on_step=_record(straight))
    config = tiny_config(synth_raw, tmp_path / "b", save_every_steps=1, **options)
    with pytest.raises(Interrupt):
        run_training(config, on_step=_interrupt_at(1, {}))
    saved = read_state(config.log_path).progress
    assert (saved.step, saved.epoch, saved.batch_in_epoch, saved.val_batches) == (1, 0, 1, 1)
    resumed: dict[int, float] = {}
    resume_training(config.log_path, on_step=_record(resumed))
    assert sorted(resumed) == [1, 2, 3]
    for step, loss in resumed.items():
        assert loss == pytest.approx(straight[step], rel=1e-6, abs=1e-7), step
    final_a = load_state_dict_file(tmp_path / "a" / "logs" / "run" / "models" / "weights_1" / "depth.pth")
    final_b = load_state_dict_file(config.log_path / "models" / "weights_1" / "depth.pth")
    for key, value in final_a.items():
        assert torch.allclose(value, final_b[key], rtol=1e-5, atol=1e-7), key


def test_resume_can_train_longer_but_not_differently(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path, splits_dir=str(tiny_split(synth_raw, tmp_path / "splits")))
    log = run_training(config)
    with pytest.raises(UsageError, match="--learning-rate cannot change"):
        resume_training(log, overrides={"learning_rate": 1.0})
    steps: dict[int, float] = {}
    resume_training(log, overrides={"num_epochs": 2}, on_step=_record(steps))
    assert sorted(steps) == [1] and (log / "models" / "weights_1").is_dir()
    assert read_state(log).progress.epoch == 2


def test_resume_without_a_state_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no training state"):
        resume_training(tmp_path / "never-trained")


def test_interrupted_weight_saves_are_tidied(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path)
    models = tmp_path / "run" / "models"
    networks = dict(build_models(config))
    save_weights_folder(models / ".weights_1.123.abcd.old", networks, height=64, width=192, use_stereo=False)
    (models / ".weights_2.123.ef01.tmp").mkdir()
    (models / ".weights_2.123.ef01.tmp" / "encoder.pth").write_bytes(b"half")
    (tmp_path / "run" / ".training_state.k2j4_x.tmp.pth").write_bytes(b"half a state")
    recover_interrupted_saves(tmp_path / "run")
    assert sorted(p.name for p in models.iterdir()) == ["weights_1"]  # set aside, never replaced: back
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["models"]
    load_module(build_models(config)["encoder"], models / "weights_1" / "encoder.pth")


def _wait_for(predicate, timeout: float, process: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.002)
    return False


def _saving(run_dir) -> bool:
    """A weights folder or the state file is being written (a hidden temporary exists)."""
    folders = [run_dir, run_dir / "checkpoints", run_dir / "models"]
    return any(p.name.startswith(".") for folder in folders if folder.is_dir() for p in folder.iterdir())


def _check_saved_run(run_dir, config) -> int:
    """The state loads, names a complete folder, every visible weights_N is complete; returns its step."""
    saved = read_state(run_dir)
    for name, module in build_models(config).items():
        load_module(module, saved.weights / f"{name}.pth")
    for folder in (run_dir / "models").glob("weights_*"):
        for name, module in build_models(config).items():
            load_module(module, folder / f"{name}.pth")
    return saved.progress.step


def _kill_when(args: list[str], moment, what: str) -> None:
    """Start `md2 train ARGS`, SIGKILL it as soon as ``moment()`` is true."""
    md2 = os.path.join(os.path.dirname(sys.executable), "md2")
    process = subprocess.Popen([md2, "train", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(moment, 180, process), f"the run ended before it could be killed {what}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_kill_9_while_saving_and_between_saves_leaves_a_state_that_resumes(synth_raw, tmp_path):
    """Issue 7: SIGKILL of `md2 train` during a checkpoint write, then right after one; each time the last
    state loads and no partial folder looks complete; then --resume finishes the run."""
    splits = tiny_split(synth_raw, tmp_path / "splits", train=6)
    config = tiny_config(synth_raw, tmp_path, splits_dir=str(splits), num_epochs=3, save_every_steps=1)
    run_dir, state = config.log_path, config.log_path / STATE_FILE
    _kill_when(["--data-path", str(synth_raw), "--splits-dir", str(splits), "--split", "synth", "--png",
                "--height", "64", "--width", "192", "--batch-size", "2", "--num-workers", "0",
                "--weights-init", "scratch", "--log-dir", str(run_dir.parent), "--model-name", run_dir.name,
                "--num-epochs", "3", "--save-every-steps", "1"],
               lambda: state.exists() and _saving(run_dir), "while saving")
    first = _check_saved_run(run_dir, config)
    written = state.stat().st_mtime_ns
    _kill_when(["--resume", str(run_dir)], lambda: state.stat().st_mtime_ns != written, "between saves")
    second = _check_saved_run(run_dir, config)
    assert second > first
    resumed: dict[int, float] = {}
    resume_training(run_dir, on_step=_record(resumed))
    assert min(resumed) == second and max(resumed) == 8
    assert _check_saved_run(run_dir, config) == 9 and read_state(run_dir).weights.name == "weights_2"
    assert not [p for p in (run_dir / "models").iterdir() if p.name.startswith(".")]
    assert not list((run_dir / "checkpoints").iterdir())
