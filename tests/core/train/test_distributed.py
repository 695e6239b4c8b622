"""Data parallelism on the CPU: two gloo processes (new processes from torch.multiprocessing's forkserver, as
torchrun would start them: not forks of the test process)."""

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
from md2.core.train.state import read_state
from md2.core.train.step import Warpers, training_step
from md2.data.splits import read_split_file
from tests.core.train.helpers import batch_for, tiny_config, tiny_split


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join_as(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK="0")


def _spawn(target, *args):
    """Run ``target(rank, port, queue, *args)`` in two new processes; returns what rank 0 put in the queue. They
    start from the forkserver (fresh processes, not forks of this one, like torchrun's; the forkserver has imported
    torch once for the session, tests/conftest.py), not by spawning two more interpreters that import it again."""
    context = mp.get_context("forkserver")
    queue, port = context.Queue(), _free_port()
    processes = [context.Process(target=target, args=(rank, port, queue, *args)) for rank in range(2)]
    for process in processes:
        process.start()
    try:
        result = queue.get(timeout=300)  # before joining: a process exits only once its queue is drained
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0, 0]
    return result


def _gradients(models) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": p.grad.detach().clone() for name, module in models.items()
            for key, p in module.named_parameters() if p.grad is not None}


def _loss_and_gradients(config, data, lines, net, models):
    batch = batch_for(config, data, lines=lines)
    losses, _ = training_step(net, batch, config, Warpers(64, 192, 4), SSIM())
    losses["loss"].backward()
    return _gradients(models)


def _config(data, tmp, batch_size):
    # No auto-masking: its tie-breaking noise is random and would differ between the two set-ups.
    return tiny_config(data, tmp, disable_automasking=True, batch_size=batch_size)


def _gradient_worker(rank, port, queue, data, tmp):
    _join_as(rank, port)
    placement = distributed.setup("cpu")
    config = _config(data, tmp, batch_size=1)
    torch.manual_seed(0)
    models = build_models(config).eval()
    lines = read_split_file(data / "splits" / "synth" / "train_files.txt")[rank:rank + 1]
    gradients = _loss_and_gradients(config, data, lines, distributed.wrap(models, placement), models)
    if rank == 0:
        queue.put({name: value.numpy() for name, value in gradients.items()})
    distributed.teardown(placement)


def test_two_gloo_processes_give_the_gradients_of_the_combined_batch(synth_raw, tmp_path):
    """Each process has one sample; DDP averages the two gradients, which is the gradient of the mean loss
    over both samples: one process with a batch of two. BatchNorm in training mode would normalise each
    process's single sample by its own statistics (as the reference on several GPUs would, without
    SyncBatchNorm), so the networks run in eval mode here, where BatchNorm uses its running statistics and
    samples are independent; everything else (convolutions, warping, losses) is as in training."""
    distributed_gradients = _spawn(_gradient_worker, synth_raw, tmp_path)
    config = _config(synth_raw, tmp_path, batch_size=2)
    torch.manual_seed(0)
    models = build_models(config).eval()
    lines = read_split_file(synth_raw / "splits" / "synth" / "train_files.txt")[:2]
    single = _loss_and_gradients(config, synth_raw, lines, models, models)
    assert set(single) == set(distributed_gradients)
    worst = max(float((torch.from_numpy(distributed_gradients[name]) - g).norm() / g.norm())
                for name, g in single.items() if g.norm() > 0)
    assert worst < 1e-3, worst  # float32 sums in another order: 2e-5 observed (a sum, not a mean: 100%)


def _training_worker(rank, port, queue, config):
    _join_as(rank, port)
    losses: dict[int, float] = {}
    run_training(config, on_step=lambda step, loss: losses.__setitem__(step, loss))
    if rank == 0:
        queue.put(losses)


def test_two_processes_train_shards_and_only_rank_0_writes(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits", train=4)
    config = tiny_config(synth_raw, tmp_path, splits_dir=str(splits), batch_size=1, log_frequency=1,
                         device="cpu", width=64)
    losses = _spawn(_training_worker, config)
    assert sorted(losses) == [0, 1]  # 4 samples / (2 processes x batch 1): two steps
    log = config.log_path
    saved = read_state(log)
    assert saved.world_size == 2 and len(saved.rng) == 2 and saved.progress.step == 2
    assert not torch.equal(saved.rng[0]["torch"], saved.rng[1]["torch"])  # each process's own generators
    assert len(list((log / "train").iterdir())) == 1 and len(list((log / "val").iterdir())) == 1
    assert sorted(p.name for p in (log / "models").iterdir()) == ["weights_0"]
    # One process can continue what two saved: same networks and Adam, its own shard plan from then on.
    steps: dict[int, float] = {}
    resume_training(log, overrides={"num_epochs": 2}, on_step=lambda step, loss: steps.__setitem__(step, loss))
    assert sorted(steps) == [2, 3, 4, 5] and read_state(log).world_size == 1


@pytest.mark.parametrize("variable", ["RANK"])
def test_a_world_size_without_torchrun_variables_is_a_usage_error(monkeypatch, variable):
    from md2.errors import UsageError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(UsageError, match="torchrun"):
        distributed.setup("cpu")
