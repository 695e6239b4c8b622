"""``md2 convert-jpeg`` through the real executable: summary, exit codes, one-line errors, SIGKILL at any moment,
and a disk that fills up."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from md2.data.convert import camera_pngs
from md2.data.synth import SynthOptions, generate_dataset
from tests.cli.test_app import run_md2

MD2 = os.path.join(os.path.dirname(sys.executable), "md2")


@pytest.fixture
def tree(synth_raw, tmp_path) -> Path:
    root = tmp_path / "kitti_data"
    shutil.copytree(synth_raw, root, ignore=shutil.ignore_patterns("rendered_depth", "velodyne_points"))
    return root


@pytest.fixture(scope="module")
def bigger(tmp_path_factory) -> Path:
    """64 frames of 320 x 96: long enough a conversion to kill it in the middle."""
    return generate_dataset(tmp_path_factory.mktemp("bigger"),
                            SynthOptions(drives=1, frames=32, width=320, height=96, lidar=False, seed=3))


def frame_sizes(root: Path) -> dict[Path, tuple[int, int]]:
    """Frame (path without suffix) -> image size, from whichever of PNG / JPEG exists."""
    sizes = {}
    for path in [*root.rglob("image_0*/data/*.png"), *root.rglob("image_0*/data/*.jpg")]:
        with Image.open(path) as image:
            sizes[path.with_suffix("")] = image.size
    return sizes


def assert_every_frame_is_intact(root: Path, expected: dict[Path, tuple[int, int]]) -> None:
    """Every frame exists as a PNG or a JPEG, and every file present decodes completely at the frame's size."""
    for frame, size in expected.items():
        present = [frame.with_suffix(s) for s in (".png", ".jpg") if frame.with_suffix(s).exists()]
        assert present, f"{frame} was lost"
        for path in present:
            with Image.open(path) as image:
                image.load()
                assert image.size == size, path


def wait_for_group_exit(group: int, seconds: float = 20) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(group, signal.SIGKILL)
    raise AssertionError("worker processes outlived the killed md2 convert-jpeg")


def test_summary_line_and_keep_png(tree):
    count = len(camera_pngs(tree))
    result = run_md2("convert-jpeg", str(tree), "--keep-png", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert f"{count} images converted to JPEG, 0 already done, 0 failed" in result.stderr
    assert "PNGs kept" in result.stderr and len(camera_pngs(tree)) == count
    again = run_md2("convert-jpeg", str(tree))
    assert again.returncode == 0 and f"0 images converted to JPEG, {count} already done" in again.stderr
    assert "MB saved" in again.stderr and camera_pngs(tree) == []


def test_quiet_prints_nothing(tree):
    result = run_md2("convert-jpeg", str(tree), "--quiet")
    assert result.returncode == 0 and result.stdout == result.stderr == ""
    assert camera_pngs(tree) == []


@pytest.mark.parametrize("args, code", [(["nowhere"], 1), (["{tree}", "--jobs", "0"], 2)])
def test_bad_input_is_one_line_and_changes_nothing(tree, args, code):
    before = sorted(tree.rglob("*"))
    result = run_md2("convert-jpeg", *(arg.format(tree=tree) for arg in args))
    assert result.returncode == code
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(tree.rglob("*")) == before


def test_sigkill_at_any_moment_loses_no_image_and_a_rerun_finishes(bigger, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(bigger, root)
    expected = frame_sizes(root)
    total = len(camera_pngs(root))
    killed_mid_run = 0
    for round_ in range(5):
        left = len(camera_pngs(root))
        if left == 0:
            break
        process = subprocess.Popen([MD2, "convert-jpeg", str(root), "--jobs", "2", "--quiet"],
                                   start_new_session=True, stderr=subprocess.DEVNULL)
        wanted = left - (1 if round_ == 0 else 6)
        deadline = time.time() + 60
        while time.time() < deadline and process.poll() is None and len(camera_pngs(root)) > wanted:
            time.sleep(0.01)
        # Odd rounds kill only the main process (its workers must notice and stop), even rounds the whole group.
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL) if round_ % 2 else os.killpg(process.pid, signal.SIGKILL)
        finished = process.wait() == 0
        wait_for_group_exit(process.pid)
        assert_every_frame_is_intact(root, expected)
        killed_mid_run += not finished and 0 < len(camera_pngs(root)) < left
    assert killed_mid_run >= 2
    result = run_md2("convert-jpeg", str(root), "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert camera_pngs(root) == [] and not list(root.rglob("*.tmp"))
    assert_every_frame_is_intact(root, expected)
    assert len(list(root.rglob("image_0*/data/*.jpg"))) == total


def _limit_file_size(limit: int):
    def apply() -> None:
        # Writing past RLIMIT_FSIZE fails with EFBIG once SIGXFSZ is ignored: a disk that is full for this process.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


def test_a_full_disk_is_one_clear_line_and_keeps_every_png(tree, tmp_path):
    pngs = camera_pngs(tree)
    with Image.open(pngs[0]) as image:
        image.save(tmp_path / "probe.jpg", quality=92, subsampling=2)
    limit = 1024
    assert (tmp_path / "probe.jpg").stat().st_size > limit
    digests = {png: hashlib.sha256(png.read_bytes()).hexdigest() for png in pngs}
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("MD2_DEBUG", None)
    result = subprocess.run([MD2, "convert-jpeg", str(tree), "--jobs", "2"], capture_output=True, text=True,
                            env=env, timeout=120, preexec_fn=_limit_file_size(limit))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and ".jpg" in lines[0] and "File too large" in lines[0]
    assert {png: hashlib.sha256(png.read_bytes()).hexdigest() for png in pngs} == digests
    assert not list(tree.rglob("*.jpg")) and not list(tree.rglob("*.tmp"))


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through /proc")
def test_a_worker_that_dies_is_one_clear_line_and_a_rerun_finishes(bigger, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(bigger, root)
    expected = frame_sizes(root)
    process = subprocess.Popen([MD2, "convert-jpeg", str(root), "--jobs", "2"], start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    deadline = time.time() + 30
    while not workers and time.time() < deadline and process.poll() is None:
        workers = [worker for child in _children(process.pid) for worker in _children(child)]
        time.sleep(0.01)
    assert workers, "no worker processes seen"
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    wait_for_group_exit(process.pid)
    assert process.returncode == 1 and "worker process died" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert_every_frame_is_intact(root, expected)
    assert run_md2("convert-jpeg", str(root), "--quiet").returncode == 0
    assert camera_pngs(root) == [] and not list(root.rglob("*.tmp"))
    assert_every_frame_is_intact(root, expected)
