"""One training step: every modality, pose network and ablation runs; the losses mean what they should."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from md2.core.checkpoint import load_module, save_weights_folder
from md2.core.losses import SSIM
from md2.core.train.models import build_models
from md2.core.train.speed import accelerate, compile_networks
from md2.core.train.step import StepOutputs, Warpers, compute_losses, synthesize_views, training_step
from md2.data.splits import SplitLine
from tests.core.train.helpers import batch_for, tiny_config

VARIANTS = [
    {"modality": "mono"},
    {"modality": "stereo"},
    {"modality": "mono+stereo"},
    {"pose_model_type": "shared"},
    {"pose_model_type": "posecnn"},
    {"pose_model_input": "all"},
    {"pose_model_input": "all", "pose_model_type": "shared"},
    {"pose_model_input": "all", "pose_model_type": "posecnn"},
    {"v1_multiscale": True},
    {"avg_reprojection": True},
    {"disable_automasking": True},
    {"predictive_mask": True, "disable_automasking": True},
    {"predictive_mask": True, "disable_automasking": True, "modality": "mono+stereo"},
    {"no_ssim": True},
    {"modality": "mono+stereo", "pose_model_type": "shared"},
]


def run_step(config, data, batch=None):
    torch.manual_seed(0)
    models = build_models(config)
    batch = batch if batch is not None else batch_for(config, data)
    warpers = Warpers(config.data.height, config.data.width, len(config.model.scales))
    ssim = None if config.loss.no_ssim else SSIM()
    losses, outputs = training_step(models, batch, config, warpers, ssim)
    return models, losses, outputs


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_variant_runs_a_step_with_a_finite_loss(synth_raw, tmp_path, options):
    config = tiny_config(synth_raw, tmp_path, width=64, **dict(options))  # 64 x 64: the smallest size md2 trains
    models, losses, outputs = run_step(config, synth_raw)
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    assert set(losses) == {"loss", "loss/0", "loss/1", "loss/2", "loss/3"}
    losses["loss"].backward()
    # Every trainable parameter takes part: what lets DDP run without find_unused_parameters.
    missing = [f"{name}.{key}" for name, module in models.items() for key, p in module.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not missing, missing[:3]
    sources = [f for f in config.frame_ids if f != 0]
    assert {key[0] for key in outputs.warped} == set(sources)


def rendered_depth(data, line, height, width):
    depth = np.load(data / line.folder / "rendered_depth" / "image_02" / f"{line.frame:010d}.npy")
    return torch.nn.functional.interpolate(torch.from_numpy(depth)[None, None], (height, width), mode="nearest")


def photometric_loss_with_depth(config, batch, depth):
    """The step's loss when the network's depth is replaced by ``depth`` at every scale."""
    outputs = StepOutputs(disp={s: torch.full((len(batch), 1, 64 // 2**s, 192 // 2**s), 0.5) for s in range(4)})
    warpers = Warpers(64, 192, 4)
    synthesize_views(batch, outputs, config, warpers)
    for scale in range(4):  # redo the warps with the given depth
        grid = warpers.project[0](warpers.backproject[0](depth, batch.inv_K[0]), batch.K[0], batch.stereo_T)
        outputs.warped[("s", scale)] = torch.nn.functional.grid_sample(
            batch.color["s"][0], grid, padding_mode="border", align_corners=True)
    return compute_losses(batch, outputs, config, SSIM())["loss"]


def test_true_depth_gives_a_clearly_lower_stereo_loss(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path, modality="stereo", disable_automasking=True,
                         disparity_smoothness=0.0)
    line = SplitLine("2011_09_26/2011_09_26_drive_0001_sync", 3, "l")
    batch = batch_for(config, synth_raw, lines=[line])
    # The loader's stereo_T uses the reference's 0.1 baseline; the synthetic rig's is 0.54 m, so scale depth.
    depth = rendered_depth(synth_raw, line, 64, 192) * (0.1 / 0.54)
    good = photometric_loss_with_depth(config, batch, depth)
    wrong = photometric_loss_with_depth(config, batch, depth * 2)
    assert good < 0.7 * wrong


def test_static_sequence_selects_the_identity(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path)
    batch = batch_for(config, synth_raw)
    for frame in (-1, 1):  # the camera did not move: neighbours are the target frame itself
        batch.color[frame] = batch.color[0]
        batch.color_aug[frame] = batch.color_aug[0]
    _, _, outputs = run_step(config, synth_raw, batch)
    for scale in range(4):
        assert outputs.identity_selection[scale].mean() < 0.2  # 0 = identity chosen


def test_weights_written_by_md2_load_back_strictly(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path, modality="mono+stereo")
    models, _, _ = run_step(config, synth_raw)
    save_weights_folder(tmp_path / "w", dict(models), height=64, width=192, use_stereo=True)
    fresh = build_models(config)
    for name, module in fresh.items():
        load_module(module, tmp_path / "w" / f"{name}.pth", strict=True)
        for key, value in module.state_dict().items():
            assert torch.equal(value, models[name].state_dict()[key])


# bf16 keeps 8 bits of mantissa: network outputs differ by ~0.4% each, the mean loss by far less.
@pytest.mark.parametrize("flags,tolerance", [({"channels_last": True}, 1e-5), ({"amp": True}, 1e-2),
                                             ({"amp": True, "channels_last": True}, 1e-2)],
                         ids=["channels_last", "amp", "amp+channels_last"])
def test_speed_flags_give_the_same_loss(synth_raw, tmp_path, flags, tolerance):
    config = tiny_config(synth_raw, tmp_path)
    models, _, _ = run_step(config, synth_raw)
    models.eval()  # BatchNorm on running statistics: both passes see the same network
    batch = batch_for(config, synth_raw)
    warpers, ssim = Warpers(64, 192, 4), SSIM()
    torch.manual_seed(1)
    reference = float(training_step(models, batch, config, warpers, ssim)[0]["loss"].detach())
    if flags.get("channels_last"):
        models.to(memory_format=torch.channels_last)
    fast_networks = accelerate(dict(models), torch.device("cpu"), amp=flags.get("amp", False),
                               channels_last=flags.get("channels_last", False))
    torch.manual_seed(1)
    fast = float(training_step(fast_networks, batch, config, warpers, ssim)[0]["loss"].detach())
    assert abs(fast - reference) <= tolerance * reference, (fast, reference)


@pytest.mark.slow
def test_compiled_networks_give_the_same_loss(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path)
    models, _, _ = run_step(config, synth_raw)
    models.eval()
    batch, warpers, ssim = batch_for(config, synth_raw), Warpers(64, 192, 4), SSIM()
    torch.manual_seed(1)
    reference = training_step(models, batch, config, warpers, ssim)[0]["loss"].detach()
    torch.manual_seed(1)
    fast = training_step(compile_networks(models), batch, config, warpers, ssim)[0]["loss"].detach()
    assert abs(float(fast) - float(reference)) <= 1e-4 * float(reference)
