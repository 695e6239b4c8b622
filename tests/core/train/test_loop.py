"""The training loop on synthetic drives: what a run writes, the schedule, logging, NaN stop, fine-tuning,
speed flags, clear errors. Splits of 2 samples with batch 2 make every epoch one step."""

from __future__ import annotations

import warnings

import pytest
import torch
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from md2.core.checkpoint import load_module, load_state_dict_file
from md2.core.train import distributed
from md2.core.train.config import build_config, load_yaml
from md2.core.train.loop import Trainer, run_training
from md2.core.train.models import build_models
from md2.core.train.state import read_state
from md2.core.train.tb_logging import should_log
from md2.errors import CheckpointError, DataError, MD2Error, UsageError
from tests.core.train.helpers import tiny_config, tiny_split


def test_run_writes_weights_options_events_and_state(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits")
    config = tiny_config(synth_raw, tmp_path, modality="mono+stereo", splits_dir=str(splits), num_epochs=2,
                         log_frequency=1)
    log = run_training(config)
    assert build_config(load_yaml(log / "opt.yaml")) == config
    assert sorted(p.name for p in (log / "models").iterdir()) == ["weights_0", "weights_1"]
    for name, module in build_models(config).items():
        load_module(module, log / "models" / "weights_1" / f"{name}.pth", strict=True)
    assert {p.name for p in (log / "models" / "weights_1").iterdir()} == {
        "encoder.pth", "depth.pth", "pose_encoder.pth", "pose.pth", "adam.pth"}
    saved = read_state(log)
    assert saved.weights == log / "models" / "weights_1" and saved.progress.step == 2
    train = EventAccumulator(str(log / "train"), size_guidance={"images": 0})
    train.Reload()
    assert {"loss", "loss/0", "loss/3", "de/abs_rel", "de/a1", "learning_rate"} <= set(train.Tags()["scalars"])
    assert [event.step for event in train.Scalars("loss")] == [0, 1]  # log_frequency 1: every step
    assert {"color_0_0/0", "color_pred_s_0/1", "color_pred_-1_0/0", "disp_3/1", "automask_0/0"} <= set(
        train.Tags()["images"])
    val = EventAccumulator(str(log / "val"))
    val.Reload()
    assert len(val.Scalars("loss")) == 2 and "de/abs_rel" in val.Tags()["scalars"]


def test_log_cadence_is_the_references():
    # Epochs of 100 batches: the batch index restarts at 0, so the first 2000 steps log at every epoch start.
    early = [step for step in range(2000) if should_log(step % 100, step, 250)]
    assert early == list(range(0, 2000, 100))
    assert [s for s in range(1000) if should_log(s, s, 250)] == [0, 250, 500, 750]
    late = [step for step in range(2000, 9000) if should_log(step, step, 250)]
    assert late == [2000, 4000, 6000, 8000]


def test_learning_rate_drops_after_step_size_minus_one_epochs(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits")
    config = tiny_config(synth_raw, tmp_path, splits_dir=str(splits), num_epochs=3, scheduler_step_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = run_training(config)
    rates = [load_state_dict_file(log / "models" / f"weights_{e}" / "adam.pth")["param_groups"][0]["lr"]
             for e in range(3)]
    # The scheduler steps at the start of every epoch: with step size 2 the rate drops after ONE epoch.
    assert rates == pytest.approx([1e-4, 1e-5, 1e-5])
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]


def test_a_nan_loss_stops_with_the_step_named_and_the_last_state_intact(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits", train=6)
    config = tiny_config(synth_raw, tmp_path, splits_dir=str(splits), learning_rate=1e30, save_every_steps=1)
    with pytest.raises(MD2Error, match=r"NaN or infinite at step 1\b"):
        run_training(config)
    saved = read_state(config.log_path)
    assert saved.progress.step == 1  # saved after step 0; step 1's loss was NaN, so nothing after it
    for name, module in build_models(config).items():
        load_module(module, saved.weights / f"{name}.pth")
        assert all(torch.isfinite(value).all() for value in module.state_dict().values())


def _trainer(config) -> Trainer:
    return Trainer(config, distributed.setup("cpu"), Console(quiet=True))


def test_fine_tuning_loads_the_named_models_and_adam(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits")
    first = run_training(tiny_config(synth_raw, tmp_path / "a", splits_dir=str(splits)))
    folder = first / "models" / "weights_0"
    config = tiny_config(synth_raw, tmp_path / "b", splits_dir=str(splits), load_weights_folder=str(folder),
                         models_to_load="encoder,depth", seed=1)
    trainer = _trainer(config)
    trainer.load_pretrained(folder)
    for name in ("encoder", "depth", "pose"):
        saved = load_state_dict_file(folder / f"{name}.pth")
        same = all(torch.equal(value, saved[key]) for key, value in trainer.models[name].state_dict().items())
        assert same == (name != "pose"), name
    assert trainer.optimizer.state_dict()["state"]  # Adam's moments came from adam.pth


def _first_loss(synth_raw, folder, **options) -> float:
    """The loss of the first step of a one-step run at 64 x 64 (the smallest size md2 trains)."""
    splits = tiny_split(synth_raw, folder / "splits")
    losses = []
    run_training(tiny_config(synth_raw, folder, splits_dir=str(splits), width=64, **options),
                 on_step=lambda step, loss: losses.append(loss))
    return losses[0]


@pytest.fixture(scope="module")
def plain_first_loss(synth_raw, tmp_path_factory) -> float:
    """The plain path's first loss, which every speed flag's run is compared with (one run for all of them)."""
    return _first_loss(synth_raw, tmp_path_factory.mktemp("plain"))


@pytest.mark.parametrize("flags", [{"amp": True}, {"channels_last": True}], ids=["amp", "channels_last"])
def test_speed_flags_train_like_the_plain_path(synth_raw, tmp_path, flags, plain_first_loss):
    fast = _first_loss(synth_raw, tmp_path, **flags)
    tolerance = 1e-2 if flags.get("amp") else 1e-5  # bf16 networks vs float32 (see test_step)
    assert fast == pytest.approx(plain_first_loss, rel=tolerance)


def test_resize_cache_trains_like_the_plain_path_and_fills_from_the_workers(synth_raw, tmp_path, plain_first_loss):
    cache = tmp_path / "cache"
    cold = _first_loss(synth_raw, tmp_path / "cold", resize_cache=str(cache), num_workers=1)
    stored = sorted(cache.rglob("*.pyr"))
    warm = _first_loss(synth_raw, tmp_path / "warm", resize_cache=str(cache), num_workers=1)
    assert cold == warm == plain_first_loss  # the same pixels, so the same numbers
    assert stored and sorted(cache.rglob("*.pyr")) == stored  # written by the loader worker, reused after
    assert {entry.parent.parent.name for entry in stored} == {"64x64x4"}


def _missing_data(config, tmp_path):
    return {"data_path": str(tmp_path / "nowhere")}, DataError, "data folder not found"


def _empty_split(config, tmp_path):
    splits = tiny_split(config.data_root, tmp_path / "splits")
    (splits / "synth" / "train_files.txt").write_text("")
    return {"splits_dir": str(splits)}, DataError, "no train samples"


def _missing_split(config, tmp_path):
    return {"split": "nosuch"}, DataError, "no split 'nosuch'"


def _too_few_samples(config, tmp_path):
    return {"batch_size": 64}, DataError, "fewer than one batch of 64"


def _missing_weights(config, tmp_path):
    return {"load_weights_folder": str(tmp_path / "nothing")}, CheckpointError, "not found"


@pytest.mark.parametrize("case", [_missing_data, _empty_split, _missing_split, _too_few_samples, _missing_weights])
def test_clear_errors_before_training(synth_raw, tmp_path, case):
    options, error, message = case(tiny_config(synth_raw, tmp_path), tmp_path)
    with pytest.raises(error, match=message):
        run_training(tiny_config(synth_raw, tmp_path, **options))
    assert not (tmp_path / "logs" / "run" / "models").exists()


def test_a_new_run_refuses_a_folder_holding_a_run(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path, splits_dir=str(tiny_split(synth_raw, tmp_path / "splits")))
    run_training(config)
    with pytest.raises(UsageError, match="--resume"):
        run_training(config)


def test_md2_train_quiet_prints_nothing_and_verbose_prints_options_and_losses(synth_raw, tmp_path):
    from tests.cli.test_app import run_md2

    splits = tiny_split(synth_raw, tmp_path / "splits")
    args = ["train", "--data-path", str(synth_raw), "--splits-dir", str(splits), "--split", "synth", "--png",
            "--height", "64", "--width", "64", "--batch-size", "2", "--num-workers", "0", "--weights-init",
            "scratch", "--log-dir", str(tmp_path), "--model-name", "run", "--num-epochs", "1", "--device", "cpu"]
    quiet = run_md2(*args, "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == "", quiet.stderr
    verbose = run_md2("train", "--resume", str(tmp_path / "run"), "--num-epochs", "2", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "options: {'data': {'data_path'" in verbose.stderr and "step 1: loss " in verbose.stderr
    assert run_md2(*args, "-q", "-v").returncode == 2
