"""The training loop on synthetic drives: outputs on disk, exact resume, NaN stop, DDP, CLI."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from md2.core.losses import SSIM
from md2.core.train import distributed
from md2.core.train.loop import resume_training, run_training
from md2.core.train.models import build_models
from md2.core.train.step import Warpers, training_step
from md2.errors import MD2Error
from tests.cli.test_app import run_md2
from tests.core.train.helpers import batch_for, tiny_config


class Interrupt(Exception):
    pass


def test_run_writes_weights_options_and_events(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path, num_epochs=2, log_frequency=4, modality="mono+stereo")
    log = run_training(config)
    assert (log / "opt.yaml").is_file()
    assert sorted(p.name for p in (log / "models").iterdir()) == ["weights_0", "weights_1"]
    assert {p.name for p in (log / "models" / "weights_1").iterdir()} >= {"encoder.pth", "depth.pth", "pose.pth",
                                                                        "pose_encoder.pth", "adam.pth"}
    assert list((log / "train").glob("events.out.tfevents.*")) and list((log / "val").glob("events.out.tfevents.*"))


def test_resume_after_an_interruption_continues_with_identical_losses(synth_raw, tmp_path):
    straight: dict[int, float] = {}
    run_training(tiny_config(synth_raw, tmp_path / "a", num_epochs=2), on_step=lambda s, l: straight.__setitem__(s, l))

    def interrupt(step, loss):
        if step == 5:
            raise Interrupt
    config = tiny_config(synth_raw, tmp_path / "b", num_epochs=2, save_every_steps=3)
    with pytest.raises(Interrupt):
        run_training(config, on_step=interrupt)
    resumed: dict[int, float] = {}
    resume_training(config.log_path, on_step=lambda s, l: resumed.__setitem__(s, l))
    assert min(resumed) == 3 and max(resumed) == max(straight)
    for step, loss in resumed.items():
        assert loss == pytest.approx(straight[step], rel=1e-6, abs=1e-7), step


def test_a_nan_loss_stops_with_the_step_named(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path, learning_rate=1e30, num_epochs=3)
    with pytest.raises(MD2Error, match="NaN or infinite at step"):
        run_training(config)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gradients(models):
    return {f"{n}.{k}": p.grad.detach().clone() for n, m in models.items() for k, p in m.named_parameters()
            if p.grad is not None}


def _worker(rank, port, data, tmp, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0")
    placement = distributed.setup("cpu")
    config = tiny_config(data, tmp, disable_automasking=True, batch_size=1)
    torch.manual_seed(0)
    models = build_models(config).eval()  # BatchNorm on running statistics: samples are independent
    net = distributed.wrap(models, placement)
    batch = batch_for(config, data, count=2)
    shard = batch_for(config, data, lines=None, count=2)
    own = type(batch)(**{**shard.__dict__})
    index = slice(rank, rank + 1)
    own.color = {f: [t[index] for t in v] for f, v in shard.color.items()}
    own.color_aug = {f: [t[index] for t in v] for f, v in shard.color_aug.items()}
    own.K, own.inv_K = [k[index] for k in shard.K], [k[index] for k in shard.inv_K]
    own.index, own.flipped = shard.index[index], shard.flipped[index]
    losses, _ = training_step(net, own, config, Warpers(64, 192, 4), SSIM())
    losses["loss"].backward()
    if rank == 0:
        queue.put({k: v.numpy() for k, v in _gradients(models).items()})
    distributed.teardown(placement)


def test_two_gloo_processes_give_the_gradients_of_the_combined_batch(synth_raw, tmp_path):
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    port = _free_port()
    processes = [context.Process(target=_worker, args=(rank, port, synth_raw, tmp_path, queue)) for rank in range(2)]
    for process in processes:
        process.start()
    distributed_grads = queue.get()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    config = tiny_config(synth_raw, tmp_path, disable_automasking=True, batch_size=2)
    torch.manual_seed(0)
    models = build_models(config).eval()
    losses, _ = training_step(models, batch_for(config, synth_raw, count=2), config, Warpers(64, 192, 4), SSIM())
    losses["loss"].backward()
    single = _gradients(models)
    assert set(single) == set(distributed_grads)
    worst = max(float((torch.from_numpy(distributed_grads[n]) - g).norm() / (g.norm() + 1e-12))
                for n, g in single.items() if g.norm() > 0)
    # Float32 sums in a different order (two half batches + all-reduce): relative differences ~1e-5.
    assert worst < 1e-3, worst


def test_cli_trains_and_refuses_bad_combinations(synth_raw, tmp_path):
    common = ["--data-path", str(synth_raw), "--splits-dir", str(synth_raw / "splits"), "--split", "synth", "--png",
              "--height", "64", "--width", "192", "--batch-size", "2", "--num-workers", "0", "--weights-init",
              "scratch", "--log-dir", str(tmp_path), "--num-epochs", "1"]
    result = run_md2("train", *common, "--model-name", "cli", "--modality", "stereo")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cli" / "models" / "weights_0" / "encoder.pth").is_file()
    for bad in (["--frame-ids", "1,0"], ["--height", "100"], ["--predictive-mask"], ["--frame-ids", "0"]):
        refused = run_md2("train", *common, "--model-name", "bad", *bad)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, bad
    assert not (tmp_path / "bad").exists()


def test_finetuning_starts_from_the_named_models(synth_raw, tmp_path):
    from md2.core.checkpoint import load_state_dict_file
    from md2.core.train.loop import Run

    first = run_training(tiny_config(synth_raw, tmp_path / "a"))
    weights = first / "models" / "weights_0"
    config = tiny_config(synth_raw, tmp_path / "b", load_weights_folder=str(weights), models_to_load="encoder,depth")
    run = Run(config, distributed.setup("cpu"))
    for name in ("encoder", "depth"):
        saved = load_state_dict_file(weights / f"{name}.pth")
        for key, value in run.models[name].state_dict().items():
            assert torch.equal(value, saved[key]), (name, key)
    pose = load_state_dict_file(weights / "pose.pth")
    assert not all(torch.equal(v, pose[k]) for k, v in run.models["pose"].state_dict().items())
