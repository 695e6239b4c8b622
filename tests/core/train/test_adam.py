"""md2's Adam: torch's update bit for bit, and a training run that never imports torch's compiler."""

from __future__ import annotations

import copy
import subprocess
import sys

import torch
from torch import nn

from md2.core.train.adam import adam
from tests.core.train.helpers import tiny_split


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 1))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model(torch.rand(2, 3, 12, 12, generator=generator)).square().mean().backward()
        optimizer.step()


def test_the_update_and_the_state_are_torchs_adam():
    ours, theirs = _model(0), _model(0)
    our_adam = adam(ours.parameters(), 1e-3)
    their_adam = torch.optim.Adam(theirs.parameters(), 1e-3, foreach=True)
    _train(ours, our_adam, 3)
    _train(theirs, their_adam, 3)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)
    ours_state, theirs_state = our_adam.state_dict(), their_adam.state_dict()
    assert ours_state["param_groups"] == theirs_state["param_groups"]
    for key, value in theirs_state["state"].items():
        assert all(torch.equal(ours_state["state"][key][name], tensor) for name, tensor in value.items())
    # A state saved from one loads into the other and continues identically.
    their_adam.load_state_dict(copy.deepcopy(ours_state))  # load_state_dict may keep the very tensors
    _train(ours, our_adam, 1)
    _train(theirs, their_adam, 1)
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))


def test_an_eager_run_never_imports_torchs_compiler(synth_raw, tmp_path):
    # A fresh interpreter: this test process may have imported torch._dynamo already. One step per epoch.
    splits = tiny_split(synth_raw, tmp_path / "splits")
    code = f"""
import sys
from md2.cli.app import main
try:
    main(["train", "--data-path", {str(synth_raw)!r}, "--split", "synth", "--splits-dir", {str(splits)!r},
          "--png", "--height", "64", "--width", "192", "--batch-size", "2", "--num-workers", "0",
          "--weights-init", "scratch", "--num-epochs", "1", "--log-dir", {str(tmp_path)!r}, "--model-name", "run", "--quiet"])
except SystemExit as done:
    assert not done.code, done.code
print("torch._dynamo" in sys.modules, "torchvision" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]
    assert (tmp_path / "run" / "models" / "weights_0" / "adam.pth").is_file()
