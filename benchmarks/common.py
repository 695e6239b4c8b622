"""What every benchmark shares: timing (medians after warm-up), the machine's matmul peak, peak memory."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from md2.allocator import ENVIRONMENT, keep_freed_memory

# As every md2 command does (md2.cli.app.main): the figures are what a user gets. Set here, at the import of
# every benchmark module, before any child process or loader worker starts.
# A section run by benchmarks.run inherits the settings through the environment (keep_freed_memory then
# leaves them to glibc, which read them at start-up): in effect all the same.
KEEPS_FREED_MEMORY = keep_freed_memory() or all(os.environ.get(name) == value for name, value in ENVIRONMENT.items())

DEPTH_GFLOP_640x192 = 16.0
"""Cost of one depth-network forward pass (ResNet-18 encoder + decoder) at 640x192, from issue 6."""


def timed_runs(run: Callable[[], object], repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall times of ``run()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(run: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``run()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    return statistics.median(timed_runs(run, repeats, warmup))


def rate(items: int, seconds: float) -> float:
    """Items per second, rounded for printing."""
    return round(items / seconds, 3)


def matmul_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 7) -> float:
    """The machine's matrix-multiply peak (GFLOP/s) in ``dtype`` with torch's current threads: the best of
    ``repeats`` timed products (a peak, so the best run, not the median), the ceiling any convolution network
    can approach here."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return round(2 * size**3 / min(times) / 1e9, 1)


def share_of_peak(images_per_s: float, gflop_per_image: float, peak_gflops: float) -> float:
    """Fraction of the measured matmul peak a rate of ``images_per_s`` represents."""
    return round(images_per_s * gflop_per_image / peak_gflops, 3)


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib * (1 if sys.platform != "darwin" else 1 / 1024) / 1024**2, 3)


def machine() -> dict:
    """What the figures were measured on."""
    cuda = torch.cuda.is_available()
    return {
        "cpu": _cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_bf16_native": bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)()
                                and _mkldnn_bf16_supported()),
        "keeps_freed_memory": KEEPS_FREED_MEMORY,
    }


def _mkldnn_bf16_supported() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_child(module: str, args: list[str], timeout: float = 3600) -> dict:
    """Run ``python -m module args`` (a benchmark measuring one case in a fresh process, so its peak memory
    is its own) and return the JSON object it prints last."""
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def emit(results: dict, json_path=None) -> dict:
    """Print ``results`` as JSON (and write them to ``json_path`` when given); returns them."""
    text = json.dumps(results, indent=2)
    print(text)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as file:
            file.write(text + "\n")
    return results
