"""Hostile input to md2's commands (issue 24's outside audit), through md2's console script: one clear line, the
right exit code, no traceback, and every file of the row's folder as it was (nothing deleted, nothing written).

The rows are those of tests/cli/test_bad_inputs.py's table (same world, same runner: a process of its own,
offline), for the cases the audit found: images that are not what they claim (decompression bombs, 16-bit
PNGs, a JPEG of another frame beside a PNG), outputs that cannot be made, URLs that are not URLs, NaN and
infinities in options, weights and ground truth. Cases that are not one-line refusals (a folder that goes on
past a bad picture, a symlinked camera folder) have their own tests below.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli.test_bad_inputs import (  # noqa: F401 -- world is a fixture used here
    DRIVE,
    OFFLINE,
    World,
    _clip,
    _photo,
    Outcome,
    assert_one_clear_line,
    _write,
    run_md2_in,
    run_table,
    world,
)
from tests.conftest import SHARED
from tests.hostile_files import bomb_png, write_png16

CAMERA = f"{DRIVE}/image_02/data"
REAL_CAMERA = "2011_09_26/2011_09_26_drive_0060_sync/image_02/data"


@dataclass(frozen=True)
class Row:
    """One hostile input: ``build(world, tmp) -> md2 arguments``, its category (for the README's figures), the
    exit code, text the error line must hold (and must not), environment overrides, paths that must not exist."""

    id: str
    category: str
    code: int
    build: Callable[[World, Path], list]
    says: str
    not_says: str = "\x00"
    env: dict = field(default_factory=dict)
    absent: tuple[str, ...] = ()


# -- builders ----------------------------------------------------------------------------------------------
def _camera_with(tmp: Path, files: dict[str, bytes | Callable[[Path], object]]) -> Path:
    """TMP/kitti holding only ``files`` in the synthetic drive's image_02/data (bytes, or a writer of PATH)."""
    folder = tmp / "kitti" / CAMERA
    folder.mkdir(parents=True)
    for name, content in files.items():
        content(folder / name) if callable(content) else (folder / name).write_bytes(content)
    return tmp / "kitti"


def _other_frame_beside(w: World, tmp: Path) -> list:
    """Frame 3's PNG with frame 5 saved at quality 40 as 0000000003.jpg (the audit's case, synthetic)."""
    source = w.data / CAMERA

    def other(path: Path) -> None:
        with Image.open(source / "0000000005.png") as image:
            image.save(path, quality=40)

    return ["convert-jpeg", _camera_with(tmp, {"0000000003.png": (source / "0000000003.png").read_bytes(),
                                               "0000000003.jpg": other})]


def _real_other_frame_beside(w: World, tmp: Path) -> list:
    """The audit's case on real KITTI frames of a traffic jam (../shared): frame 0's PNG, frame 1 as its JPEG."""
    source = SHARED / "kitti_real" / REAL_CAMERA
    if not source.is_dir():
        pytest.skip("../shared/kitti_real not present")
    folder = tmp / "kitti" / REAL_CAMERA
    folder.mkdir(parents=True)
    shutil.copyfile(source / "0000000000.png", folder / "0000000000.png")
    with Image.open(source / "0000000001.png") as image:
        image.convert("RGB").save(folder / "0000000000.jpg", quality=40)
    return ["convert-jpeg", tmp / "kitti"]


def _png16(channels: int) -> Callable[[Path], object]:
    shape = (80, 256) if channels == 1 else (80, 256, 3)
    return lambda path: write_png16(path, np.random.default_rng(1).integers(0, 65535, shape, np.uint16))


def _weights_with(w: World, tmp: Path, change: Callable[[dict, dict], None]) -> Path:
    """TMP/weights: the ResNet-18 depth model with ``change(encoder_state, depth_state)`` applied."""
    folder = tmp / "weights"
    folder.mkdir()
    encoder = torch.load(w.resnet18 / "encoder.pth", weights_only=True)
    depth = torch.load(w.resnet18 / "depth.pth", weights_only=True)
    change(encoder, depth)
    torch.save(encoder, folder / "encoder.pth")
    torch.save(depth, folder / "depth.pth")
    return folder


def _set(**values) -> Callable[[dict, dict], None]:
    return lambda encoder, depth: encoder.update(values)


def _nan_weights(encoder: dict, depth: dict) -> None:
    for key, value in depth.items():
        if value.is_floating_point():
            depth[key] = value * float("nan")


class _RunsCode:
    """A pickle that would run ``echo`` when loaded (never, with weights_only)."""

    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def _malicious_pickle(w: World, tmp: Path) -> Path:
    folder = tmp / "weights"
    folder.mkdir()
    (folder / "encoder.pth").write_bytes(pickle.dumps(_RunsCode(), protocol=5))
    shutil.copy(w.resnet18 / "depth.pth", folder / "depth.pth")
    return folder


def _video_train(w: World, tmp: Path, intrinsics: str) -> list:
    return ["train", "--dataset", "video", "--data-path", w.data / CAMERA, "--intrinsics", intrinsics, "--height",
            "64", "--width", "192", "--num-workers", "0", "--weights-init", "scratch", "--device", "cpu",
            "--log-dir", tmp / "runs", "--model-name", "bad"]


def _train(w: World, tmp: Path, *extra) -> list:
    return ["train", "--data-path", w.data, "--splits-dir", w.data / "splits", "--split", "synth", "--png",
            "--height", "64", "--width", "192", "--num-workers", "0", "--weights-init", "scratch", "--device",
            "cpu", "--log-dir", tmp / "runs", "--model-name", "bad", *extra]


def _evaluate(w: World, splits: Path, *extra) -> list:
    return ["evaluate-depth", "--data-path", w.data, "--eval-split", "synth", "--splits-dir", splits, "--png",
            "--num-workers", "0", "--device", "cpu", "--eval-out-dir", "out", "--json", "results.json", *extra]


def _ground_truth_with(w: World, tmp: Path, index: int, value: float) -> Path:
    """TMP/splits: the synthetic split whose ground-truth map ``index`` is ``value`` everywhere."""
    splits = tmp / "splits"
    shutil.copytree(w.splits, splits)
    path = splits / "synth" / "gt_depths.npz"
    with np.load(path) as stored:
        maps = {key: stored[key] for key in stored.files}
    key = sorted(maps)[index]
    maps[key] = np.full_like(maps[key], value)
    np.savez(path, **maps)
    return splits


def _zero_disparities(w: World, tmp: Path) -> Path:
    count = sum(1 for line in (w.splits / "synth" / "test_files.txt").read_text().splitlines() if line.strip())
    path = tmp / "disps.npy"
    np.save(path, np.zeros((count, 16, 48), np.float32))
    return path


_PREDICT_OUT = ("photo_disp.npy", "photo_disp.jpeg", "out")
_EVAL_OUT = ("out", "results.json")
_REAL_ROW = "convert-jpeg/jpeg-of-another-real-kitti-frame-beside-a-png"

HOSTILE = [
    # -- data loss: convert-jpeg deletes only what it replaced by its own verified conversion ---------------
    Row(_REAL_ROW, "data loss", 1, _real_other_frame_beside, "is not the conversion of 0000000000.png"),
    Row("convert-jpeg/jpeg-of-another-frame-beside-a-png", "data loss", 1, _other_frame_beside,
        "is not the conversion of 0000000003.png"),
    Row("convert-jpeg/16-bit-grey-png", "data loss", 1, lambda w, t: [
        "convert-jpeg", _camera_with(t, {"0000000001.png": _png16(1)})], "mode I;16, 16-bit",
        absent=(f"kitti/{CAMERA}/0000000001.jpg",)),
    Row("convert-jpeg/48-bit-rgb-png", "data loss", 1, lambda w, t: [
        "convert-jpeg", _camera_with(t, {"0000000001.png": _png16(3)})], "16-bit",
        absent=(f"kitti/{CAMERA}/0000000001.jpg",)),
    # -- memory bombs and unbounded sizes --------------------------------------------------------------------
    Row("convert-jpeg/decompression-bomb", "resources", 1, lambda w, t: [
        "convert-jpeg", _camera_with(t, {"0000000001.png": bomb_png()})], "decompression bomb",
        absent=(f"kitti/{CAMERA}/0000000001.jpg",)),
    Row("predict/decompression-bomb", "resources", 1, lambda w, t: [
        "predict", _write(t / "bomb.png", bomb_png()), "--weights", w.resnet18], "decompression bomb",
        absent=("bomb_disp.npy", "bomb_disp.jpeg")),
    Row("predict/encoder-size-beyond-the-bound", "resources", 1, lambda w, t: [
        "predict", _photo(t), "--weights", _weights_with(w, t, _set(height=64000, width=96000))],
        "beyond md2's bound of 4096 pixels", absent=_PREDICT_OUT),
    # -- outputs that cannot be made -------------------------------------------------------------------------
    Row("predict/output-dir-is-a-file", "outputs", 1, lambda w, t: [
        "predict", _photo(t), "--weights", w.resnet18, "--output-dir", _write(t / "taken", "a file")],
        "taken is a file, not a folder"),
    Row("predict/output-dir-below-a-file", "outputs", 1, lambda w, t: [
        "predict", _photo(t), "--weights", w.resnet18, "--output-dir", _write(t / "taken", "a file") / "out"],
        "taken is a file, not a folder"),
    Row("predict/video-output-dir-is-a-file", "outputs", 1, lambda w, t: [
        "predict", _clip(t), "--weights", w.resnet18, "--output-dir", _write(t / "taken", "a file")],
        "taken is a file, not a folder"),
    Row("download-kitti/output-is-a-file", "outputs", 1, lambda w, t: [
        "download-kitti", "--split", "synth", "--splits-dir", w.data / "splits", "--base-url", OFFLINE,
        "--output", _write(t / "taken", "a file")], "taken is a file, not a folder"),
    # -- URLs that are not URLs ------------------------------------------------------------------------------
    Row("predict/zoo-url-not-a-url", "urls", 1, lambda w, t: ["predict", _photo(t)], "is not a URL md2 can "
        "download from", env={"MD2_ZOO_URL": "notaurl"}, absent=_PREDICT_OUT),
    Row("download-kitti/base-url-not-a-url", "urls", 2, lambda w, t: [
        "download-kitti", "--base-url", "notaurl", "--dry-run", "--output", "kitti"], "--base-url: 'notaurl'",
        absent=("kitti",)),
    Row("download-kitti/splits-url-without-a-host", "urls", 2, lambda w, t: [
        "download-kitti", "--splits-url", "http://", "--dry-run", "--output", "kitti"], "has no host name",
        absent=("kitti",)),
    # -- NaN and infinities ----------------------------------------------------------------------------------
    Row("train/intrinsics-nan", "non-finite", 2, lambda w, t: _video_train(w, t, "0.5,nan,0.5,0.5"),
        "--intrinsics must be a finite number", absent=("runs",)),
    Row("train/intrinsics-inf", "non-finite", 2, lambda w, t: _video_train(w, t, "0.5,inf,0.5,0.5"),
        "--intrinsics must be a finite number", absent=("runs",)),
    Row("train/intrinsics-nan-and-inf", "non-finite", 2, lambda w, t: _video_train(w, t, "nan,inf,3,4"),
        "--intrinsics must be a finite number", not_says="image_size", absent=("runs",)),
    Row("train/learning-rate-nan", "non-finite", 2, lambda w, t: _train(w, t, "--learning-rate", "nan"),
        "--learning-rate must be a finite number", absent=("runs",)),
    Row("train/disparity-smoothness-inf", "non-finite", 2, lambda w, t: _train(
        w, t, "--disparity-smoothness", "inf"), "--disparity-smoothness must be a finite number", absent=("runs",)),
    Row("evaluate-depth/pred-depth-scale-factor-nan", "non-finite", 2, lambda w, t: _evaluate(
        w, w.splits, "--eval-mono", "--load-weights-folder", w.resnet18, "--pred-depth-scale-factor", "nan"),
        "--pred-depth-scale-factor must be a finite number", absent=_EVAL_OUT),
    Row("evaluate-depth/max-depth-inf", "non-finite", 2, lambda w, t: _evaluate(
        w, w.splits, "--eval-mono", "--load-weights-folder", w.resnet18, "--max-depth", "inf"),
        "--max-depth must be a finite number", absent=_EVAL_OUT),
    Row("evaluate-depth/all-nan-ground-truth-map", "non-finite", 1, lambda w, t: _evaluate(
        w, _ground_truth_with(w, t, 1, np.nan), "--eval-mono", "--load-weights-folder", w.resnet18),
        f"image 1 of 12 ({DRIVE} 2 l): its ground-truth depth map has no valid pixel", absent=_EVAL_OUT),
    Row("evaluate-depth/all-zero-ground-truth-map", "non-finite", 1, lambda w, t: _evaluate(
        w, _ground_truth_with(w, t, 0, 0.0), "--eval-mono", "--load-weights-folder", w.resnet18),
        f"image 0 of 12 ({DRIVE} 1 l): its ground-truth depth map has no valid pixel", absent=_EVAL_OUT),
    Row("evaluate-depth/all-zero-disparities", "non-finite", 1, lambda w, t: _evaluate(
        w, w.splits, "--eval-mono", "--ext-disp-to-eval", _zero_disparities(w, t)),
        "its metrics are not finite", absent=_EVAL_OUT),
    Row("export/min-depth-nan", "non-finite", 2, lambda w, t: [
        "export", "--weights", w.resnet18, "--output", "m.pt", "--min-depth", "nan"],
        "--min-depth must be a finite number", absent=("m.pt",)),
    Row("predict/video-start-infinite-seconds", "non-finite", 2, lambda w, t: [
        "predict", _clip(t), "--weights", w.resnet18, "--start", "1e999s"], "--start takes seconds",
        absent=("clip_disp.mp4",)),
    Row("predict/nan-weights", "non-finite", 1, lambda w, t: [
        "predict", _photo(t), "--weights", _weights_with(w, t, _nan_weights)], "holds NaN or infinite values",
        absent=_PREDICT_OUT),
    # -- messages --------------------------------------------------------------------------------------------
    Row("predict/malicious-pickle-of-another-protocol", "messages", 1, lambda w, t: [
        "predict", _photo(t), "--weights", _malicious_pickle(w, t)], "not a torch weights file",
        absent=(*_PREDICT_OUT, "pwned.txt")),
    Row("predict/encoder-height-stored-as-text", "messages", 1, lambda w, t: [
        "predict", _photo(t), "--weights", _weights_with(w, t, _set(height="64"))],
        "its 'height' is '64' (str), not a whole number", not_says="multiple of 32", absent=_PREDICT_OUT),
    Row("export/bf16-onnx", "messages", 2, lambda w, t: [
        "export", "--weights", w.resnet18, "--output", "x.onnx", "--precision", "bf16"], "--precision bf16",
        absent=("x.onnx",)),
]


@pytest.fixture(scope="module")
def outcomes(world, tmp_path_factory) -> dict[str, Outcome | BaseException]:
    return run_table(HOSTILE, world, tmp_path_factory, workers=2)


@pytest.mark.parametrize("row", HOSTILE, ids=[row.id for row in HOSTILE])
def test_hostile_input_is_one_clear_line_and_touches_nothing(row, outcomes):
    assert_one_clear_line(row, outcomes[row.id])


def test_no_hostile_row_touched_the_shared_fixtures(outcomes):
    before, after = outcomes["shared fixtures"]
    assert after == before, sorted(set(after.items()) ^ set(before.items()))


def test_the_hostile_table_counts_by_category():
    # The README's reliability figures (Training, Reliability) quote these counts.
    counts = Counter(row.category for row in HOSTILE)
    assert counts == {"data loss": 4, "resources": 3, "outputs": 4, "urls": 3, "non-finite": 13, "messages": 3}
    assert len({row.id for row in HOSTILE}) == len(HOSTILE)


# -- not one-line refusals ---------------------------------------------------------------------------------
def test_a_bomb_in_a_folder_is_one_line_and_the_other_pictures_are_predicted(world, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    _photo(frames)
    _write(frames / "bomb.jpg", bomb_png())  # a PNG named .jpg: Pillow reads the header all the same
    result = run_md2_in(tmp_path, world.home, "predict", frames, "--weights", world.resnet18)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and "bomb.jpg" in errors[0] and "decompression bomb" in errors[0], result.stderr
    assert (frames / "photo_disp.npy").is_file() and (frames / "photo_disp.jpeg").is_file()
    assert not list(frames.glob("bomb_*"))


def test_convert_jpeg_follows_a_symlinked_camera_folder(synth_raw, tmp_path):
    root = tmp_path / "kitti"
    shutil.copytree(synth_raw, root, ignore=shutil.ignore_patterns("rendered_depth", "velodyne_points",
                                                                   "sequences", "proj_depth"))
    elsewhere = tmp_path / "other_disk"
    shutil.move(root / CAMERA, elsewhere)
    (root / CAMERA).symlink_to(elsewhere, target_is_directory=True)
    count = len(list(elsewhere.glob("*.png")))
    result = run_md2_in(tmp_path, tmp_path, "convert-jpeg", root)
    assert result.returncode == 0, result.stderr
    assert len(list(elsewhere.glob("*.jpg"))) == count and not list(elsewhere.glob("*.png"))
    converted = int(result.stderr.split(" images converted")[0].split()[-1])
    assert converted >= count


def _negative_variance(encoder: dict, depth: dict) -> None:
    # Finite weights (so the loader takes them), but batch norm divides by the square root of a negative
    # running variance: NaN disparities.
    encoder["encoder.bn1.running_var"] = -encoder["encoder.bn1.running_var"].abs() - 1


@pytest.mark.parametrize("what", ["photo", "video"])
def test_a_prediction_that_is_not_finite_is_refused_and_nothing_is_written(world, tmp_path, what):
    weights = _weights_with(world, tmp_path, _negative_variance)
    source = _photo(tmp_path) if what == "photo" else _clip(tmp_path)
    result = run_md2_in(tmp_path, world.home, "predict", source, "--weights", weights)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and "is not finite (NaN or infinite disparities" in lines[0], result.stderr
    assert not list(tmp_path.glob(f"{source.stem}_*"))
