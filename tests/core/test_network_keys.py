"""md2's networks produce exactly the parameter names and shapes of the official Monodepth2 checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from md2.core.networks import DepthDecoder, PoseCNN, PoseDecoder, ResnetEncoder

KEY_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "official_checkpoint_keys.txt"
PLAIN_VALUES = {"height", "width", "use_stereo"}


def official_blocks() -> dict[str, dict[str, str]]:
    """Heading of each block in the key file -> {key: shape}."""
    if not KEY_FILE.exists():
        pytest.skip(f"{KEY_FILE} not present")
    blocks: dict[str, dict[str, str]] = {}
    current = None
    for line in KEY_FILE.read_text().splitlines():
        if line.startswith("## "):
            current = blocks.setdefault(line[3:], {})
        elif current is not None and "\t" in line:
            key, shape = line.split("\t")
            if key not in PLAIN_VALUES:
                current[key] = shape
    return blocks


def shapes(module: torch.nn.Module) -> dict[str, str]:
    return {k: "(scalar)" if v.dim() == 0 else "x".join(map(str, v.shape)) for k, v in module.state_dict().items()}


def block(prefix: str) -> dict[str, str]:
    matches = [keys for heading, keys in official_blocks().items() if heading.startswith(prefix)]
    assert len(matches) == 1, prefix
    return matches[0]


def test_depth_encoder_keys_match_official():
    assert shapes(ResnetEncoder(18)) == block("encoder.pth (ResNet-18")


def test_depth_decoder_keys_match_official():
    assert shapes(DepthDecoder(ResnetEncoder(18).num_ch_enc)) == block("depth.pth")


def test_pose_encoder_keys_match_official():
    assert shapes(ResnetEncoder(18, num_input_images=2)) == block("pose_encoder.pth")


def test_pose_decoder_keys_match_official():
    decoder = PoseDecoder(ResnetEncoder(18).num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)
    assert shapes(decoder) == block("pose.pth (pose decoder")


def test_posecnn_keys_match_official():
    assert shapes(PoseCNN(2)) == block("pose.pth when pose_model_type=posecnn")


def test_resnet50_first_keys_match_official():
    expected = block("encoder.pth for ResNet-50")
    got = shapes(ResnetEncoder(50))
    assert expected and all(got[key] == shape for key, shape in expected.items())
