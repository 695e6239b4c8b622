"""Data pipeline speed: training samples per second of one worker, as issue 6 defines it.

    python -m benchmarks.data_pipeline [--json out.json] [--data DIR] [--samples 60] [--repeats 5]

Writes synthetic KITTI-size drives (1242 x 375, PNG and JPEG) to a temporary folder unless ``--data`` names one
made earlier (``md2 synth``-style layout with both image types), then measures after a warm-up, single-threaded
like a DataLoader worker, the median over ``--repeats`` runs of ``--samples`` samples:

* training samples (640 x 192, 4 scales, flip and colour jitter with p = 0.5) for mono (frames 0, -1, 1) and
  mono+stereo, from JPEG and from PNG, without and (mono) with the lidar ``depth_gt``; and (``*_uint8``) the
  uint8 pyramids that ``--augment-on device`` ships instead (no float conversion, no jitter in the worker);
* the same through a DataLoader with one worker process, batch 12, ``collate_samples`` (what training sees);
* ``--augment-on device``'s finishing on the current device (float conversion and colour jitter of one batch:
  4 samples on the CPU with torch's threads, as the trainer; 12 on CUDA; every sample jittered and none), and
  the bytes per batch of 12 that cross from a worker to the trainer on each path;
* ``--resize-cache``: a first pass over every sample from an empty cache, then samples with every pyramid
  stored (mono and mono+stereo, float and uint8, and through a DataLoader with one worker, batch 12);
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

from benchmarks.common import emit, median_seconds
from md2.data.augment import ColorJitterParams, color_jitter_hwc, lanczos_pyramid, to_float
from md2.data.datasets.images import read_rgb
from md2.data.device_augment import finish_batch
from md2.data.kitti import KITTIRawDataset
from md2.data.resize_cache import ResizeCache
from md2.data.sample import Batch, collate_samples
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
        "mono_jpg_uint8": (".jpg", {"uint8_images": True}), "mono_png_uint8": (".png", {"uint8_images": True}),
        "mono_stereo_jpg_uint8": (".jpg", {"use_stereo": True, "uint8_images": True}),
        "mono_stereo_png_uint8": (".png", {"use_stereo": True, "uint8_images": True}),
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
    for ext, uint8 in ((".jpg", False), (".png", False), (".jpg", True), (".png", True)):
        rates[f"mono_{ext.strip('.')}_one_worker_batch_12{'_uint8' if uint8 else ''}"] = _one_worker_rate(
            _dataset(root, ext, lines, uint8_images=uint8), samples, repeats)
    return rates


def _one_worker_rate(dataset: KITTIRawDataset, samples: int, repeats: int) -> float:
    """Median samples per second that a DataLoader with one persistent worker, batch 12, delivers."""
    loader = DataLoader(dataset, batch_size=12, shuffle=True, num_workers=1, collate_fn=collate_samples,
                        persistent_workers=True, drop_last=True)
    batches = iter(loader)

    def run(count: int) -> None:
        nonlocal batches
        received = 0
        while received < count:
            try:
                received += len(next(batches))
            except StopIteration:
                batches = iter(loader)

    return _median_rate(run, samples, repeats)


def resize_cache_rates(root: Path, lines: list[str], samples: int, repeats: int, folder: Path) -> dict:
    """``--resize-cache``: samples per second of a first pass over every sample from an empty cache (each
    image resized once, stored, and read back by the samples that share it, as in a first epoch), then with
    every pyramid stored (later epochs), alone and through a DataLoader with one worker, batch 12."""
    rates = {}
    for ext in (".jpg", ".png"):
        name = ext.strip(".")
        dataset = _cached(root, ext, lines, folder / name)
        start = time.perf_counter()
        for index in range(len(dataset)):
            dataset[0, index]
        rates[f"mono_{name}_first_pass"] = round(len(dataset) / (time.perf_counter() - start), 2)
        for modality, suffix, options in (("mono", "", {}), ("mono", "_uint8", {"uint8_images": True}),
                                          ("mono_stereo", "", {"use_stereo": True})):
            dataset = _cached(root, ext, lines, folder / name, **options)

            def run(count: int, dataset=dataset) -> None:
                for step in range(count):
                    dataset[step // len(dataset), step % len(dataset)]

            run(len(dataset))  # the stereo images' pyramids too
            rates[f"{modality}_{name}{suffix}_stored"] = _median_rate(run, samples, repeats)
    for uint8 in (False, True):
        dataset = _cached(root, ".jpg", lines, folder / "jpg", uint8_images=uint8)
        rates[f"mono_jpg_stored_one_worker_batch_12{'_uint8' if uint8 else ''}"] = _one_worker_rate(
            dataset, 2 * samples, repeats)
    return rates


def _cached(root: Path, ext: str, lines: list[str], cache: Path, **options) -> KITTIRawDataset:
    dataset = _dataset(root, ext, lines, **options)
    dataset.resize_cache = ResizeCache(cache, WIDTH, HEIGHT, dataset.num_scales)
    return dataset


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
        result[name] = round(1000 * median_seconds(stage, repeats=repeats * 4), 3)
    return result


def device_finishing(root: Path, lines: list[str], repeats: int) -> dict:
    """Milliseconds to finish one uint8 batch on the current device (``finish_batch``: float conversion and
    colour jitter), with every sample jittered (the most work) and with none (the conversion alone)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = 12 if device.type == "cuda" else 4
    result: dict = {"device": str(device), "batch": size, "threads": torch.get_num_threads()}
    jitter = ColorJitterParams((3, 0, 2, 1), 1.15, 0.85, 1.1, 0.07)
    for name, options in (("mono", {}), ("mono_stereo", {"use_stereo": True})):
        dataset = _dataset(root, ".jpg", lines, uint8_images=True, **options)
        shipped = dataset.__getitems__(list(range(size))).to(device)
        for case, jitters in (("all_jittered", [jitter] * size), ("none_jittered", [None] * size)):
            batch = Batch(**{**shipped.__dict__, "jitter": jitters})

            def finish(batch=batch) -> None:
                finish_batch(batch)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            result[f"{name}_ms_{case}"] = round(1000 * median_seconds(finish, repeats=repeats * 2), 2)
    return result


