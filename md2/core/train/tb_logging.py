"""TensorBoard logging of a run, as the reference's: losses, lidar depth metrics, and example images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from md2.core.metrics import batch_depth_errors
from md2.core.visualize import colorize_disparity

MAX_IMAGES = 4


def should_log(batch_index: int, step: int, log_frequency: int) -> bool:
    """The reference's cadence: every ``log_frequency`` batches while step < 2000, then every 2000 steps."""
    early = batch_index % log_frequency == 0 and step < 2000
    late = step % 2000 == 0
    return early or late


class RunLogger:
    """Event files in LOG/train and LOG/val (rank 0 only; other ranks get a logger that does nothing)."""

    def __init__(self, log_path: Path, enabled: bool) -> None:
        self.writers = {}
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writers = {mode: SummaryWriter(str(log_path / mode)) for mode in ("train", "val")}

    def log(self, mode: str, step: int, batch, outputs, losses: dict[str, torch.Tensor], scales) -> dict[str, float]:
        """Scalars and images of one batch; returns the scalars (for the console)."""
        scalars = {name: float(value.detach()) for name, value in losses.items()}
        if batch.depth_gt is not None:
            errors = batch_depth_errors(outputs.depth[0], batch.depth_gt)
            scalars.update({name: float(value) for name, value in errors.items()})
        writer = self.writers.get(mode)
        if writer is None:
            return scalars
        for name, value in scalars.items():
            writer.add_scalar(name, value, step)
        for j in range(min(MAX_IMAGES, len(batch))):
            for scale in scales:
                for frame_id in batch.frame_ids:
                    writer.add_image(f"color_{frame_id}_{scale}/{j}", batch.color[frame_id][scale][j].clamp(0, 1), step)
                    if scale == 0 and frame_id != 0 and (frame_id, scale) in outputs.warped:
                        writer.add_image(f"color_pred_{frame_id}_{scale}/{j}",
                                         outputs.warped[(frame_id, scale)][j].clamp(0, 1), step)
                disp = outputs.disp[scale][j, 0].detach().float().cpu().numpy()
                writer.add_image(f"disp_{scale}/{j}", colorize_disparity(disp), step, dataformats="HWC")
                if scale in outputs.identity_selection:
                    writer.add_image(f"automask_{scale}/{j}", outputs.identity_selection[scale][j][None], step)
                if outputs.predictive_mask is not None:
                    writer.add_image(f"predictive_mask_{scale}/{j}", outputs.predictive_mask[scale][j, :1], step)
        writer.flush()
        return scalars

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
