"""TensorBoard logging of a run, as the reference's: losses, depth metrics on lidar, example images.

(Named tb_logging, not logging, so that it never shadows the standard library's module.)
"""

from __future__ import annotations

from pathlib import Path

import torch

from md2.core.metrics import batch_depth_errors
from md2.core.visualize import colorize_disparity

MAX_IMAGES = 4
"""Samples of a batch shown per log, as the reference."""
LATE_LOG_INTERVAL = 2000
"""After this many steps the reference logs only every 2000 steps."""


def should_log(batch_index: int, step: int, log_frequency: int) -> bool:
    """The reference's cadence: every ``log_frequency`` batches of an epoch while step < 2000, and every 2000
    steps throughout (``step`` is the global step before this batch's increment)."""
    early_phase = batch_index % log_frequency == 0 and step < LATE_LOG_INTERVAL
    late_phase = step % LATE_LOG_INTERVAL == 0
    return early_phase or late_phase


def log_scalars(losses: dict[str, torch.Tensor], batch, outputs) -> dict[str, torch.Tensor]:
    """The losses and, when the batch has lidar ground truth, the reference's depth metrics ("de/abs_rel", ...)
    on the full-resolution depth of scale 0 (upsampled to the lidar size, Garg crop, median scaling)."""
    scalars = {name: value.detach() for name, value in losses.items()}
    if batch.depth_gt is not None:
        scalars.update(batch_depth_errors(outputs.depth[0], batch.depth_gt))
    return scalars


class RunLogger:
    """Event files in RUN/train and RUN/val; a logger of a process other than rank 0 writes nothing."""

    def __init__(self, log_path: Path, enabled: bool) -> None:
        self.writers = {}
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writers = {mode: SummaryWriter(str(log_path / mode)) for mode in ("train", "val")}

    def log(self, mode: str, step: int, scalars: dict[str, torch.Tensor | float], batch, outputs,
            scales) -> dict[str, float]:
        """Write ``scalars`` and up to four samples' images; returns the scalars as floats."""
        values = {name: float(value) for name, value in scalars.items()}
        writer = self.writers.get(mode)
        if writer is None:
            return values
        for name, value in values.items():
            writer.add_scalar(name, value, step)
        for j in range(min(MAX_IMAGES, len(batch))):
            for scale in scales:
                self._images(writer, step, batch, outputs, scale, j)
        writer.flush()
        return values

    @staticmethod
    def _images(writer, step: int, batch, outputs, scale: int, j: int) -> None:
        """Sample ``j`` at ``scale``: every frame's colour, the warped sources (scale 0), the colour-mapped
        disparity, and the predictive mask per source frame or else the auto-mask."""
        for frame_id in batch.frame_ids:
            writer.add_image(f"color_{frame_id}_{scale}/{j}", batch.color[frame_id][scale][j].clamp(0, 1), step)
            if scale == 0 and frame_id != 0 and (frame_id, scale) in outputs.warped:
                writer.add_image(f"color_pred_{frame_id}_{scale}/{j}",
                                 outputs.warped[(frame_id, scale)][j].detach().float().clamp(0, 1), step)
        disp = outputs.disp[scale][j, 0].detach().float().cpu().numpy()
        writer.add_image(f"disp_{scale}/{j}", colorize_disparity(disp), step, dataformats="HWC")
        if outputs.predictive_mask is not None:
            sources = [f for f in batch.frame_ids if f != 0]
            for index, frame_id in enumerate(sources):
                mask = outputs.predictive_mask[scale][j, index:index + 1].detach().float()
                writer.add_image(f"predictive_mask_{frame_id}_{scale}/{j}", mask, step)
        elif scale in outputs.identity_selection:
            writer.add_image(f"automask_{scale}/{j}", outputs.identity_selection[scale][j][None], step)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
