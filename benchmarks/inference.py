"""Depth inference speed: images per second of encoder + decoder, and ``md2 predict`` end to end.

    python -m benchmarks.inference [--json out.json] [--repeats 5]

Networks are randomly initialised ResNet-18 depth models (the speed does not depend on the weights). For
640x192 and 1024x320, batch 1 and batch 4, fp32 (the reference's path), auto (md2 predict's default:
channels_last, and bf16 where native) and bf16 (autocast + channels_last; only where the machine computes bf16
natively unless --bf16-anyway: emulated bf16 is ~100x slower and tells nothing), the median rate and its share
of the measured matmul peak. ``md2 predict`` itself: benchmarks.predict.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import (DEPTH_GFLOP_640x192, emit, machine, matmul_gflops, median_seconds, rate,
                               share_of_peak)
from md2.core.inference import DepthPredictor, fast_bf16
from md2.core.networks import DepthDecoder, ResnetEncoder

SIZES = ((640, 192), (1024, 320))
BATCHES = (1, 4)
REFERENCE = {"depth_640x192_batch_1_fp32_images_per_s": 7.9}
TARGET = {"depth_640x192_images_per_s": 15.0}


def network_rates(repeats: int, precisions: list[str], native_bf16: bool) -> dict[str, dict]:
    """Images per second of the depth network for each size, batch and precision, with its GFLOP per image."""
    results = {}
    for width, height in SIZES:
        gflop = DEPTH_GFLOP_640x192 * (width * height) / (640 * 192)
        for precision in precisions:
            predictor = _random_predictor(height, width, precision)
            for batch in BATCHES:
                images = torch.rand(batch, 3, height, width)
                seconds = median_seconds(lambda: predictor.disparity(images), repeats=repeats, warmup=2)
                images_per_s = rate(batch, seconds)
                computes_in = "bf16" if precision == "bf16" or (precision == "auto" and native_bf16) else "fp32"
                results[f"{width}x{height}_batch_{batch}_{precision}"] = {
                    "images_per_s": images_per_s, "precision": computes_in, "gflop_per_image": round(gflop, 2)}
    return results


def _matmul_peaks(native_bf16: bool) -> dict[str, float]:
    """fp32 and bf16 matmul peaks (bf16 measured small where it is emulated: it is then ~100x slower)."""
    return {"fp32": matmul_gflops(torch.float32),
            "bf16": matmul_gflops(torch.bfloat16, size=2048 if native_bf16 else 256, repeats=7 if native_bf16 else 2)}


def _random_modules() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    encoder = ResnetEncoder(18)
    return {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)}


def _random_predictor(height: int, width: int, precision: str) -> DepthPredictor:
    modules = _random_modules()
    return DepthPredictor(modules["encoder"].eval(), modules["depth"].eval(), height, width, False,
                          torch.device("cpu"), precision=precision)


def _street_photo(seed: int) -> Image.Image:
    """A KITTI-size picture with texture (JPEG decode time depends on content)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(220, 40, 375)[:, None, None]
    noise = rng.normal(0, 25, (375 // 3 + 1, 1242 // 3 + 1, 3)).repeat(3, 0).repeat(3, 1)[:375, :1242]
    return Image.fromarray(np.clip(rows + noise, 0, 255).astype(np.uint8))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16-anyway", action="store_true", help="measure bf16 even where it is emulated")
    args = parser.parse_args(argv)
    native = fast_bf16(torch.device("cpu"))
    # fp32: the reference's path; auto: what md2 predict runs by default (channels_last, bf16 where native).
    precisions = ["fp32", "auto"] + (["bf16"] if native or args.bf16_anyway else [])
    before = _matmul_peaks(native)
    network = network_rates(args.repeats, precisions, native)
    # This VM's peak drifts by up to 1.5x within minutes (once measured at 76 GFLOP/s just before the network
    # ran above it): measured before and after the networks, the higher figure is the peak.
    after = _matmul_peaks(native)
    peaks = {precision: max(before[precision], after[precision]) for precision in before}
    for figures in network.values():
        figures["share_of_matmul_peak"] = share_of_peak(figures["images_per_s"], figures["gflop_per_image"],
                                                        peaks[figures["precision"]])
    results = {"machine": machine(), "matmul_gflops": peaks, "bf16_native": native, "network": network,
               "reference": REFERENCE, "target": TARGET}
    return emit(results, args.json)


if __name__ == "__main__":
    main()