def bytes_per_batch(root: Path, lines: list[str]) -> dict[str, int]:
    """Bytes of one training batch of 12 that cross from a worker to the trainer on each path: the images,
    and everything (with the lidar ``depth_gt`` training loads when the split has it). The workers' path holds
    a jittered copy whenever one of the 12 samples is jittered (all batches but 1 in 4096), as this one is."""
    result = {}
    for name, options in (("mono", {}), ("mono_stereo", {"use_stereo": True})):
        for path, uint8 in (("workers", False), ("device", True)):
            dataset = _dataset(root, ".jpg", lines, uint8_images=uint8, load_depth=True, **options)
            batch = dataset.__getitems__(list(range(12)))
            assert any(jitter is not None for jitter in batch.jitter)
            images = [image for stack in (batch.color, batch.color_aug) for scales in stack.values()
                      for image in scales]
            result[f"{name}_{path}_images"] = _nbytes(images)
            result[f"{name}_{path}_total"] = _nbytes(images + [batch.depth_gt, batch.stereo_T, batch.index,
                                                              batch.flipped, *batch.K, *batch.inv_K])
    return result


def _nbytes(tensors: list[torch.Tensor | None]) -> int:
    """Bytes of the distinct tensors (color_aug shares color's tensors where nothing is jittered)."""
    return sum(t.nbytes for t in {id(t): t for t in tensors if t is not None}.values())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--data", type=Path, help="a folder made by an earlier run (png/ and jpg/ inside)")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        root = args.data or make_data(Path(temporary), frames=14)
        lines = [f"{drive_name(0)} {frame} {side}" for frame in range(1, 13) for side in "lr"]
        # First, with the training process's threads (switching torch's thread pool back from 1 made the
        # timings erratic here).
        finishing = device_finishing(root, lines, args.repeats)
        torch.set_num_threads(1)  # what a DataLoader worker runs with
        cv2.setNumThreads(1)
        results = {
            "size": f"{WIDTH}x{HEIGHT}", "scales": 4, "augmentation": "flip p=0.5, colour jitter p=0.5",
            "threads": 1,
            "samples_per_s": sample_rates(root, lines, args.samples, args.repeats),
            "data_loader": loader_rates(root, lines, 2 * args.samples, args.repeats),
            "resize_cache": resize_cache_rates(root, lines, args.samples, args.repeats, Path(temporary, "cache")),
            "evaluation": evaluation_rates(root, lines, args.samples, args.repeats),
            "ms_per_frame": breakdown(root, args.repeats),
            "bytes_per_batch_of_12": bytes_per_batch(root, lines),
            "device_finishing": finishing,
            "reference": REFERENCE, "target": TARGET,
        }
    return emit(results, args.json)


if __name__ == "__main__":
    main()
