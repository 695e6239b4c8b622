"""The training loop: epochs, Adam and the step schedule, logging, weights folders, exact resume, DDP.

``run_training(config)`` starts a run in LOG_DIR/MODEL_NAME; ``resume_training(run_dir)`` continues one from
its training state (:mod:`md2.core.train.state`) with the same batches, random numbers and optimiser state.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from md2.core.checkpoint import load_module, load_state_dict_file, save_weights_folder
from md2.core.losses import SSIM
from md2.core.train import distributed, state
from md2.core.train.adam import adam
from md2.core.train.config import TrainConfig, save_yaml, to_dict
from md2.core.train.data import VAL_WORKERS, SkipBadSamples, ValidationBatches, augments_on_device, batches
from md2.core.train.data import build_dataset, make_loader
from md2.core.train.epoch_bar import EpochBar, peak_memory_gb
from md2.core.train.models import build_models
from md2.core.train.speed import CompileFallback, accelerate, amp_dtype, compile_networks
from md2.core.train.step import Warpers, training_step
from md2.core.train.tb_logging import RunLogger, log_scalars, should_log, validation_summary
from md2.data.device_augment import finish_batch
from md2.errors import CheckpointError, MD2Error, UsageError
from md2.files import make_folder

NAN_CHECK_INTERVAL = 100
"""Steps between host reads of the non-finite-loss flag (also read at every log, save and epoch end)."""
OnStep = Callable[[int, float], None]


def run_training(config: TrainConfig, console: Console | None = None, on_step: OnStep | None = None, *,
                 verbose: bool = False) -> Path:
    """Train a new run into LOG_DIR/MODEL_NAME (refused if a run was already saved there); returns that
    folder. ``on_step(step, loss)`` is called after every step (it costs a host sync; for tests and tools).
    ``console`` (rank 0's; default stderr) gets progress; ``verbose`` adds the options, every logged loss and
    every skipped sample."""
    run_dir = config.log_path
    if (run_dir / state.STATE_FILE).exists():
        raise UsageError(f"{run_dir} already holds a run: continue it with `md2 train --resume {run_dir}` "
                         "or choose another --model-name")
    placement = distributed.setup(config.run.device)
    try:
        seed_everything(config.run.seed + placement.rank)
        trainer = Trainer(config, placement, console, on_step, verbose=verbose)
        if config.run.load_weights_folder:
            trainer.load_pretrained(Path(config.run.load_weights_folder).expanduser())
        if placement.is_main:
            make_folder(run_dir)
            save_yaml(config, run_dir / "opt.yaml")
        return trainer.fit(state.Progress())
    finally:
        distributed.teardown(placement)


def resume_training(run_dir: Path | str, overrides: dict[str, Any] | None = None, console: Console | None = None,
                    on_step: OnStep | None = None, *, verbose: bool = False) -> Path:
    """Continue the run in ``run_dir`` where its last saved state stopped (options in
    :data:`md2.core.train.state.RESUMABLE_OVERRIDES` may change, e.g. ``num_epochs`` to train longer)."""
    run_dir, overrides = Path(run_dir).expanduser(), overrides or {}
    state.check_resume_overrides(overrides)
    saved = state.read_state(run_dir)
    config = state.resumed_config(saved.config, overrides, run_dir)
    placement = distributed.setup(config.run.device)
    try:
        trainer = Trainer(config, placement, console, on_step, verbose=verbose)
        progress = trainer.restore(saved)
        if placement.is_main:
            state.recover_interrupted_saves(run_dir)
            state.prune_checkpoints(run_dir, keep=saved.weights)
            save_yaml(config, run_dir / "opt.yaml")
        return trainer.fit(progress)
    finally:
        distributed.teardown(placement)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """A run's networks, optimiser, data, logging and saving, and the loop over them."""

    def __init__(self, config: TrainConfig, placement: distributed.Placement, console: Console | None = None,
                 on_step: OnStep | None = None, verbose: bool = False) -> None:
        self.config, self.placement, self.on_step = config, placement, on_step
        self.run_dir, device = config.log_path, placement.device
        self.device, self.verbose = device, verbose and placement.is_main
        if console is None or not placement.is_main:  # only rank 0 prints
            console = Console(stderr=True, quiet=not placement.is_main, soft_wrap=True)
        self.console = console
        run = config.run
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest convolutions once
        self.models = build_models(config).to(device)
        if run.channels_last:
            self.models.to(memory_format=torch.channels_last)
        # Adam over every parameter as the reference (the frozen classifiers never get a gradient, so Adam
        # skips them); foreach, and without importing torch's compiler unless --compile (md2.core.train.adam).
        self.optimizer = adam(self.models.parameters(), config.optim.learning_rate, eager=not run.compile)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, config.optim.scheduler_step_size, 0.1)
        self.scaler = torch.amp.GradScaler(device.type, enabled=run.amp and amp_dtype(device) == torch.float16)
        pin = device.type == "cuda"
        train_set = build_dataset(config, "train", is_train=True, uint8_images=augments_on_device(config, device))
        self.train_loader = make_loader(train_set, config, rank=placement.rank, world_size=placement.world_size,
                                        pin_memory=pin)
        self.val_batches = None
        if placement.is_main:  # only rank 0 validates (and logs)
            val_loader = make_loader(build_dataset(config, "val", is_train=False), config, pin_memory=pin,
                                     workers=min(VAL_WORKERS, config.data.num_workers), label="val")
            self.val_batches = ValidationBatches(val_loader)
        self.warpers = Warpers(config.data.height, config.data.width, len(config.model.scales)).to(device)
        self.ssim = None if config.loss.no_ssim else SSIM().to(device)
        eager = accelerate(distributed.wrap(self.models, placement), device, amp=run.amp,
                           channels_last=run.channels_last)
        self.networks = CompileFallback(compile_networks(eager) if run.compile else None, eager, self.console)
        self.val_networks = accelerate(dict(self.models), device, amp=run.amp, channels_last=run.channels_last)
        # First step with a non-finite loss, kept on the device: no host sync per step.
        self.bad_step = torch.full((), distributed.NO_BAD_STEP, dtype=torch.int64, device=device)
        self.logger: RunLogger | None = None
        self.epoch_validation: list[dict[str, float]] = []  # this epoch's validation scalars, for its console line

    # -- starting points ---------------------------------------------------------------------------------
    def load_pretrained(self, folder: Path) -> None:
        """Fine-tuning, as the reference: ``--models-to-load`` from a weights folder, and Adam when saved there."""
        if not folder.is_dir():
            raise CheckpointError(f"--load-weights-folder not found: {folder}")
        for name in self.config.run.models_to_load:
            if name not in self.models:
                self.console.print(f"note: this run has no {name} network; {name}.pth is not loaded")
                continue
            load_module(self.models[name], folder / f"{name}.pth")
        adam = folder / "adam.pth"
        if not adam.is_file():
            self.console.print(f"note: no adam.pth in {folder}: Adam starts afresh")
            return
        try:
            self.optimizer.load_state_dict(load_state_dict_file(adam))
        except (ValueError, KeyError) as error:
            self.console.print(f"note: {adam} does not fit these networks ({error}): Adam starts afresh")

    def restore(self, saved: state.SavedState) -> state.Progress:
        """Networks, Adam, scheduler, scaler and this process's random generators from a saved state."""
        state.load_weights(saved.weights, self.models, self.optimizer)
        self.scheduler.load_state_dict(saved.scheduler)
        if saved.scaler:
            self.scaler.load_state_dict(saved.scaler)
        progress, rank, world_size = saved.progress, self.placement.rank, self.placement.world_size
        if saved.world_size == world_size:
            state.set_rng_state(saved.rng[rank])
        else:
            self.console.print(f"[yellow]warning:[/yellow] the run was saved by {saved.world_size} process(es), "
                               f"it continues with {world_size}: same model and optimiser, not the same batches")
            seed_everything(self.config.run.seed + rank + progress.step)
            done = progress.batch_in_epoch * saved.world_size // world_size
            progress = state.Progress(progress.epoch, progress.step, done, progress.val_batches)
        if self.val_batches is not None:
            self.val_batches.position = progress.val_batches
        return progress

    # -- the loop ----------------------------------------------------------------------------------------
    def fit(self, progress: state.Progress) -> Path:
        config, placement = self.config, self.placement
        if progress.epoch >= config.optim.num_epochs:
            self.console.print(f"{self.run_dir.name} has trained its {config.optim.num_epochs} epochs "
                               "(raise --num-epochs to train longer)", highlight=False)
            return self.run_dir
        self.logger = RunLogger(self.run_dir, placement.is_main)
        per_epoch = self.train_loader.sampler.num_samples // config.optim.batch_size
        self.console.print(f"training {self.run_dir.name}: {per_epoch} batches of {config.optim.batch_size} x "
                           f"{placement.world_size} process(es) per epoch on {self.device}, epochs "
                           f"{progress.epoch}..{config.optim.num_epochs - 1}; logs in {self.run_dir}",
                           highlight=False)
        if self.verbose:
            self.console.print(f"options: {to_dict(config)}", highlight=False)
        try:
            for epoch in range(progress.epoch, config.optim.num_epochs):
                if self._step_limit_reached(progress.step):
                    break
                if progress.batch_in_epoch == 0:
                    self._scheduler_step()
                progress = self._epoch(epoch, progress)
                if progress.epoch == epoch:  # stopped inside the epoch by --max-steps: its weights and state
                    self._save_state(progress, self._save_weights(epoch))
                    break
                weights = self._save_weights(epoch) if (epoch + 1) % config.run.save_frequency == 0 else None
                self._save_state(progress, weights)
        finally:
            self.logger.close()
        limit = f" (--max-steps {config.optim.max_steps})" if self._step_limit_reached(progress.step) else ""
        self.console.print(f"done: {progress.step} steps{limit}; peak memory {peak_memory_gb(self.device):.2f} GB "
                           f"({'CUDA allocated' if self.device.type == 'cuda' else 'resident'})", highlight=False)
        return self.run_dir

    def _scheduler_step(self) -> None:
        # The reference steps StepLR at the START of every epoch, before any optimiser step, so its rate
        # drops after scheduler_step_size - 1 epochs (14 of the default 15), not 15. md2 keeps that timing;
        # PyTorch's warning about this order is expected here and silenced.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
            self.scheduler.step()

    def _epoch(self, epoch: int, progress: state.Progress) -> state.Progress:
        config, run = self.config, self.config.run
        per_epoch = self.train_loader.sampler.num_samples // config.optim.batch_size
        samples_per_step = config.optim.batch_size * self.placement.world_size
        step, first = progress.step, progress.batch_in_epoch
        self.models.train()
        with EpochBar(self.console, epoch, per_epoch, first, enabled=self.placement.is_main) as bar:
            for batch_index, batch in enumerate(bar.timed(batches(self.train_loader, epoch, first)), start=first):
                losses, outputs, batch = self._train_step(batch, step)
                if self.on_step is not None:
                    self.on_step(step, float(losses["loss"].detach()))
                logging_now = should_log(batch_index, step, run.log_frequency)
                if logging_now or (step + 1) % NAN_CHECK_INTERVAL == 0:
                    self._check_finite()
                if logging_now:
                    bar.show_loss(self._log(step, batch, outputs, losses))
                step += 1
                del losses, outputs  # not held while the next batch loads and runs
                bar.advance(samples_per_step)
                if self._step_limit_reached(step) and batch_index + 1 < per_epoch:
                    self._check_finite()
                    self._report_skipped(epoch)
                    self._report_validation(epoch)
                    return state.Progress(epoch, step, batch_index + 1, self._val_position())
                if run.save_every_steps and step % run.save_every_steps == 0 and batch_index + 1 < per_epoch:
                    self._save_state(state.Progress(epoch, step, batch_index + 1, self._val_position()))
        self._check_finite()
        self._report_skipped(epoch)
        self._report_validation(epoch)
        return state.Progress(epoch + 1, step, 0, self._val_position())

    def _report_validation(self, epoch: int) -> None:
        """One console line per epoch: the means of the losses and depth metrics of the validation batches run
        in it (one at each log, as the reference validates), as TensorBoard's val curves show them."""
        taken, self.epoch_validation = self.epoch_validation, []
        if not self.placement.is_main:
            return
        if not taken:
            self.console.print(f"epoch {epoch}: no validation batch (one runs at each log: --log-frequency)",
                               highlight=False)
            return
        self.console.print(f"epoch {epoch}: validation ({len(taken)} batch{'es' if len(taken) > 1 else ''}) "
                           + validation_summary(taken), highlight=False)

    def _step_limit_reached(self, step: int) -> bool:
        """``--max-steps``: whether ``step`` optimiser steps are all the run may take."""
        return 0 < self.config.optim.max_steps <= step

    def _report_skipped(self, epoch: int) -> None:
        """--skip-bad-samples: the samples replaced in this epoch by every process (train and val), counted."""
        loaders = [self.train_loader] + ([self.val_batches.loader] if self.val_batches is not None else [])
        if not isinstance(self.train_loader.dataset, SkipBadSamples):
            return
        local = [message for loader in loaders for message in loader.dataset.take_skipped()]
        skipped = [message for messages in distributed.gather(local, self.placement) for message in messages]
        for message in skipped if self.verbose else ():
            self.console.print(f"skipped: {message}", markup=False, highlight=False)
        first = f" (first: {skipped[0]})" if skipped else ""
        self.console.print(f"epoch {epoch}: {len(skipped)} unreadable sample(s) skipped{first}", markup=False,
                           highlight=False)

    def _train_step(self, batch, step: int):
        """Forward, backward and Adam on one batch; no host synchronisation."""
        batch = finish_batch(batch.to(self.device, non_blocking=True))  # --augment-on device: uint8 until here

        def forward_backward(networks):
            # The last step's gradients are dropped before the forward pass, not after it (the reference zeroed
            # them after): the same gradients, and the forward's activations can reuse their memory.
            self.optimizer.zero_grad(set_to_none=True)
            losses, outputs = training_step(networks, batch, self.config, self.warpers, self.ssim)
            self.scaler.scale(losses["loss"]).backward()
            return losses, outputs

        losses, outputs = self.networks.run(forward_backward, lambda: self.optimizer.zero_grad(set_to_none=True))
        finite = torch.isfinite(losses["loss"].detach())
        self.bad_step = torch.where(finite, self.bad_step, self.bad_step.clamp(max=step))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return losses, outputs, batch

    def _check_finite(self) -> None:
        bad = distributed.first_bad_step(self.bad_step, self.placement)
        if bad != distributed.NO_BAD_STEP:
            raise MD2Error(f"the loss became NaN or infinite at step {bad}: training stopped "
                           f"(the last saved state in {self.run_dir} is intact)")

    def _log(self, step: int, batch, outputs, losses: dict[str, torch.Tensor]) -> float:
        """Training scalars (averaged over processes) and images, then one validation batch; rank 0 writes."""
        scalars = distributed.mean_over_ranks(log_scalars(losses, batch, outputs), self.placement)
        scalars["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        values = self.logger.log("train", step, scalars, batch, outputs, self.config.model.scales)
        if self.placement.is_main:
            self._validate(step)
        if self.verbose:
            self.console.print(f"step {step}: loss {values['loss']:.4f}", highlight=False)
        return values["loss"]

    def _validate(self, step: int) -> None:
        """One validation batch in eval mode without gradients (the reference's val())."""
        batch = self.val_batches.next().to(self.device, non_blocking=True)
        self.models.eval()
        try:
            with torch.no_grad():
                losses, outputs = training_step(self.val_networks, batch, self.config, self.warpers, self.ssim)
        finally:
            self.models.train()
        values = self.logger.log("val", step, log_scalars(losses, batch, outputs), batch, outputs,
                                 self.config.model.scales)
        self.epoch_validation.append(values)

    def _val_position(self) -> int:
        return self.val_batches.position if self.val_batches is not None else 0

    # -- saving ------------------------------------------------------------------------------------------
    def _save_weights(self, epoch: int) -> Path:
        """RUN/models/weights_EPOCH in the official format (with adam.pth), by rank 0."""
        self._check_finite()
        folder = self.run_dir / "models" / f"weights_{epoch}"
        if self.placement.is_main:
            self._write_weights(folder)
        return folder

    def _save_state(self, progress: state.Progress, weights: Path | None = None) -> None:
        """The training state (every process's random generators gathered to rank 0), naming ``weights`` or a
        new RUN/checkpoints/step_S folder."""
        self._check_finite()
        rng = distributed.gather(state.rng_state(), self.placement)
        if not self.placement.is_main:
            return
        if weights is None:
            weights = self._write_weights(state.step_folder(self.run_dir, progress.step))
        state.write_state(self.run_dir, weights, progress, scheduler=self.scheduler.state_dict(),
                          scaler=self.scaler.state_dict(), rng=rng, config=to_dict(self.config))

    def _write_weights(self, folder: Path) -> Path:
        data = self.config.data
        return save_weights_folder(folder, dict(self.models), height=data.height, width=data.width,
                                   use_stereo=data.use_stereo, optimizer=self.optimizer)
