"""The training loop: epochs, optimiser, logging, checkpoints, exact resume, mixed precision, DDP."""

from __future__ import annotations

import contextlib
import random
import re
import time
import resource
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

from md2.core.checkpoint import load_module, load_state_dict_file, unwrap
from md2.core.losses import SSIM
from md2.core.train import distributed
from md2.core.train.config import TrainConfig, from_flat, save_yaml, to_dict
from md2.core.train.data import build_dataset, make_loader
from md2.core.train.models import build_models
from md2.core.train.state import Progress, load_training_state, save_training_state, saved_config
from md2.core.train.step import Warpers, training_step
from md2.core.train.tb_logging import RunLogger, should_log
from md2.errors import DataError, MD2Error, UsageError

CHECKPOINT = "checkpoint"
RESUMABLE_OVERRIDES = {"num_epochs", "num_workers", "device", "log_frequency", "save_frequency", "save_every_steps",
                       "data_path", "splits_dir"}


def run_training(config: TrainConfig, console: Console | None = None,
                 on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train a new run in LOG_DIR/MODEL_NAME; returns that folder."""
    placement = distributed.setup(config.run.device)
    try:
        if placement.is_main and (config.log_path / CHECKPOINT).exists():
            raise UsageError(f"{config.log_path} already holds a run: continue it with `md2 train --resume "
                             f"{config.log_path}` or choose another --model-name")
        seed_everything(config.run.seed + placement.rank)
        run = Run(config, placement, console, on_step)
        if placement.is_main:
            config.log_path.mkdir(parents=True, exist_ok=True)
            save_yaml(config, config.log_path / "opt.yaml")
        return run.fit(Progress())
    finally:
        distributed.teardown(placement)


def resume_training(run_dir: Path | str, overrides: dict[str, Any] | None = None,
                    console: Console | None = None, on_step: Callable[[int, float], None] | None = None) -> Path:
    """Continue the run in ``run_dir`` from its last saved state (same options, a few may change)."""
    run_dir = Path(run_dir).expanduser()
    folder = run_dir / CHECKPOINT
    if not (folder / "trainer_state.pth").is_file():
        raise DataError(f"no training state in {run_dir} (expected {folder}); was it started with md2 train?")
    overrides = dict(overrides or {})
    refused = sorted(set(overrides) - RESUMABLE_OVERRIDES)
    if refused:
        raise UsageError(f"--resume keeps the run's options; cannot change {', '.join(refused)} "
                         f"(allowed: {', '.join(sorted(RESUMABLE_OVERRIDES))})")
    flat = {k: v for section in saved_config(folder).values() for k, v in section.items()}
    flat.update(overrides, log_dir=str(run_dir.parent), model_name=run_dir.name)
    config = from_flat(flat)
    placement = distributed.setup(config.run.device)
    try:
        run = Run(config, placement, console, on_step)
        progress = load_training_state(folder, run.models, run.optimizer, run.scheduler)
        return run.fit(progress)
    finally:
        distributed.teardown(placement)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Run:
    """One training run's models, optimiser, data and logging, and the loop over them."""

    def __init__(self, config: TrainConfig, placement: distributed.Placement, console: Console | None = None,
                 on_step: Callable[[int, float], None] | None = None):
        self.config, self.placement, self.on_step = config, placement, on_step
        self.device = placement.device
        self.console = console or Console(stderr=True, quiet=not placement.is_main)
        self.models = build_models(config).to(self.device)
        if config.run.channels_last:
            self.models.to(memory_format=torch.channels_last)
        if config.run.load_weights_folder:
            self._load_weights(Path(config.run.load_weights_folder).expanduser())
        self.optimizer = torch.optim.Adam(self.models.parameters(), config.optim.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, config.optim.scheduler_step_size, 0.1)
        self.train_set = build_dataset(config, "train", is_train=True)
        self.val_set = build_dataset(config, "val", is_train=False)
        if len(self.train_set) < config.optim.batch_size * placement.world_size:
            raise DataError(f"{len(self.train_set)} training samples: fewer than one batch of "
                            f"{config.optim.batch_size} per process")
        self.warpers = Warpers(config.data.height, config.data.width, len(config.model.scales)).to(self.device)
        self.ssim = None if config.loss.no_ssim else SSIM().to(self.device)
        self.net = distributed.wrap(self.models, placement)
        if config.run.compile:
            self.net = _compiled(self.net, self.console)
        self.amp_dtype = _amp_dtype(self.device) if config.run.amp else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.logger = RunLogger(config.log_path, placement.is_main)
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        self._val_batches = self._val_iterator()

    def _load_weights(self, folder: Path) -> None:
        """Fine-tuning, as the reference: the named models from a weights folder, and Adam when saved there."""
        for name in self.config.run.models_to_load:
            if name not in self.models:
                self.console.print(f"[yellow]note:[/yellow] this run has no {name} network; not loading it")
                continue
            load_module(self.models[name], folder / f"{name}.pth")
        self._adam_state = folder / "adam.pth"

    def fit(self, progress: Progress) -> Path:
        config = self.config
        if config.run.load_weights_folder and progress.step == 0 and getattr(self, "_adam_state", None):
            if self._adam_state.is_file():
                self.optimizer.load_state_dict(load_state_dict_file(self._adam_state))
        self.console.print(f"training {config.log_path.name}: {len(self.train_set)} samples, batch "
                           f"{config.optim.batch_size} x {self.placement.world_size} process(es) on {self.device}; "
                           f"logs in {config.log_path}", highlight=False)
        try:
            progress = self._epochs(progress)
        finally:
            self.logger.close()
        self.console.print(f"done: {progress.step} steps; peak memory {peak_memory_gb(self.device):.2f} GB",
                           highlight=False)
        return config.log_path

    def _epochs(self, progress: Progress) -> Progress:
        config = self.config
        for epoch in range(progress.epoch, config.optim.num_epochs):
            if progress.batch_in_epoch == 0:
                # The reference steps the scheduler at the start of every epoch (before any optimiser step), so
                # its learning rate drops after scheduler_step_size - 1 epochs (14, not 15). md2 keeps that.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
                    self.scheduler.step()
            progress = self._epoch(epoch, progress)
            progress = Progress(epoch + 1, progress.step, 0)
            if (epoch + 1) % config.run.save_frequency == 0:
                self._save_weights(epoch)
            self._save_state(progress)
        return progress

    def _epoch(self, epoch: int, progress: Progress) -> Progress:
        config, placement = self.config, self.placement
        loader = make_loader(self.train_set, config, epoch, True, placement.rank, placement.world_size,
                             start_batch=progress.batch_in_epoch, pin_memory=self.device.type == "cuda")
        self.models.train()
        step, batch_index = progress.step, progress.batch_in_epoch
        started, samples = time.perf_counter(), 0
        with self._bar(epoch, len(loader) + batch_index, batch_index) as (bar, task):
            for batch_index, batch in enumerate(loader, start=batch_index):
                losses, outputs, batch = self._train_step(batch, step)
                if self.on_step is not None:  # tests and tools: costs a host sync, so only when asked
                    self.on_step(step, float(losses["loss"].detach()))
                if should_log(batch_index, step, config.run.log_frequency):
                    self._check_finite()
                    scalars = self.logger.log("train", step, batch, outputs, losses, config.model.scales)
                    self._validate(step)
                    bar.update(task, loss=f"{scalars['loss']:.4f}")
                step += 1
                samples += config.optim.batch_size * placement.world_size
                bar.update(task, advance=1, rate=f"{samples / (time.perf_counter() - started):.1f} samples/s")
                if config.run.save_every_steps and step % config.run.save_every_steps == 0:
                    self._save_state(Progress(epoch, step, batch_index + 1))
        self._check_finite()
        return Progress(epoch, step, 0)

    def _train_step(self, batch, step: int):
        batch = batch.to(self.device, non_blocking=True)
        with self._autocast():
            losses, outputs = training_step(self.net, batch, self.config, self.warpers, self.ssim)
        loss = losses["loss"]
        # Remember the first non-finite step on the device: no host sync here; checked at logs and saves.
        bad = ~torch.isfinite(loss.detach())
        self.first_bad_step = torch.where(bad & (self.first_bad_step < 0), torch.full_like(self.first_bad_step, step),
                                          self.first_bad_step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return losses, outputs, batch

    def _check_finite(self) -> None:
        bad = self.first_bad_step.clone()
        if self.placement.distributed:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        if int(bad) >= 0:
            raise MD2Error(f"the loss became NaN or infinite at step {int(bad)}; training stopped "
                           f"(the last saved checkpoint in {self.config.log_path} is intact)")

    def _validate(self, step: int) -> None:
        """One validation batch, logged (the reference's val())."""
        self.models.eval()
        with torch.no_grad(), self._autocast():
            batch = next(self._val_batches).to(self.device, non_blocking=True)
            losses, outputs = training_step(self.net, batch, self.config, self.warpers, self.ssim)
            self.logger.log("val", step, batch, outputs, losses, self.config.model.scales)
        self.models.train()

    def _val_iterator(self):
        epoch = 0
        while True:
            loader = make_loader(self.val_set, self.config, epoch, True, self.placement.rank,
                                 self.placement.world_size)
            if len(loader) == 0:
                raise DataError(f"fewer validation samples than one batch of {self.config.optim.batch_size}")
            yield from loader
            epoch += 1

    def _save_weights(self, epoch: int) -> None:
        if not self.placement.is_main:
            return
        self._check_finite()
        from md2.core.checkpoint import save_weights_folder

        save_weights_folder(self.config.log_path / "models" / f"weights_{epoch}",
                            {name: unwrap(module) for name, module in self.models.items()},
                            height=self.config.data.height, width=self.config.data.width,
                            use_stereo=self.config.data.use_stereo, optimizer=self.optimizer)

    def _save_state(self, progress: Progress) -> None:
        self._check_finite()
        if self.placement.is_main:
            save_training_state(self.config.log_path / CHECKPOINT, self.models, self.optimizer, self.scheduler,
                                progress, height=self.config.data.height, width=self.config.data.width,
                                use_stereo=self.config.data.use_stereo, config=to_dict(self.config))

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @contextlib.contextmanager
    def _bar(self, epoch: int, total: int, done: int):
        bar = Bar(TextColumn(f"epoch {epoch}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), console=self.console,
                  disable=not self.placement.is_main, transient=True)
        with bar:
            task = bar.add_task("train", total=total, completed=done, loss="-", rate="")
            yield bar, task


def _amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 on the CPU and on GPUs that have it; fp16 (with gradient scaling) on older GPUs."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _compiled(net, console: Console):
    try:
        return torch.nn.ModuleDict({name: torch.compile(module) for name, module in net.items()})
    except Exception as error:  # noqa: BLE001 - any compiler problem falls back to eager
        console.print(f"[yellow]warning:[/yellow] torch.compile unavailable ({error}); training without it")
        return net


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux
