"""The first CPU training step's memory, faulted in while torch is still being imported (md2.allocator).

Importing torch keeps one core busy for 1.5-2 s; the first step then writes a couple of gigabytes of fresh
memory whose page faults cost it 0.4-0.6 s on the 2-core CI machine. :func:`start_prefault`, called before the
import, has the other core fault that memory in meanwhile (see the README's Performance section). Nothing here
imports torch: the point is to run before it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from md2.allocator import prefault_heap
from md2.core.train.config import TrainConfig, build_config
from md2.errors import MD2Error

HEAP_BYTES_PER_SAMPLE_PIXEL = {2: 3200, 3: 4500}
"""Fresh heap per sample and input pixel of a ResNet-18 fp32 run's first steps, by frames per sample (2:
stereo; 3 or more: mono, mono+stereo), a little below what was measured at 640x192 (faulted pages over a
step, a log with validation and two more steps: stereo 3.35 KB, mono 4.74, mono+stereo 5.14; mono at
320x96 6.3). Under-estimating leaves some faults to the step; over-estimating would hold unused memory."""
MEMORY_SHARE = 4
"""At most 1 / MEMORY_SHARE of the memory available now is faulted in."""
GPU_DRIVER_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd")
"""With --device auto, any of these means training will probably run on a GPU: nothing is faulted in."""


def expected_heap_bytes(config: TrainConfig) -> int:
    """Fresh host memory the first steps of ``config`` allocate when they run on the CPU (0 on a GPU)."""
    if not _trains_on_cpu(config.run.device):
        return 0
    per_pixel = HEAP_BYTES_PER_SAMPLE_PIXEL[2 if len(config.frame_ids) <= 2 else 3]
    if config.run.amp:
        per_pixel //= 2  # bf16 activations
    return per_pixel * config.optim.batch_size * config.data.height * config.data.width


def start_prefault(config: TrainConfig) -> threading.Thread | None:
    """Start faulting in :func:`expected_heap_bytes` (capped by the available memory); the thread or None."""
    nbytes = min(expected_heap_bytes(config), _available_memory() // MEMORY_SHARE)
    return prefault_heap(nbytes)


def start_prefault_for_run(run_dir: Path | str) -> threading.Thread | None:
    """:func:`start_prefault` for resuming the run in ``run_dir``, from the options it saved (RUN/opt.yaml).
    Nothing where they cannot be read: resuming reports that run folder itself."""
    try:
        config = build_config(config_file=Path(run_dir).expanduser() / "opt.yaml")
    except MD2Error:
        return None
    return start_prefault(config)


def _trains_on_cpu(device: str) -> bool:
    if device == "cpu":
        return True
    return device == "auto" and not any(Path(name).exists() for name in GPU_DRIVER_FILES)


def _available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 where it cannot be read)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
