"""Data preparation and evaluation commands, end to end: export-gt, convert-jpeg, evaluate-depth.

    python -m benchmarks.commands [--json out.json] [--frames 100] [--data DIR]

Writes synthetic KITTI drives (1242x375 PNG with 64-beam velodyne scans) and a split of ``--frames`` test
lines, then times the real ``md2`` commands as a user runs them (process start included) and the core
functions in this process: ``md2 export-gt`` frames/s (and export_gt in this process, all cores), lidar to depth
map alone on a 120k-point scan (the reference's generate_depth_map figure), ``md2 evaluate-depth`` on the split
with a ResNet-18 model, and ``md2 convert-jpeg`` images/s (last: it replaces the PNGs).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import emit, machine, median_seconds, rate
from md2.core.checkpoint import save_weights_folder
from md2.core.networks import DepthDecoder, ResnetEncoder
from md2.data.calib import generate_depth_map, one_blas_thread
from md2.data.groundtruth import export_gt
from md2.data.synth import SynthOptions, drive_name, generate_dataset

REFERENCE = {"lidar_to_depth_map_frames_per_s": 79.0}
TARGET = {"export_gt_frames_per_s": 3 * 79.0}
SPLIT = "bench"


def make_data(root: Path, frames: int) -> Path:
    """Two KITTI-size drives with scans, and split ``bench`` whose test list has ``frames`` lines."""
    per_drive = frames // 2 + 2
    data = generate_dataset(root, SynthOptions(drives=2, frames=per_drive, seed=0, lidar=True))
    lines = [f"{drive_name(d)} {i} l" for i in range(1, per_drive - 1) for d in range(2)][:frames]
    (data / "splits" / SPLIT).mkdir(parents=True, exist_ok=True)
    (data / "splits" / SPLIT / "test_files.txt").write_text("\n".join(lines) + "\n")
    return data


def md2(*args: str) -> float:
    """Seconds the ``md2`` command takes (it must succeed)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "md2", *args, "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def depth_map_rate(data: Path, repeats: int) -> dict:
    """generate_depth_map on a 120k-point scan (KITTI's typical count) with a drive's calibration."""
    calib = next(data.glob("*/calib_cam_to_cam.txt")).parent
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-40, 80, 120_000), rng.uniform(-40, 40, 120_000),
                              rng.uniform(-2, 2, 120_000), rng.uniform(0, 1, 120_000)]).astype(np.float32)
    scan = data / "scan_120k.bin"
    points.tofile(scan)
    with one_blas_thread():  # as export-gt and loader workers run it
        seconds = median_seconds(lambda: generate_depth_map(calib, scan), repeats=repeats * 4, warmup=2)
    default = median_seconds(lambda: generate_depth_map(calib, scan), repeats=repeats * 4, warmup=2)
    scan.unlink()
    return {"lidar_to_depth_map_frames_per_s": rate(1, seconds),
            "lidar_to_depth_map_default_blas_threads_frames_per_s": rate(1, default)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        start = time.perf_counter()
        data = make_data(root / "data", args.frames)
        synth_seconds = time.perf_counter() - start
        results: dict = {"machine": machine(), "frames": args.frames,
                         "synth_frames_per_s": rate(2 * (args.frames // 2 + 2), synth_seconds)}
        results.update(depth_map_rate(data, args.repeats))
        splits = str(data / "splits")
        seconds = md2("export-gt", "--data-path", str(data), "--split", SPLIT, "--splits-dir", splits)
        results["export_gt_command_frames_per_s"] = rate(args.frames, seconds)  # with Python and import start
        seconds = median_seconds(lambda: export_gt(data, SPLIT, splits_dir=splits, progress=False),
                                 repeats=args.repeats, warmup=1)
        results["export_gt_frames_per_s"] = rate(args.frames, seconds)
        torch.manual_seed(0)
        encoder = ResnetEncoder(18)
        models = {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)}
        weights = save_weights_folder(root / "weights", models, height=192, width=640, use_stereo=False)
        seconds = md2("evaluate-depth", "--load-weights-folder", str(weights), "--eval-mono", "--data-path",
                      str(data), "--eval-split", SPLIT, "--splits-dir", splits, "--png")
        results["evaluate_depth_frames_per_s"] = rate(args.frames, seconds)
        pngs = len(list(data.glob("*/*/image_0[23]/data/*.png")))
        seconds = md2("convert-jpeg", str(data))
        results["convert_jpeg_images_per_s"] = rate(pngs, seconds)
        results["convert_jpeg_images"] = pngs
    results.update({"reference": REFERENCE, "target": TARGET})
    return emit(results, args.json)


if __name__ == "__main__":
    main()
