"""export-gt on real KITTI scans: the ten frames of ../shared/kitti_real, each listed ``--repeat`` times.

    python -m benchmarks.export_gt_real [--json out.json] [--repeat 20] [--repeats 5] [--jobs N]

Prints JSON: ``export_gt`` frames/s in this process (median of ``--repeats`` runs after one warm-up, ``--jobs``
threads, default all cores), its CPU milliseconds per frame with one job (median), and ``generate_depth_map``
frames/s on one thread (the real scans, vel_depth as export-gt). The real data is not copied: the split is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit, machine, median_seconds, rate
from md2.data.calib import generate_depth_map, one_blas_thread
from md2.data.groundtruth import export_gt

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "kitti_real"
DRIVE = "2011_09_26/2011_09_26_drive_0060_sync"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--data", type=Path, default=REAL, help="the kitti_real folder")
    parser.add_argument("--repeat", type=int, default=20, help="times each of the ten frames is listed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    scans = sorted((args.data / DRIVE / "velodyne_points" / "data").glob("*.bin"))
    if not scans:
        raise SystemExit(f"no scans under {args.data}")
    lines = [f"{DRIVE} {int(scan.stem)} l" for _ in range(args.repeat) for scan in scans]
    with tempfile.TemporaryDirectory() as temporary:
        splits = Path(temporary)
        (splits / "real").mkdir()
        (splits / "real" / "test_files.txt").write_text("\n".join(lines) + "\n")
        seconds = median_seconds(lambda: export_gt(args.data, "real", splits_dir=splits, jobs=args.jobs,
                                                   progress=False), repeats=args.repeats, warmup=1)
        # CPU time of one job (one thread): steadier than wall time on a machine shared with other work.
        cpu = []
        for _ in range(args.repeats):
            start = time.process_time()
            export_gt(args.data, "real", splits_dir=splits, jobs=1, progress=False)
            cpu.append(time.process_time() - start)
    calib = args.data / DRIVE.split("/")[0]
    with one_blas_thread():
        one = median_seconds(lambda: [generate_depth_map(calib, scan, vel_depth=True, dtype=np.float32)
                                      for scan in scans], repeats=args.repeats, warmup=1)
    results = {"machine": machine(), "frames": len(lines),
               "export_gt_real_frames_per_s": rate(len(lines), seconds),
               "export_gt_real_one_job_cpu_ms_per_frame": round(1e3 * statistics.median(cpu) / len(lines), 3),
               "depth_map_real_one_thread_frames_per_s": rate(len(scans), one)}
    return emit(results, args.json)


if __name__ == "__main__":
    main()
