"""Training state on disk: what ``md2 train --resume`` needs to continue exactly where a run stopped.

LOG/checkpoint/ is a weights folder in the official format plus ``trainer_state.pth`` (optimizer, scheduler,
counters, every random generator's state), written to a temporary folder and renamed, so after a crash at any
moment it is either the previous complete state or the new complete one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from md2.core.checkpoint import load_module, load_state_dict_file, save_weights_folder

STATE_FILE = "trainer_state.pth"


@dataclass
class Progress:
    """Where a run is: the epoch, the global step, and batches of this epoch already done."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0


def rng_state() -> dict:
    """Every generator's state as tensors and plain values (loadable with weights_only=True)."""
    version, keys, gauss = random.getstate()
    name, np_keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(keys), gauss], "numpy": [name, torch.from_numpy(np_keys.astype(np.int64)), pos,
                                                               has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    name, np_keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np_keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(folder: Path, models: nn.ModuleDict, optimizer, scheduler, progress: Progress, *,
                        height: int, width: int, use_stereo: bool, config: dict) -> None:
    """Models (official format), optimizer (adam.pth) and trainer_state.pth, atomically into ``folder``."""
    extra = {STATE_FILE: {"scheduler": scheduler.state_dict(), "epoch": progress.epoch, "step": progress.step,
                          "batch_in_epoch": progress.batch_in_epoch, "rng": rng_state(), "config": config}}
    save_weights_folder(folder, dict(models), height=height, width=width, use_stereo=use_stereo,
                        optimizer=optimizer, extra=extra)


def load_training_state(folder: Path, models: nn.ModuleDict, optimizer, scheduler) -> Progress:
    """Restore models, optimizer, scheduler and random generators; returns where to continue."""
    for name, module in models.items():
        load_module(module, folder / f"{name}.pth")
    optimizer.load_state_dict(load_state_dict_file(folder / "adam.pth"))
    state = load_state_dict_file(folder / STATE_FILE)
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return Progress(state["epoch"], state["step"], state["batch_in_epoch"])


def saved_config(folder: Path) -> dict:
    return load_state_dict_file(folder / STATE_FILE)["config"]
