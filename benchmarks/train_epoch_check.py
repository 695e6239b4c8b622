"""What :mod:`benchmarks.train_epoch` checks besides time: that its reference-equivalent trainer computes what
md2 computes (same batch, same weights), and each timed run's loss after the epoch."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks import reference_trainer
from benchmarks.reference_parts import ReferenceKITTIRaw


def _md2_parts(data: Path, split: str, height: int, width: int, batch: int):
    from md2.core.losses import SSIM
    from md2.core.train.config import build_config
    from md2.core.train.step import Warpers

    config = build_config({"data_path": str(data), "splits_dir": str(data / "splits"), "split": split,
                           "height": height, "width": width, "batch_size": batch, "num_workers": 0,
                           "weights_init": "scratch", "log_dir": tempfile.gettempdir(), "model_name": "check"},
                          modality="mono")
    return config, Warpers(height, width, len(config.model.scales)), SSIM()


def _reference_inputs(batch) -> dict:
    """An md2 Batch as the reference's sample dict."""
    inputs = {}
    for frame, scales in batch.color.items():
        for scale, image in enumerate(scales):
            inputs[("color", frame, scale)] = image
            inputs[("color_aug", frame, scale)] = batch.color_aug[frame][scale]
    for scale in range(batch.num_scales):
        inputs[("K", scale)], inputs[("inv_K", scale)] = batch.K[scale], batch.inv_K[scale]
    return inputs


def _gradients(models) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": p.grad.clone() for name, model in models.items()
            for key, p in model.named_parameters() if p.grad is not None}


def same_math(data: Path, split: str, height: int, width: int, batch_size: int) -> dict:
    """md2's first step and the reference-equivalent's on md2's first training batch (with its jitter and
    flips), from the same initial weights and the same noise seed: the losses and gradients side by side;
    and whether an unaugmented validation sample of both datasets has equal pixels, intrinsics and lidar."""
    from md2.core.train.data import build_dataset
    from md2.core.train.models import build_models
    from md2.core.train.step import training_step

    config, warpers, ssim = _md2_parts(data, split, height, width, batch_size)
    torch.manual_seed(0)
    models = build_models(config)
    dataset = build_dataset(config, "train", is_train=True)
    batch = dataset.__getitems__([(0, index) for index in range(batch_size)])
    torch.manual_seed(1)
    md2_losses, _ = training_step(models, batch, config, warpers, ssim)
    md2_losses["loss"].backward()
    md2_grads = _gradients(models)

    reference = reference_trainer.Trainer.__new__(reference_trainer.Trainer)
    options = reference_trainer.parse_options(["--data_path", str(data), "--splits_dir", str(data / "splits"),
                                               "--height", str(height), "--width", str(width),
                                               "--batch_size", str(batch_size)])
    copies = reference_trainer.build_models(options.scales)
    for name, module in copies.items():
        module.load_state_dict(models[name].state_dict())
    reference.build_step(options, copies)
    torch.manual_seed(1)
    _, ref_losses = reference.process_batch(_reference_inputs(batch))
    ref_losses["loss"].backward()
    ref_grads = _gradients(reference.models)
    difference = sum(float((md2_grads[key] - ref_grads[key]).square().sum()) for key in ref_grads) ** 0.5
    norm = sum(float(ref_grads[key].square().sum()) for key in ref_grads) ** 0.5
    return {"first_step_losses": {key: {"md2": float(value.detach()), "reference": float(ref_losses[key].detach())}
                                  for key, value in md2_losses.items()},
            "max_loss_abs_diff": max(abs(float(v.detach() - ref_losses[k].detach())) for k, v in md2_losses.items()),
            "same_parameters_have_gradients": sorted(md2_grads) == sorted(ref_grads),
            "gradient_rel_diff": difference / norm,  # |g_md2 - g_ref| / |g_ref| over all parameters
            "unaugmented_sample_equal": _same_sample(config, data, split, height, width)}


def _same_sample(config, data: Path, split: str, height: int, width: int) -> bool:
    from md2.core.train.data import build_dataset

    md2_sample = build_dataset(config, "val", is_train=False)[0]
    files = (data / "splits" / split / "val_files.txt").read_text().splitlines()
    ref = ReferenceKITTIRaw(data, files, height, width, (0, -1, 1), 4, is_train=False)[0]
    equal = all(torch.equal(md2_sample.color[f][s], ref[("color", f, s)]) for f in (0, -1, 1) for s in range(4))
    equal &= all(torch.allclose(md2_sample.K[s], ref[("K", s)]) for s in range(4))
    return bool(equal and torch.equal(md2_sample.depth_gt, ref["depth_gt"]))


def final_losses(data: Path, split: str, height: int, width: int, batch_size: int, runs: dict[str, Path]) -> dict:
    """md2's fp32 loss (eval mode, no gradients, fixed noise) on the first validation batch for each run's
    weights after the epoch (RUN/models/weights_0, the official format both trainers write)."""
    from md2.core.checkpoint import load_module
    from md2.core.train.data import build_dataset
    from md2.core.train.models import build_models
    from md2.core.train.step import training_step

    config, warpers, ssim = _md2_parts(data, split, height, width, batch_size)
    batch = build_dataset(config, "val", is_train=False).__getitems__(list(range(batch_size)))
    losses = {}
    for case, run in runs.items():
        models = build_models(config)
        for name in models:
            load_module(models[name], run / "models" / "weights_0" / f"{name}.pth")
        models.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            losses[case] = round(float(training_step(models, batch, config, warpers, ssim)[0]["loss"]), 6)
    return losses
