"""md2 predict --point-cloud's own work, without the network: one large photo's cloud, and a video's fusion.

    python -m benchmarks.point_cloud [--json out.json] [--width 4000 --height 3000] [--frames 50]

A photo of WIDTH x HEIGHT (a smooth synthetic depth, noise colours): back-projection, the binary PLY and the
rendered NAME_cloud.png (md2.core.pointcloud.photo.write_cloud_files) at strides 1 and 4, seconds and the
process's peak memory growth; then ``--frames`` KITTI-size frames (1242 x 375, stride 2) moving 1 m forward
each, fused at 0.1 m voxels: frames/s of first_per_voxel + VoxelCloud.add, and the voxels kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit, machine, peak_rss_gb
from md2.core.pointcloud.backproject import CameraPoints
from md2.core.pointcloud.fuse import VoxelCloud, first_per_voxel, points_in_first_camera
from md2.core.pointcloud.intrinsics import CameraChoice
from md2.core.pointcloud.photo import write_cloud_files


def photo(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.linspace(0.05, 1.0, height, dtype=np.float32)[:, None]
    depth = 1.65 * 1.92 * height / np.maximum(rows * height * 0.5 * 1.92, 1.0) + np.zeros((1, width), np.float32)
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.minimum(depth, 80.0).astype(np.float32), rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    results: dict = {"machine": machine()}
    depth, rgb = photo(args.width, args.height)
    camera = CameraChoice().resolve(args.width, args.height)
    with tempfile.TemporaryDirectory() as folder:
        for stride in (4, 1):
            before = peak_rss_gb()
            start = time.perf_counter()
            cloud = CameraPoints(depth, rgb, camera, stride)
            ply, _ = write_cloud_files(Path(folder) / f"s{stride}", cloud, ["benchmark"])
            results[f"photo_{args.width}x{args.height}_stride{stride}"] = {
                "seconds": round(time.perf_counter() - start, 3), "points": cloud.count(),
                "ply_mb": round(ply.stat().st_size / 1e6, 1), "peak_rss_growth_gb": round(peak_rss_gb() - before, 3)}
    kitti_depth, kitti_rgb = photo(1242, 375)
    kitti = CameraChoice().resolve(1242, 375)
    fused = VoxelCloud(0.1)
    start = time.perf_counter()
    for frame in range(args.frames):
        to_first = np.eye(4)
        to_first[2, 3] = float(frame)
        fused.add(*first_per_voxel(*points_in_first_camera(CameraPoints(kitti_depth, kitti_rgb, kitti, 2), to_first),
                                   0.1))
    seconds = time.perf_counter() - start
    results["fusion_1242x375_stride2_voxel0.1"] = {"frames": args.frames,
                                                   "frames_per_s": round(args.frames / seconds, 2),
                                                   "voxels": len(fused), "peak_rss_gb": peak_rss_gb()}
    emit(results, args.json)


if __name__ == "__main__":
    main()
