"""Faults (issue 7, section 2): what md2 does when the world goes wrong under it. Every fault and its test:

- kill -9 during `md2 train`, while saving and between saves, the state loads and resumes:
  tests/core/train/test_resume.py::test_kill_9_while_saving_and_between_saves_leaves_a_state_that_resumes (slow);
  here, the same through `md2 train --resume`: test_kill_9_while_saving_then_md2_train_resume_finishes.
- kill -9 during `md2 convert-jpeg`: every image a valid PNG or JPEG, a rerun finishes:
  tests/cli/test_convert_cli.py::test_sigkill_at_any_moment_loses_no_image_and_a_rerun_finishes,
  tests/data/test_convert.py::test_a_rerun_repairs_what_a_killed_run_left.
- a download cut off, a server answering 500 or 404, a corrupt zip: tests/data/test_download.py (resumed with
  Range, retried with back-off, 404 final, zips verified, extraction never half) and
  tests/data/test_kitti_download.py::test_bad_archives_are_never_extracted.
- disk full while writing an output (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk):
  convert-jpeg: tests/cli/test_convert_cli.py::test_a_full_disk_is_one_clear_line_and_keeps_every_png;
  export-gt: tests/cli/test_export_gt_cli.py::test_a_full_disk_is_one_line_and_the_earlier_file_survives;
  predict and train: here.
- a corrupt or truncated image in a training split (named; or skipped and counted with --skip-bad-samples): here.
- a DataLoader worker dying: convert-jpeg: tests/cli/test_convert_cli.py::
  test_a_worker_that_dies_is_one_clear_line_and_a_rerun_finishes; train: here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from md2.core.checkpoint import load_module, save_weights_folder
from md2.core.train.data import SkipBadSamples, build_dataset
from md2.core.train.loop import run_training, seed_everything
from md2.core.train.models import build_models
from md2.core.train.state import STATE_FILE, read_state
from md2.data.synth import SynthOptions, generate_dataset
from tests import md2_process
from tests.core.train.helpers import tiny_config, tiny_split

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
BAD_FRAME = 6
"""The frame whose left image is broken: train lines ``5 l`` (its frame +1) and ``6 l`` (its frame 0) need it."""


def _env() -> dict[str, str]:
    return {**{key: value for key, value in os.environ.items() if key != "MD2_DEBUG"}, "COLUMNS": "200"}


def md2(*args: str, timeout: float = 150, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """``md2 ARGS`` in a process of its own, forked from one that imported torch once (tests/md2_process.py), whose
    files cannot grow past ``file_size_limit`` bytes if given (RLIMIT_FSIZE: writes past it fail with EFBIG, SIGXFSZ
    ignored, as on a full disk)."""
    return md2_process.run(args, env=_env(), timeout=timeout, file_size_limit=file_size_limit)


def error_line(stderr: str) -> str:
    """The one ``error:`` line, the last of stderr (progress lines may come before it); no traceback."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and [line for line in lines if "error" in line.lower()] == lines[-1:], stderr
    assert lines[-1].startswith("error: "), stderr
    return lines[-1]


