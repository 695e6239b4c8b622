"""Inference precisions: bf16 (autocast + channels_last) agrees with fp32 within 1%; auto picks by hardware."""

from __future__ import annotations

import pytest
import torch

from md2.core.inference import DepthPredictor, fast_bf16, resolve_precision
from md2.core.networks import DepthDecoder, ResnetEncoder
from md2.errors import UsageError


def predictor(precision: str) -> DepthPredictor:
    torch.manual_seed(0)
    encoder = ResnetEncoder(18).eval()
    decoder = DepthDecoder(encoder.num_ch_enc).eval()
    return DepthPredictor(encoder, decoder, 64, 192, False, torch.device("cpu"), precision=precision)


def street_batch(batch: int = 2) -> torch.Tensor:
    """Images with structure (a bright sky over darker ground, texture) so the disparities vary."""
    generator = torch.Generator().manual_seed(1)
    rows = torch.linspace(0.9, 0.2, 64)[:, None].expand(64, 192)
    return (rows + 0.1 * torch.rand(batch, 3, 64, 192, generator=generator)).clamp(0, 1)


def test_bf16_disparities_are_within_one_percent_of_fp32():
    images = street_batch()
    exact = predictor("fp32").disparity(images)
    fast = predictor("bf16").disparity(images)
    assert fast.dtype == torch.float32 and fast.shape == exact.shape == (2, 1, 64, 192)
    relative = ((fast - exact).abs() / exact).max().item()
    assert relative < 0.01, relative
    assert not torch.equal(fast, exact)  # bf16 really ran


def test_auto_precision_follows_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if fast_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(UsageError, match="fp16"):
        resolve_precision("fp16", cpu)


def test_python_api_takes_a_precision(tmp_path):
    from md2.api import load_model
    from md2.core.checkpoint import save_weights_folder

    reference = predictor("fp32")
    folder = save_weights_folder(tmp_path / "weights_0", {"encoder": reference.encoder, "depth": reference.decoder},
                                 height=64, width=192, use_stereo=False)
    images = street_batch(1)
    with torch.inference_mode():
        exact = load_model(folder, device="cpu")(images)
        fast = load_model(folder, device="cpu", precision="bf16")(images)
    assert torch.equal(exact, reference.disparity(images))
    assert ((fast - exact).abs() / exact).max().item() < 0.01


def test_auto_on_a_cpu_without_bf16_is_fp32_channels_last_within_1e_5():
    images = street_batch()
    exact = predictor("fp32")
    fast = predictor("auto")
    assert fast.channels_last and not exact.channels_last
    if fast.precision == "fp32":
        torch.testing.assert_close(fast.disparity(images), exact.disparity(images), atol=1e-5, rtol=0)
