"""Learning check: a few hundred steps on synthetic scenes make the depth clearly better than untrained.

Slow (minutes on a CPU): ``pytest -m slow tests/core/train/test_learning.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from md2.core.checkpoint import load_depth_model
from md2.core.geometry import disp_to_depth
from md2.core.metrics import compute_depth_errors
from md2.core.train.loop import run_training, seed_everything
from md2.core.train.models import build_models
from md2.core.train.state import read_state
from md2.data.kitti import KITTIRawDataset
from md2.data.splits import read_split_file
from md2.data.synth import SynthOptions, generate_dataset
from tests.core.train.helpers import tiny_config


def depth_abs_rel(encoder, decoder, data, lines, height=64, width=192) -> float:
    """Median-scaled abs_rel of the network's depth against the rendered depth (1e-3 < depth < 80)."""
    dataset = KITTIRawDataset(data, lines, height, width, (0,), num_scales=1, img_ext=".png", load_depth=False)
    errors = []
    with torch.no_grad():
        for index, line in enumerate(lines):
            image = dataset[index].color[0][0][None]
            disp = decoder(encoder(image))[0]
            _, depth = disp_to_depth(disp, 0.1, 100)
            truth = np.load(data / line.folder / "rendered_depth" / "image_02" / f"{line.frame:010d}.npy")
            truth = torch.nn.functional.interpolate(torch.from_numpy(truth)[None, None], (height, width),
                                                    mode="nearest")[0, 0].numpy()
            pred = depth[0, 0].numpy()
            mask = (truth > 1e-3) & (truth < 80)
            pred = pred[mask] * np.median(truth[mask]) / np.median(pred[mask])
            errors.append(compute_depth_errors(truth[mask], np.clip(pred, 1e-3, 80)).abs_rel)
    return float(np.mean(errors))


@pytest.mark.slow
def test_training_on_synthetic_scenes_learns_depth(tmp_path):
    data = generate_dataset(tmp_path / "data", SynthOptions(drives=4, frames=24, width=256, height=80, seed=7))
    config = tiny_config(data, tmp_path, modality="mono+stereo", batch_size=4, num_epochs=5, learning_rate=2e-4,
                         scheduler_step_size=100)
    seed_everything(config.run.seed)
    untrained = build_models(config)  # the very networks the run starts from (same seed, same order)
    log = run_training(config)
    lines = read_split_file(data / "splits" / "synth" / "test_files.txt")
    before = depth_abs_rel(untrained["encoder"].eval(), untrained["depth"].eval(), data, lines)
    after = depth_abs_rel(*load_depth_model(log / "models" / "weights_4")[:2], data, lines)
    print(f"abs_rel untrained {before:.3f} -> trained {after:.3f} ({read_state(log).progress.step} steps)")
    assert after < 0.75 * before