def leftovers(folder: Path) -> list[Path]:
    """Temporary files or folders (md2 writes to hidden temporary names and renames)."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name or p.name.endswith(".old")]


# The JPEG copy repeats the PNG copy's faults through the same md2 train paths (slow); the JPEG reader naming a
# corrupt file is tests/data/test_kitti.py::test_corrupt_image_names_the_file[.jpg].
@pytest.fixture(scope="module", params=["png", pytest.param("jpg", marks=pytest.mark.slow)])
def drive(request, tmp_path_factory) -> Path:
    """One synthetic drive of 8 frames (PNG or JPEG) and split ``faults``: train ``1..6 l``, val ``1..2 r``."""
    root = generate_dataset(tmp_path_factory.mktemp(f"drive_{request.param}"),
                            SynthOptions(drives=1, frames=8, width=256, height=80, seed=3, ext=request.param,
                                         lidar=False))
    split = root / "splits" / "faults"
    split.mkdir(parents=True)
    (split / "train_files.txt").write_text("".join(f"{DRIVE} {frame} l\n" for frame in range(1, 7)))
    (split / "val_files.txt").write_text("".join(f"{DRIVE} {frame} r\n" for frame in (1, 2)))
    return root


def train_args(data: Path, log_dir: Path, *extra: str, png: bool = True) -> list[str]:
    """A tiny `md2 train` on split ``faults``: 64 x 64 (the smallest size md2 trains), batch 2, scratch, CPU."""
    return ["train", "--data-path", str(data), "--splits-dir", str(data / "splits"), "--split", "faults",
            *(["--png"] if png else []), "--height", "64", "--width", "64", "--batch-size", "2",
            "--weights-init", "scratch", "--log-dir", str(log_dir), "--model-name", "run", "--device", "cpu",
            "--log-frequency", "1000", *extra]


def broken_copy(drive: Path, tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A copy of ``drive`` whose frame BAD_FRAME (left camera) is truncated or not an image; returns both."""
    data = tmp_path / "data"
    shutil.copytree(drive, data)
    bad = next((data / DRIVE / "image_02" / "data").glob(f"{BAD_FRAME:010d}.*"))
    content = bad.read_bytes()
    bad.write_bytes(content[: len(content) // 3] if how == "truncated" else b"not an image at all" * 10)
    return data, bad


# -- corrupt images ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("how,workers", [("truncated", "0"), ("garbage", "1")])
def test_a_corrupt_image_in_the_split_stops_training_naming_the_file(drive, tmp_path, how, workers):
    data, bad = broken_copy(drive, tmp_path, how)
    result = md2(*train_args(data, tmp_path / "logs", "--num-workers", workers, png=bad.suffix == ".png"))
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert str(bad) in line and "image" in line, line


def test_skip_bad_samples_replaces_them_and_counts_them_each_epoch(drive, tmp_path):
    if drive.name.startswith("drive_jpg"):
        pytest.skip("once is enough: the JPEG reader's errors are named by the test above")
    data, bad = broken_copy(drive, tmp_path, "truncated")
    result = md2(*train_args(data, tmp_path / "logs", "--num-workers", "1", "--num-epochs", "2",
                             "--skip-bad-samples", png=bad.suffix == ".png"))
    assert result.returncode == 0, result.stderr
    for epoch in (0, 1):  # lines "5 l" and "6 l" need the broken image; the val lines do not
        assert f"epoch {epoch}: 2 unreadable sample(s) skipped (first: corrupt image {bad}" in result.stderr
    assert read_state(tmp_path / "logs" / "run").progress.step == 6


def test_a_skipped_sample_is_replaced_by_the_next_readable_one_with_its_own_augmentation(drive, tmp_path):
    data, bad = broken_copy(drive, tmp_path, "garbage")
    config = tiny_config(data, tmp_path, split="faults", png=bad.suffix == ".png", skip_bad_samples=True)
    dataset = build_dataset(config, "train", is_train=True)
    assert isinstance(dataset, SkipBadSamples)
    # indices 0..5 are frames 1..6: 4 and 5 need the broken frame, so both become index 0 (wrapping around)
    loaded = dataset.__getitems__([(3, 4), (3, 2), (3, 5)])
    expected = dataset.dataset.__getitems__([(3, 0), (3, 2), (3, 0)])
    assert loaded.batch.index.tolist() == [0, 2, 0] and len(loaded.skipped) == 2
    assert all(str(bad) in message for message in loaded.skipped)
    for frame in config.frame_ids:
        assert torch.equal(loaded.batch.color_aug[frame][0], expected.color_aug[frame][0])


def test_skip_bad_samples_changes_no_number_when_every_sample_reads(synth_raw, tmp_path):
    losses = {}
    splits = tiny_split(synth_raw, tmp_path / "splits", train=4, val=2)
    for skip in (False, True):
        config = tiny_config(synth_raw, tmp_path / str(skip), splits_dir=str(splits), skip_bad_samples=skip)
        steps: dict[int, float] = {}
        run_training(config, on_step=lambda step, loss: steps.__setitem__(step, loss))
        losses[skip] = steps
    assert len(losses[False]) > 1 and losses[True] == losses[False]


# -- a dying loader worker ----------------------------------------------------------------------------
def _children(pid: int) -> list[tuple[int, int]]:
    """(start time, pid) of the live child processes of ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append((int(fields[19]), int(entry.name)))
    return sorted(found)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through /proc")
def test_a_killed_loader_worker_stops_training_with_one_line_not_a_hang(drive, tmp_path):
    if drive.name.startswith("drive_jpg"):
        pytest.skip("once is enough")
    process = md2_process.popen(train_args(drive, tmp_path / "logs", "--num-workers", "1", "--num-epochs", "100"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env={k: v for k, v in os.environ.items() if k != "MD2_DEBUG"})
    try:
        # Loader workers are started by the forkserver (a child of md2); the training loader's starts first.
        workers: list[tuple[int, int]] = []
        deadline = time.monotonic() + 120
        while not workers and time.monotonic() < deadline and process.poll() is None:
            workers = [worker for _, child in _children(process.pid) for worker in _children(child)]
            time.sleep(0.05)
        assert workers, "no loader worker seen"
        os.kill(min(workers)[1], signal.SIGKILL)
        _, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, stderr
    assert error_line(stderr).startswith("error: a data loader worker stopped"), stderr


# -- kill -9 and --resume through the executable ------------------------------------------------------
def _signal_during_a_save(drive, tmp_path, signum: int, saving, stderr) -> tuple[subprocess.Popen, Path, str]:
    """Two epochs of ``md2 train`` saving every step; ``signum`` sent once the state exists and ``saving(run)``
    says a save is under way. Returns the ended process, the run folder and its stderr (when piped)."""
    run = tmp_path / "logs" / "run"
    process = md2_process.popen(train_args(drive, tmp_path / "logs", "--num-workers", "0", "--num-epochs", "2",
                                           "--save-every-steps", "1"), stdout=subprocess.DEVNULL, stderr=stderr)
    text = ""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (run / STATE_FILE).exists() and saving(run):
                os.kill(process.pid, signum)
                break
            time.sleep(0.001)
        if stderr == subprocess.PIPE:
            text = process.communicate(timeout=60)[1].decode(errors="replace")
    finally:
        process.kill()
        process.wait()
    return process, run, text


def test_kill_9_while_saving_then_md2_train_resume_finishes(drive, tmp_path):
    if drive.name.startswith("drive_jpg"):
        pytest.skip("once is enough")
    process, run, _ = _signal_during_a_save(drive, tmp_path, signal.SIGKILL, lambda run: bool(leftovers(run)),
                                            subprocess.DEVNULL)  # a save is under way
    assert process.returncode == -signal.SIGKILL, "the run ended before a save could be interrupted"
    read_state(run)  # the state the kill left reads back (it raises otherwise), whichever save was cut
    resumed = md2("train", "--resume", str(run), "--num-workers", "0")
    assert resumed.returncode == 0, resumed.stderr
    saved = read_state(run)
    assert saved.progress.step == 6 and saved.weights == run / "models" / "weights_1"
    config = tiny_config(drive, tmp_path, split="faults")
    for folder in sorted((run / "models").iterdir()):
        assert folder.name in ("weights_0", "weights_1")
        for name, module in build_models(config).items():
            load_module(module, folder / f"{name}.pth")
    assert not leftovers(run) and not list((run / "checkpoints").iterdir())


def test_ctrl_c_while_saving_is_interrupted_130_and_md2_train_resume_finishes(drive, tmp_path):
    # torch.save turns a KeyboardInterrupt raised while it writes into "RuntimeError: [enforce fail at
    # inline_container.cc] unexpected pos": still an interruption, exit 130, no traceback.
    if drive.name.startswith("drive_jpg"):
        pytest.skip("once is enough")

    def writing_weights(run: Path) -> bool:  # torch.save is writing a weights file of the next save
        return any(folder.is_dir() and any(folder.glob("*.pth")) for folder in leftovers(run))

    process, run, stderr = _signal_during_a_save(drive, tmp_path, signal.SIGINT, writing_weights, subprocess.PIPE)
    assert process.returncode == 130, stderr
    assert error_line(stderr) == "error: interrupted", stderr
    read_state(run)
    resumed = md2("train", "--resume", str(run), "--num-workers", "0")
    assert resumed.returncode == 0, resumed.stderr
    assert read_state(run).progress.step == 6 and not leftovers(run)


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(signal, "pthread_kill"), reason="POSIX FIFOs, signals")
def test_ctrl_c_inside_torch_save_is_a_keyboard_interrupt_not_torchs_runtime_error(tmp_path):
    # A FIFO nobody reads yet: torch.save blocks in write(2); Ctrl-C then makes that write fail with EINTR, Python
    # raises KeyboardInterrupt inside the file's write, and torch's zip writer turns it into a RuntimeError.
    import threading

    from md2.core.checkpoint import _save

    fifo = tmp_path / "weights.pth"
    os.mkfifo(fifo)
    main = threading.get_ident()
    release = threading.Event()

    def reader() -> None:
        with open(fifo, "rb") as stream:
            time.sleep(0.5)  # the writer has filled the pipe and blocks
            signal.pthread_kill(main, signal.SIGINT)
            release.wait(10)
            while stream.read(1 << 16):
                pass

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _save({"weight": torch.zeros(1 << 20)}, fifo)
    finally:
        release.set()
        thread.join()


# -- a full disk --------------------------------------------------------------------------------------
def test_a_full_disk_while_predicting_is_one_line_and_keeps_the_earlier_outputs(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path)
    seed_everything(0)
    weights = save_weights_folder(tmp_path / "weights", dict(build_models(config)), height=64, width=192,
                                  use_stereo=False)
    images = tmp_path / "images"
    images.mkdir()
    for frame in (1, 2):
        shutil.copy(synth_raw / DRIVE / "image_02" / "data" / f"{frame:010d}.png", images / f"{frame}.png")
    assert md2("predict", str(images / "1.png"), "--weights", str(weights), "-q").returncode == 0
    earlier = {path: path.read_bytes() for path in images.glob("1_disp.*")}
    assert len(earlier) == 2 and all(len(content) > 0 for content in earlier.values())
    limit = 4096  # the 64 x 192 float32 disparity (48 KB) cannot be written
    result = md2("predict", str(images), "--ext", "png", "--weights", str(weights), file_size_limit=limit)
    assert result.returncode == 1
    line = error_line(result.stderr)
    # 1.png is predicted again: its outputs are being replaced when the disk is full, and survive as they were
    assert "cannot write" in line and "_disp." in line and "written" in line, line
    assert {path: path.read_bytes() for path in images.glob("1_disp.*")} == earlier
    assert sorted(p.name for p in images.iterdir()) == ["1.png", "1_disp.jpeg", "1_disp.npy", "2.png"]
    assert np.load(images / "1_disp.npy").shape == (1, 1, 64, 192)


def test_a_full_disk_while_saving_weights_is_one_line_and_keeps_the_last_state(synth_raw, tmp_path):
    config = tiny_config(synth_raw, tmp_path, splits_dir=str(tiny_split(synth_raw, tmp_path / "splits")))
    run = run_training(config)
    before = read_state(run)
    limit = 4 << 20  # opt.yaml, the state and the event files fit; encoder.pth (45 MB) does not
    result = md2("train", "--resume", str(run), "--num-epochs", "2", file_size_limit=limit)
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "cannot write" in line and "weights_1" in line, line
    after = read_state(run)
    assert after.progress == before.progress and after.weights == run / "models" / "weights_0"
    assert sorted(p.name for p in (run / "models").iterdir()) == ["weights_0"] and not leftovers(run)
    load_module(build_models(config)["encoder"], run / "models" / "weights_0" / "encoder.pth")
