"""Training state on disk: what ``md2 train --resume LOG_DIR/MODEL_NAME`` needs to continue exactly.

``RUN/training_state.pth`` holds the counters (epoch, global step, batches done in the epoch, validation
batches taken), the scheduler and gradient-scaler states, every random generator's state (Python, NumPy,
torch CPU and CUDA; one set per process), the resolved options, and the name of the weights folder holding
the networks and Adam at that moment: ``models/weights_N`` at the end of a saved epoch, else
``checkpoints/step_S``. Folders appear complete or not at all (temporary folder + rename, by
:func:`md2.core.checkpoint.save_weights_folder`); the state file is written to a temporary name, synced and
renamed, and only then are older checkpoints removed. So after a crash or kill -9 at any moment the state
file on disk is the previous one or the new one, and the folder it names is complete.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from md2.core.checkpoint import load_module, load_state_dict_file
from md2.core.train.config import TrainConfig, from_flat
from md2.errors import CheckpointError, DataError, UsageError
from md2.files import atomic_path

STATE_FILE = "training_state.pth"
CHECKPOINTS = "checkpoints"
FORMAT = 1
RESUMABLE_OVERRIDES = {"num_epochs", "max_steps", "num_workers", "device", "log_frequency", "save_frequency",
                       "save_every_steps", "data_path", "splits_dir", "skip_bad_samples", "resize_cache"}
"""Options ``--resume`` may change: none of them changes the numbers a step computes (``skip_bad_samples``
only where a sample cannot be read at all)."""
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.\d+\.[0-9a-f]+\.(?P<tag>tmp|old)$")
"""Names of save_weights_folder's temporary folders (``.weights_3.<pid>.<hex>.tmp``) and set-aside old ones."""


@dataclass(frozen=True)
class Progress:
    """Where a run is: the epoch, the global step, this epoch's batches done, validation batches taken."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    val_batches: int = 0


@dataclass(frozen=True)
class SavedState:
    """A training state read back: counters, the weights folder, optimiser-side states and options."""

    progress: Progress
    weights: Path
    scheduler: dict
    scaler: dict
    rng: list[dict]
    config: dict
    world_size: int


def resumed_config(saved: dict, overrides: dict[str, Any], run_dir: Path) -> TrainConfig:
    """The saved options with the allowed ``overrides``; LOG_DIR/MODEL_NAME become ``run_dir``'s."""
    check_resume_overrides(overrides)
    flat = {name: value for section in saved.values() for name, value in section.items()}
    flat.update(overrides, log_dir=str(run_dir.parent), model_name=run_dir.name)
    return from_flat(flat)


def check_resume_overrides(overrides: dict[str, Any]) -> None:
    """UsageError naming the options ``--resume`` cannot change (any outside RESUMABLE_OVERRIDES)."""
    refused = sorted(set(overrides) - RESUMABLE_OVERRIDES)
    if refused:
        def flag(name: str) -> str:
            return "--" + name.replace("_", "-")
        raise UsageError(f"--resume continues the run with its own options; {', '.join(map(flag, refused))} "
                         f"cannot change (allowed: {', '.join(map(flag, sorted(RESUMABLE_OVERRIDES)))})")


def rng_state() -> dict:
    """This process's generators (Python, NumPy, torch CPU, every CUDA device) as tensors and plain values,
    so the file loads with weights_only=True."""
    version, keys, gauss = random.getstate()
    name, np_keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(keys), gauss],
             "numpy": [name, torch.from_numpy(np_keys.astype(np.int64)), int(position), int(has_gauss),
                       float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    name, np_keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np_keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_state(run_dir: Path, weights: Path, progress: Progress, *, scheduler: dict, scaler: dict,
                rng: list[dict], config: dict) -> None:
    """Write RUN/training_state.pth naming ``weights`` (a complete folder inside ``run_dir``), atomically;
    then remove the checkpoints it no longer needs."""
    content = {"format": FORMAT, "weights": weights.relative_to(run_dir).as_posix(), "epoch": progress.epoch,
               "step": progress.step, "batch_in_epoch": progress.batch_in_epoch,
               "val_batches": progress.val_batches, "scheduler": scheduler, "scaler": scaler, "rng": rng,
               "world_size": len(rng), "config": config}
    path = run_dir / STATE_FILE
    try:
        with atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                torch.save(content, handle)  # Ctrl-C here: a RuntimeError caused by it, md2's "interrupted" 130
                handle.flush()
                os.fsync(handle.fileno())
    except DataError as error:
        raise CheckpointError(str(error)) from None
    _fsync_dir(run_dir)
    prune_checkpoints(run_dir, keep=weights)


def read_state(run_dir: Path) -> SavedState:
    """The state in ``run_dir``; CheckpointError when it is missing, unreadable, or its folder is incomplete."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"no training state in {run_dir} (expected {path}); was it started by md2 train?")
    content = load_state_dict_file(path)
    if content.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an md2 training state of format {FORMAT}")
    weights = run_dir / content["weights"]
    if not (weights / "encoder.pth").is_file() or not (weights / "adam.pth").is_file():
        raise CheckpointError(f"{path} refers to {weights}, which is missing or incomplete")
    progress = Progress(content["epoch"], content["step"], content["batch_in_epoch"], content["val_batches"])
    return SavedState(progress, weights, content["scheduler"], content["scaler"], content["rng"],
                      content["config"], content["world_size"])


def load_weights(folder: Path, models: nn.ModuleDict, optimizer: torch.optim.Optimizer) -> None:
    """Every network (strict keys and shapes) and Adam from a weights folder written by md2."""
    for name, module in models.items():
        load_module(module, folder / f"{name}.pth")
    optimizer.load_state_dict(load_state_dict_file(folder / "adam.pth"))


def step_folder(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step_{step:09d}"


def prune_checkpoints(run_dir: Path, keep: Path | None) -> None:
    """Remove everything in RUN/checkpoints except ``keep`` (older states, interrupted saves)."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if keep is None or entry.resolve() != keep.resolve():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def recover_interrupted_saves(run_dir: Path) -> None:
    """Tidy after a crash: remove half-written temporary weights folders in RUN/models and state files in RUN
    (``.training_state.<random>.tmp.pth``); a complete folder that was set aside while being replaced
    (``.weights_3.<pid>.<hex>.old``) goes back when the new one never came."""
    for entry in run_dir.glob(f".{Path(STATE_FILE).stem}.*.tmp{Path(STATE_FILE).suffix}"):
        entry.unlink(missing_ok=True)
    models = run_dir / "models"
    if not models.is_dir():
        return
    for entry in sorted(models.iterdir()):
        match = _TEMPORARY.match(entry.name)
        if match is None:
            continue
        target = models / match["name"]
        if match["tag"] == "old" and not target.exists():
            os.replace(entry, target)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
