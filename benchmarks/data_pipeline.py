"""Data pipeline speed: training samples per second of one worker, as issue 6 defines it.

    python -m benchmarks.data_pipeline [--json out.json] [--data DIR] [--samples 60] [--repeats 5]

Writes synthetic KITTI-size drives (1242 x 375, PNG and JPEG) to a temporary folder unless ``--data`` names one
made earlier (``md2 synth``-style layout with both image types), then measures after a warm-up, single-threaded
like a DataLoader worker, the median over ``--repeats`` runs of ``--samples`` samples:

* training samples (640 x 192, 4 scales, flip and colour jitter with p = 0.5) for mono (frames 0, -1, 1) and
  mono+stereo, from JPEG and from PNG, without and (mono) with the lidar ``depth_gt``;
* the same through a DataLoader with one worker process, batch 12, ``collate_samples`` (what training sees);
* evaluation images (frame 0 at one scale);
* where the time goes for one JPEG frame: decode, the LANCZOS chain, float conversion, colour jitter.

Prints JSON; the reference's figures and issue 6's targets are included for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmarks.common import emit
from md2.data.augment import ColorJitterParams, color_jitter_hwc, lanczos_pyramid, to_float
from md2.data.datasets.images import read_rgb
from md2.data.kitti import KITTIRawDataset
from md2.data.sample import collate_samples
from md2.data.synth import drive_name, generate_dataset

HEIGHT, WIDTH = 192, 640
REFERENCE = {"png_samples_per_s": 7.5, "jpg_samples_per_s": 9.9}
TARGET = {"png_samples_per_s": 22.0, "jpg_samples_per_s": 40.0}


def make_data(root: Path, frames: int) -> Path:
    """One synthetic drive at KITTI's size, as PNG in ROOT/png and JPEG in ROOT/jpg."""
    for ext in ("png", "jpg"):
        generate_dataset(root / ext, drives=1, frames=frames, seed=0, ext=ext, lidar=True)
    return root


def _median_rate(run: Callable[[int], None], count: int, repeats: int) -> float:
    """Median items per second of ``run(count)`` over ``repeats`` timed runs (after one warm-up run)."""
    run(max(2, count // 10))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(count)
        rates.append(count / (time.perf_counter() - start))
    return round(statistics.median(rates), 2)


def _dataset(root: Path, ext: str, lines: list[str], **options) -> KITTIRawDataset:
    options = {"frame_ids": (0, -1, 1), "is_train": True, "load_depth": False, **options}
    return KITTIRawDataset(root / ext.strip("."), lines, HEIGHT, WIDTH, img_ext=ext, **options)


def sample_rates(root: Path, lines: list[str], samples: int, repeats: int) -> dict[str, float]:
    """Samples per second of ``dataset[epoch, index]`` in this (single-threaded) process."""
    cases = {
        "mono_jpg": (".jpg", {}), "mono_png": (".png", {}),
        "mono_stereo_jpg": (".jpg", {"use_stereo": True}), "mono_stereo_png": (".png", {"use_stereo": True}),
        "mono_jpg_with_depth_gt": (".jpg", {"load_depth": True}),
        "mono_png_with_depth_gt": (".png", {"load_depth": True}),
    }
    rates = {}
    for name, (ext, options) in cases.items():
        dataset = _dataset(root, ext, lines, **options)

        def run(count: int, dataset=dataset) -> None:
            for step in range(count):
                dataset[step // len(dataset), step % len(dataset)]

        rates[name] = _median_rate(run, samples, repeats)
    return rates


def loader_rates(root: Path, lines: list[str], samples: int, repeats: int) -> dict[str, float]:
    """Samples per second arriving in the training process from a DataLoader with one worker, batch 12."""
    rates = {}
    for ext in (".jpg", ".png"):
        dataset = _dataset(root, ext, lines)
        loader = DataLoader(dataset, batch_size=12, shuffle=True, num_workers=1, collate_fn=collate_samples,
                            persistent_workers=True, drop_last=True)
        iterator = iter(loader)

        def run(count: int, iterator=iterator, loader=loader) -> None:
            received = 0
            while received < count:
                try:
                    received += len(next(iterator))
                except StopIteration:
                    iterator = iter(loader)

        rates[f"mono_{ext.strip('.')}_one_worker_batch_12"] = _median_rate(run, samples, repeats)
        del iterator, loader
    return rates


def evaluation_rates(root: Path, lines: list[str], samples: int, repeats: int) -> dict[str, float]:
    rates = {}
    for ext in (".jpg", ".png"):
        dataset = _dataset(root, ext, lines, frame_ids=(0,), num_scales=1, is_train=False)

        def run(count: int, dataset=dataset) -> None:
            for step in range(count):
                dataset[step % len(dataset)]

        rates[f"frame0_{ext.strip('.')}_images_per_s"] = _median_rate(run, samples, repeats)
    return rates


def breakdown(root: Path, repeats: int) -> dict[str, float]:
    """Milliseconds per JPEG frame (and per PNG decode) of each stage of a training sample."""
    path = next((root / "jpg").glob("*/*/image_02/data/*.jpg"))
    png = next((root / "png").glob("*/*/image_02/data/*.png"))
    image = read_rgb(path)
    levels = [np.asarray(level) for level in lanczos_pyramid(image, WIDTH, HEIGHT, 4)]
    floats = [to_float(level) for level in levels]
    jitter = ColorJitterParams((0, 1, 2, 3), 1.1, 0.9, 1.1, 0.05)
    stages = {
        "decode_jpg": lambda: read_rgb(path),
        "decode_png": lambda: read_rgb(png),
        "lanczos_chain_4_scales": lambda: lanczos_pyramid(image, WIDTH, HEIGHT, 4),
        "to_float_4_scales": lambda: [to_float(level) for level in levels],
        "colour_jitter_4_scales": lambda: [color_jitter_hwc(level, jitter) for level in floats],
    }
    result = {}
    for name, stage in stages.items():
        stage()
        times = []
        for _ in range(repeats * 4):
            start = time.perf_counter()
            stage()
            times.append(time.perf_counter() - start)
        result[name] = round(1000 * statistics.median(times), 3)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--data", type=Path, help="a folder made by an earlier run (png/ and jpg/ inside)")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # what a DataLoader worker runs with
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as temporary:
        root = args.data or make_data(Path(temporary), frames=14)
        lines = [f"{drive_name(0)} {frame} {side}" for frame in range(1, 13) for side in "lr"]
        results = {
            "size": f"{WIDTH}x{HEIGHT}", "scales": 4, "augmentation": "flip p=0.5, colour jitter p=0.5",
            "threads": 1,
            "samples_per_s": sample_rates(root, lines, args.samples, args.repeats),
            "data_loader": loader_rates(root, lines, 2 * args.samples, args.repeats),
            "evaluation": evaluation_rates(root, lines, args.samples, args.repeats),
            "ms_per_frame": breakdown(root, args.repeats),
            "reference": REFERENCE, "target": TARGET,
        }
    return emit(results, args.json)


if __name__ == "__main__":
    main()
