"""Shared fixtures: synthetic KITTI datasets written by md2's own generator (md2.data.synth).

``synth_raw``: 2 drives x 8 frames at 256 x 80 (seed 0), with everything: raw layout, lidar, rendered depth,
depth-benchmark PNGs and the odometry layout (sequences 09 and 10, poses). Splits in ROOT/splits/synth
(``2011_09_26/2011_09_26_drive_0001_sync 3 l``, frames 1..6) and ROOT/splits/odom (train/val and
test_files_09.txt / test_files_10.txt). The exact poses: ``drive_poses(**SYNTH_RAW_POSES, index=0)``.
``synth_full_size``: 1 drive x 3 frames at KITTI's 1242 x 375 with lidar and depth-benchmark PNGs (~2 s, only
built when a test asks for it).

Both are session-scoped and shared: read-only for tests (copy before changing anything).
"""

from __future__ import annotations

import os
from pathlib import Path

# One torch thread per process (this one, md2 subprocesses, loader workers, DDP ranks), unless the caller chose:
# the tests' tensors are tiny, and on the 2-core CI machine two OpenMP threads spend more time waking each other
# than computing (a 3x3 sum on a 3 x 66 x 194 block: 0.07 ms on one thread, 2-15 ms on two whenever another
# process holds a core), and tests that run md2 processes side by side (DDP ranks, the bad-input table) would
# oversubscribe the cores. Set before torch is first imported, which reads it once.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# One cache of exported weights folders for the session (md2.core.engine): its files are keyed by the weights'
# contents, so tests that give md2 a home of their own (MD2_HOME) still share it, and a model is exported once.
if "MD2_ONNX_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["MD2_ONNX_CACHE"] = tempfile.mkdtemp(prefix="md2-tests-onnx-")
    atexit.register(shutil.rmtree, os.environ["MD2_ONNX_CACHE"], True)

import multiprocessing  # noqa: E402

import pytest  # noqa: E402

from md2.data.synth import SynthOptions, generate_dataset  # noqa: E402

# Loader workers started in this process (md2's DataLoaders and process pools use the forkserver) are forked from
# the session's one forkserver: it imports torch and torchvision once (besides __main__, its default), instead of
# every worker importing them afresh (about 6 s of CPU each). What a worker does is unchanged; md2 processes that
# tests start have their own forkserver, as a user's would.
multiprocessing.set_forkserver_preload(["__main__", "torch", "torchvision"])

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SYNTH_RAW = SynthOptions(drives=2, frames=8, width=256, height=80, seed=0, depth_benchmark=True, odometry=True)
"""The options ``synth_raw`` is written with."""
SYNTH_RAW_POSES = {"seed": SYNTH_RAW.seed, "frames": SYNTH_RAW.frames}
SYNTH_FULL_SIZE = SynthOptions(drives=1, frames=3, width=1242, height=375, seed=0, depth_benchmark=True)


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory) -> Path:
    """Root of the small synthetic dataset described in the module docstring (~1 s to write)."""
    return generate_dataset(tmp_path_factory.mktemp("synth_raw"), SYNTH_RAW)


@pytest.fixture(scope="session")
def synth_full_size(tmp_path_factory) -> Path:
    """Root of one synthetic drive of 3 frames at 1242 x 375 (lidar, rendered depth, depth-benchmark PNGs)."""
    return generate_dataset(tmp_path_factory.mktemp("synth_full_size"), SYNTH_FULL_SIZE)


@pytest.fixture
def shared_dir() -> Path:
    """../shared beside the checkout; tests using it skip when it is absent."""
    if not SHARED.exists():
        pytest.skip("../shared not present")
    return SHARED
