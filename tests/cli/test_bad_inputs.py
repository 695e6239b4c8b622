"""Bad input to every md2 command, through md2's console script: one clear line, the right exit code, no files touched.

Each row of BAD_INPUTS builds its broken input in its own folder (synthetic KITTI written by md2's generator,
weights written by md2's checkpoint writer), runs the ``md2`` console script in a process of its own from that
folder (tests/md2_process.py: a fork of a process that imported torch once, so the table does not import it 47
times; what importing it prints is still part of each run's output), and expects exactly
one non-empty line on stderr naming the culprit, no traceback, exit code 2 (usage) or 1 (runtime), and every
file under the row's folder, the shared fixtures and md2's cache exactly as before (outputs never created).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from md2.data.groundtruth import export_gt
from tests import md2_process
from tests.model_folders import random_model

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
OFFLINE = "http://127.0.0.1:9"  # nothing listens there: any download fails at once, never the internet


@dataclass(frozen=True)
class World:
    """What the rows build on: the shared synthetic dataset, md2-written weights and a splits folder."""

    data: Path  # synth_raw (read-only)
    splits: Path  # synth + odom splits, synth with its gt_depths.npz
    resnet18: Path  # encoder, depth, pose_encoder, pose: ResNet-18 at 64 x 192
    resnet50: Path  # the same with ResNet-50 encoders
    odd_size: Path  # a ResNet-18 depth model whose encoder.pth says 100 x 190
    home: Path  # MD2_HOME of every run


@dataclass(frozen=True)
class Row:
    """One bad input: ``build(world, tmp) -> md2 arguments``; the exit code; text the error line must hold;
    paths (relative to the row's folder) that must not exist afterwards."""

    id: str
    code: int
    build: Callable[[World, Path], list]
    says: str
    absent: tuple[str, ...] = field(default=())


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def _split(tmp: Path, name: str, which: str, lines: list[str]) -> Path:
    """A splits folder TMP/splits holding NAME/WHICH_files.txt; returns TMP/splits."""
    _write(tmp / "splits" / name / f"{which}_files.txt", "".join(f"{line}\n" for line in lines))
    return tmp / "splits"


def _raw_copy(w: World, tmp: Path, *, calib: Callable[[str, str], str] | None = None,
              velodyne: bytes | None = None) -> Path:
    """TMP/data: the fixture's calibration (optionally edited: (file name, text) -> text) and drive 0001 as a
    symlink, or with only a velodyne scan of frame 1 holding ``velodyne``."""
    root = tmp / "data"
    date = DRIVE.split("/")[0]
    for source in sorted((w.data / date).glob("calib_*.txt")):
        text = source.read_text()
        _write(root / date / source.name, calib(source.name, text) if calib else text)
    if velodyne is None:
        (root / DRIVE).symlink_to(w.data / DRIVE, target_is_directory=True)
    else:
        _write(root / DRIVE / "velodyne_points" / "data" / "0000000001.bin", velodyne)
    return root


def _drop_line(key: str) -> Callable[[str, str], str]:
    return lambda name, text: "".join(line for line in text.splitlines(True) if not line.startswith(f"{key}:"))


def _train(w: World, tmp: Path, *extra, data: Path | None = None, splits: Path | None = None) -> list:
    """A tiny md2 train line that would write TMP/runs/bad (scratch weights, CPU, no workers)."""
    return ["train", "--data-path", data or w.data, "--splits-dir", splits or (w.data / "splits"), "--split",
            "synth", "--png", "--height", "64", "--width", "192", "--batch-size", "2", "--num-workers", "0",
            "--weights-init", "scratch", "--num-epochs", "1", "--device", "cpu", "--log-dir", tmp / "runs",
            "--model-name", "bad", *extra]


def _depth(w: World, *extra) -> list:
    """md2 evaluate-depth on the synthetic split (its ground truth exported), writing into the row's folder."""
    return ["evaluate-depth", "--data-path", w.data, "--eval-split", "synth", "--splits-dir", w.splits, "--png",
            "--num-workers", "0", "--device", "cpu", "--eval-out-dir", "out", "--json", "results.json", *extra]


def _pose(w: World, *extra, data: Path | None = None) -> list:
    """md2 evaluate-pose on synthetic sequence 09 at 64 x 192, writing into the row's folder."""
    return ["evaluate-pose", "--data-path", data or w.data, "--splits-dir", w.data / "splits", "--png",
            "--num-workers", "0", "--device", "cpu", "--eval-out-dir", "out", "--json", "results.json", *extra]


def _poses_missing_a_value(w: World, tmp: Path) -> Path:
    """TMP/odom: the fixture's sequences, and poses/09.txt whose third line has 11 numbers."""
    root = tmp / "odom"
    root.mkdir()
    (root / "sequences").symlink_to(w.data / "sequences", target_is_directory=True)
    lines = (w.data / "poses" / "09.txt").read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[:11])
    _write(root / "poses" / "09.txt", "\n".join(lines) + "\n")
    return root


def _clip(tmp: Path, frames: int = 3, name: str = "clip.avi") -> Path:
    """A small MJPG video of ``frames`` grey frames (0 frames: a valid, empty container)."""
    import cv2

    writer = cv2.VideoWriter(str(tmp / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 32))
    for index in range(frames):
        writer.write(np.full((32, 96, 3), 40 * index, np.uint8))
    writer.release()
    return tmp / name


def _photo(tmp: Path) -> Path:
    from PIL import Image

    path = tmp / "photo.jpg"
    Image.new("RGB", (96, 32), (90, 120, 150)).save(path)
    return path


def _corrupt_weights(w: World, tmp: Path) -> Path:
    folder = tmp / "corrupt"
    shutil.copytree(w.resnet18, folder)
    data = (folder / "encoder.pth").read_bytes()
    (folder / "encoder.pth").write_bytes(data[: len(data) // 3])
    return folder


def _depth_only(w: World, tmp: Path) -> Path:
    """TMP/depth_only: the ResNet-18 depth model without its pose network."""
    folder = tmp / "depth_only"
    folder.mkdir()
    for name in ("encoder.pth", "depth.pth"):
        shutil.copy(w.resnet18 / name, folder / name)
    return folder


def _with_scale(w: World, tmp: Path, content: str) -> Path:
    """TMP/scaled: the ResNet-18 model with ``content`` as its saved scale (md2_scale.json)."""
    folder = tmp / "scaled"
    shutil.copytree(w.resnet18, folder)
    (folder / "md2_scale.json").write_text(content)
    return folder


def _plain_onnx() -> bytes:
    """A valid ONNX model (one Identity node) that md2 export did not write: no md2 metadata."""
    import onnx

    tensor = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, 3, 64, 192]) for name in "xy"]
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "plain", tensor[:1], tensor[1:])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]).SerializeToString()


def _torchscript_bytes() -> bytes:
    import io
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(torch.nn.Identity(), torch.ones(1, 3, 64, 192)), buffer)
    return buffer.getvalue()


_DISP_OUT = ("photo_disp.npy", "photo_disp.jpeg", "out")
_EVAL_OUT = ("out", "results.json")

BAD_INPUTS = [
    # -- download-kitti ------------------------------------------------------------------------------------
    Row("download-kitti/unknown-split", 2, lambda w, t: [
        "download-kitti", "--split", "no_such_split", "--dry-run", "--output", "kitti"], "no_such_split", ("kitti",)),
    Row("download-kitti/split-not-in-splits-dir", 1, lambda w, t: [
        "download-kitti", "--split", "nope", "--splits-dir", w.data / "splits", "--output", "kitti"], "'nope'",
        ("kitti",)),
    Row("download-kitti/split-line-wrong-format", 1, lambda w, t: [
        "download-kitti", "--split", "mine", "--dry-run", "--splits-dir",
        _split(t, "mine", "train", [f"{DRIVE} three l"])], "train_files.txt, line 1"),
    Row("download-kitti/zero-jobs", 2, lambda w, t: ["download-kitti", "--jobs", "0", "--output", "kitti"],
        "--jobs", ("kitti",)),
    Row("download-kitti/unknown-odometry-part", 2, lambda w, t: [
        "download-kitti", "--no-raw", "--odometry-parts", "color,gray", "--output", "kitti"], "'gray'", ("kitti",)),
    Row("download-kitti/no-raw-and-nothing-else", 2, lambda w, t: [
        "download-kitti", "--no-raw", "--dry-run", "--output", "kitti"], "--no-raw", ("kitti",)),
    Row("download-kitti/no-raw-with-a-raw-only-split", 2, lambda w, t: [
        "download-kitti", "--split", "synth", "--splits-dir", w.data / "splits", "--no-raw", "--output", "kitti"],
        "--no-raw", ("kitti",)),
    # -- convert-jpeg --------------------------------------------------------------------------------------
    Row("convert-jpeg/missing-folder", 1, lambda w, t: ["convert-jpeg", t / "no_such_folder"], "no_such_folder"),
    Row("convert-jpeg/png-that-is-not-an-image", 1, lambda w, t: [
        "convert-jpeg", _write(t / "kitti" / DRIVE / "image_02" / "data" / "0000000000.png",
                               b"this is not a PNG").parents[4]], "0000000000.png",
        (f"kitti/{DRIVE}/image_02/data/0000000000.jpg",)),
    Row("convert-jpeg/negative-jobs", 2, lambda w, t: ["convert-jpeg", w.data, "--jobs", "-2"], "--jobs"),
    # -- export-gt -----------------------------------------------------------------------------------------
    Row("export-gt/missing-data-path", 1, lambda w, t: [
        "export-gt", "--data-path", t / "no_such_data", "--split", "synth", "--splits-dir", w.splits],
        "no_such_data"),
    Row("export-gt/unknown-split", 2, lambda w, t: ["export-gt", "--data-path", w.data, "--split", "no_such_split"],
        "no_such_split"),
    Row("export-gt/split-line-wrong-format", 1, lambda w, t: [
        "export-gt", "--data-path", w.data, "--split", "mine", "--splits-dir",
        _split(t, "mine", "test", [f"{DRIVE} 1 l", f"{DRIVE} 2"])], "test_files.txt, line 2",
        ("splits/mine/gt_depths.npz",)),
    Row("export-gt/calibration-missing-key", 1, lambda w, t: [
        "export-gt", "--data-path", _raw_copy(w, t, calib=_drop_line("R_rect_00")), "--split", "mine",
        "--splits-dir", _split(t, "mine", "test", [f"{DRIVE} 1 l"])], "calib_cam_to_cam.txt has no 'R_rect_00'",
        ("splits/mine/gt_depths.npz",)),
    Row("export-gt/calibration-missing-translation", 1, lambda w, t: [
        "export-gt", "--data-path", _raw_copy(w, t, calib=_drop_line("T")), "--split", "mine",
        "--splits-dir", _split(t, "mine", "test", [f"{DRIVE} 1 l"])], "calib_velo_to_cam.txt has no 'T'",
        ("splits/mine/gt_depths.npz",)),
    Row("export-gt/velodyne-not-multiple-of-16-bytes", 1, lambda w, t: [
        "export-gt", "--data-path", _raw_copy(w, t, velodyne=bytes(16 * 10 + 4)), "--split", "mine",
        "--splits-dir", _split(t, "mine", "test", [f"{DRIVE} 1 l"])], "0000000001.bin has 164 bytes",
        ("splits/mine/gt_depths.npz",)),
    Row("export-gt/velodyne-1001-bytes", 1, lambda w, t: [
        "export-gt", "--data-path", _raw_copy(w, t, velodyne=bytes(1001)), "--split", "mine",
        "--splits-dir", _split(t, "mine", "test", [f"{DRIVE} 1 l"])], "0000000001.bin has 1001 bytes",
        ("splits/mine/gt_depths.npz",)),
    Row("export-gt/velodyne-empty", 1, lambda w, t: [
        "export-gt", "--data-path", _raw_copy(w, t, velodyne=b""), "--split", "mine",
        "--splits-dir", _split(t, "mine", "test", [f"{DRIVE} 1 l"])], "puts no point in the image",
        ("splits/mine/gt_depths.npz",)),
    Row("export-gt/velodyne-all-nan", 1, lambda w, t: [
        "export-gt", "--data-path", _raw_copy(w, t, velodyne=np.full((64, 4), np.nan, np.float32).tobytes()),
        "--split", "mine", "--splits-dir", _split(t, "mine", "test", [f"{DRIVE} 1 l"])],
        "puts no point in the image", ("splits/mine/gt_depths.npz",)),
    Row("export-gt/calibration-p-rect-not-numbers", 1, lambda w, t: [
        "export-gt", "--data-path", _raw_copy(w, t, calib=lambda name, text: "".join(
            "P_rect_02: 1 2 abc\n" if line.startswith("P_rect_02:") else line for line in text.splitlines(True))),
        "--split", "mine", "--splits-dir", _split(t, "mine", "test", [f"{DRIVE} 1 l"])],
        "'P_rect_02' must be 12 numbers, got '1 2 abc'", ("splits/mine/gt_depths.npz",)),
    Row("export-gt/missing-velodyne-scan", 1, lambda w, t: [
        "export-gt", "--data-path", w.data, "--split", "mine", "--splits-dir",
        _split(t, "mine", "test", [f"{DRIVE} 1 l", f"{DRIVE} 99 l"])], "0000000099.bin",
        ("splits/mine/gt_depths.npz",)),
    Row("export-gt/unknown-source", 2, lambda w, t: [
        "export-gt", "--data-path", w.data, "--split", "synth", "--splits-dir", w.splits, "--source", "radar"],
        "radar"),
    # -- train ---------------------------------------------------------------------------------------------
    Row("train/height-not-multiple-of-32", 2, lambda w, t: _train(w, t, "--height", "100"), "100x192", ("runs",)),
    Row("train/zero-width", 2, lambda w, t: _train(w, t, "--width", "0"), "64x0", ("runs",)),
    Row("train/negative-height", 2, lambda w, t: _train(w, t, "--height", "-64"), "-64x192", ("runs",)),
    Row("train/config-unknown-keys", 2, lambda w, t: _train(w, t, "--config", _write(
        t / "run.yaml", "data:\n  height: 64\nlearning_rat: 0.1\n")), "learning_rat", ("runs",)),
    Row("train/config-wrong-types", 2, lambda w, t: _train(w, t, "--config", _write(
        t / "run.yaml", "run:\n  save_frequency: often\n")), "often", ("runs",)),
    Row("train/config-not-a-mapping", 2, lambda w, t: _train(w, t, "--config", _write(
        t / "run.yaml", "- height\n- 64\n")), "run.yaml", ("runs",)),
    Row("train/resnet50-weights-with-num-layers-18", 1, lambda w, t: _train(
        w, t, "--load-weights-folder", w.resnet50, "--num-layers", "18"), "ResNet-50", ("runs",)),
    Row("train/split-that-does-not-exist", 1, lambda w, t: _train(w, t, "--split", "no_such_split"),
        "no_such_split", ("runs",)),
    Row("train/split-line-wrong-format", 1, lambda w, t: _train(w, t, "--splits-dir", _split(
        t, "synth", "train", [f"{DRIVE} 1 l", "2011_09_26 1"])), "train_files.txt, line 2", ("runs",)),
    Row("train/resume-with-another-height", 2, lambda w, t: [
        "train", "--resume", w.resnet18, "--height", "128"], "--height"),
    # -- evaluate-depth ------------------------------------------------------------------------------------
    Row("evaluate-depth/mono-and-stereo", 2, lambda w, t: _depth(
        w, "--load-weights-folder", w.resnet18, "--eval-mono", "--eval-stereo"), "--eval-stereo", _EVAL_OUT),
    Row("evaluate-depth/ext-disp-wrong-count", 1, lambda w, t: _depth(
        w, "--eval-mono", "--ext-disp-to-eval", _npy(t / "disps.npy", np.ones((2, 16, 48), np.float32))),
        "2 disparities", _EVAL_OUT),
    Row("evaluate-depth/ext-disp-not-npy", 1, lambda w, t: _depth(
        w, "--eval-mono", "--ext-disp-to-eval", _write(t / "disps.npy", b"")), "disps.npy", _EVAL_OUT),
    Row("evaluate-depth/resnet50-weights-with-num-layers-18", 1, lambda w, t: _depth(
        w, "--eval-mono", "--load-weights-folder", w.resnet50, "--num-layers", "18"), "ResNet-50", _EVAL_OUT),
    Row("evaluate-depth/truncated-checkpoint", 1, lambda w, t: _depth(
        w, "--eval-mono", "--load-weights-folder", _corrupt_weights(w, t)), "encoder.pth", _EVAL_OUT),
    Row("evaluate-depth/checkpoint-size-not-multiple-of-32", 1, lambda w, t: _depth(
        w, "--eval-mono", "--load-weights-folder", w.odd_size), "100x190", _EVAL_OUT),
    Row("evaluate-depth/unknown-model", 2, lambda w, t: _depth(w, "--eval-mono", "--model", "mono_9999x1"),
        "mono_9999x1", _EVAL_OUT),
    Row("evaluate-depth/unknown-split", 2, lambda w, t: [
        "evaluate-depth", "--eval-mono", "--load-weights-folder", w.resnet18, "--eval-split", "no_such_split"],
        "no_such_split"),
    # -- evaluate-pose -------------------------------------------------------------------------------------
    Row("evaluate-pose/poses-with-11-values-on-a-line", 1, lambda w, t: _pose(
        w, "--load-weights-folder", w.resnet18, "--height", "64", "--width", "192",
        data=_poses_missing_a_value(w, t)), "09.txt", _EVAL_OUT),
    Row("evaluate-pose/missing-weights-folder", 1, lambda w, t: [  # named before the official splits are fetched
        "evaluate-pose", "--load-weights-folder", t / "no_such_weights", "--data-path", w.data],
        "no_such_weights"),
    Row("evaluate-pose/height-not-multiple-of-32", 2, lambda w, t: _pose(
        w, "--load-weights-folder", w.resnet18, "--height", "100", "--width", "192"), "100x192", _EVAL_OUT),
    Row("evaluate-pose/resnet50-weights-with-num-layers-18", 1, lambda w, t: _pose(
        w, "--load-weights-folder", w.resnet50, "--num-layers", "18", "--height", "64", "--width", "192"),
        "ResNet-50", _EVAL_OUT),
    Row("evaluate-pose/weights-without-pose-network", 1, lambda w, t: _pose(
        w, "--load-weights-folder", w.odd_size, "--height", "64", "--width", "192"), "pose_encoder.pth", _EVAL_OUT),
    Row("evaluate-pose/model-and-weights-folder", 2, lambda w, t: _pose(
        w, "--load-weights-folder", w.resnet18, "--model", "mono_odom_640x192"), "--model", _EVAL_OUT),
    Row("evaluate-pose/unknown-model", 2, lambda w, t: _pose(w, "--model", "mono_9999x1"), "mono_9999x1", _EVAL_OUT),
    Row("evaluate-pose/stereo-model-without-pose-network", 2, lambda w, t: _pose(w, "--model", "stereo_640x192"),
        "model stereo_640x192 has no pose network", _EVAL_OUT),
    # -- predict -------------------------------------------------------------------------------------------
    Row("predict/empty-folder", 1, lambda w, t: [
        "predict", _mkdir(t / "frames"), "--weights", w.resnet18, "--output-dir", "out"], "frames", ("out",)),
    Row("predict/file-that-is-not-an-image", 1, lambda w, t: [
        "predict", _write(t / "photo.jpg", b"GIF89a but not really"), "--weights", w.resnet18], "photo.jpg",
        _DISP_OUT),
    Row("predict/missing-file", 1, lambda w, t: ["predict", t / "no_such_photo.jpg", "--weights", w.resnet18],
        "no_such_photo.jpg"),
    Row("predict/unknown-model", 2, lambda w, t: ["predict", _photo(t), "--model", "mono_9999x1"], "mono_9999x1",
        _DISP_OUT),
    Row("predict/zero-batch-size", 2, lambda w, t: ["predict", _photo(t), "--weights", w.resnet18,
                                                    "--batch-size", "0"], "--batch-size", _DISP_OUT),
    Row("predict/checkpoint-size-not-multiple-of-32", 1, lambda w, t: [
        "predict", _photo(t), "--weights", w.odd_size], "100x190", _DISP_OUT),
    Row("predict/truncated-onnx-model", 1, lambda w, t: [
        "predict", _photo(t), "--weights", _write(t / "model.onnx", _plain_onnx()[:40])], "model.onnx", _DISP_OUT),
    Row("predict/truncated-torchscript-model", 1, lambda w, t: [
        "predict", _photo(t), "--weights", _write(t / "model.pt", _torchscript_bytes()[:-200])], "corrupt or truncated",
        _DISP_OUT),
    Row("predict/onnx-model-not-written-by-md2", 1, lambda w, t: [
        "predict", _photo(t), "--weights", _write(t / "model.onnx", _plain_onnx())], "no md2 metadata", _DISP_OUT),
    Row("predict/a-checkpoint-file-instead-of-its-folder", 1, lambda w, t: [
        "predict", _photo(t), "--weights", w.resnet18 / "encoder.pth"], "give a weights folder", _DISP_OUT),
    Row("predict/file-that-is-not-a-video", 1, lambda w, t: [
        "predict", _write(t / "clip.mp4", b"\x00\x00\x00\x18ftypmp42 and nothing else"), "--weights", w.resnet18],
        "clip.mp4", ("clip_disp.mp4",)),
    Row("predict/video-without-frames", 1, lambda w, t: ["predict", _clip(t, 0), "--weights", w.resnet18],
        "has no frames", ("clip_disp.mp4",)),
    Row("predict/video-start-not-a-time", 2, lambda w, t: [
        "predict", _clip(t), "--weights", w.resnet18, "--start", "soon"], "--start", ("clip_disp.mp4",)),
    Row("predict/video-end-before-start", 2, lambda w, t: [
        "predict", _clip(t), "--weights", w.resnet18, "--start", "2f", "--end", "1f"], "--end", ("clip_disp.mp4",)),
    Row("predict/video-option-for-a-photo", 2, lambda w, t: [
        "predict", _photo(t), "--weights", w.resnet18, "--every", "2"], "--every", _DISP_OUT),
    Row("predict/video-output-exists", 1, lambda w, t: [
        "predict", _clip(t), "--weights", w.resnet18, "--output-dir", _write(t / "out" / "clip_disp.mp4", b"old").parent],
        "--overwrite"),
    Row("predict/point-cloud-fov-zero", 2, lambda w, t: [
        "predict", _photo(t), "--weights", w.resnet18, "--point-cloud", "--fov", "0"], "--fov",
        _DISP_OUT + ("photo.ply",)),
    Row("predict/point-cloud-intrinsics-nan", 2, lambda w, t: [
        "predict", _photo(t), "--weights", w.resnet18, "--point-cloud", "--intrinsics", "nan,70,48,16"],
        "--intrinsics", _DISP_OUT + ("photo.ply",)),
    Row("predict/point-cloud-negative-focal-length", 2, lambda w, t: [
        "predict", _photo(t), "--weights", w.resnet18, "--point-cloud", "--intrinsics", "-70,70,48,16"],
        "focal lengths", _DISP_OUT + ("photo.ply",)),
    Row("predict/point-cloud-corrupt-saved-scale", 1, lambda w, t: [
        "predict", _photo(t), "--weights", _with_scale(w, t, "{not json"), "--point-cloud"], "md2_scale.json",
        _DISP_OUT + ("photo.ply",)),
    Row("predict/video-point-cloud-without-pose-network", 1, lambda w, t: [
        "predict", _clip(t), "--weights", _depth_only(w, t), "--point-cloud"], "pose_encoder.pth",
        ("clip_disp.mp4", "clip.ply")),
    # -- export --------------------------------------------------------------------------------------------
    Row("export/model-and-weights", 2, lambda w, t: [
        "export", "--model", "mono_640x192", "--weights", w.resnet18, "--output", "m.onnx"], "not both", ("m.onnx",)),
    Row("export/no-model", 2, lambda w, t: ["export", "--output", "m.onnx"], "--model NAME", ("m.onnx",)),
    Row("export/unknown-model", 2, lambda w, t: ["export", "--model", "mono_9999x1", "--output", "m.onnx"],
        "mono_9999x1", ("m.onnx",)),
    Row("export/opset-below-the-range", 2, lambda w, t: [
        "export", "--weights", w.resnet18, "--output", "m.onnx", "--opset", "9"], "opsets 11 to 25", ("m.onnx",)),
    Row("export/opset-for-torchscript", 2, lambda w, t: [
        "export", "--weights", w.resnet18, "--output", "m.pt", "--opset", "17"], "--opset applies", ("m.pt",)),
    Row("export/suffix-of-another-format", 2, lambda w, t: [
        "export", "--weights", w.resnet18, "--format", "onnx", "--output", "m.pt"], "must end in .onnx", ("m.pt",)),
    Row("export/unknown-suffix", 2, lambda w, t: ["export", "--weights", w.resnet18, "--output", "m.tflite"],
        "m.tflite", ("m.tflite",)),
    Row("export/unknown-precision", 2, lambda w, t: [
        "export", "--weights", w.resnet18, "--output", "m.pt", "--precision", "int8"], "int8", ("m.pt",)),
    Row("export/min-depth-above-max-depth", 2, lambda w, t: [
        "export", "--weights", w.resnet18, "--output", "m.pt", "--min-depth", "80", "--max-depth", "10"],
        "--min-depth", ("m.pt",)),
    Row("export/with-pose-but-no-pose-network", 1, lambda w, t: [
        "export", "--weights", _depth_only(w, t), "--output", "m.pt", "--with-pose"], "pose_encoder.pth",
        ("m.pt", "m_pose.pt")),
    Row("export/stereo-model-with-pose", 2, lambda w, t: [  # refused before any download
        "export", "--model", "stereo_640x192", "--output", "m.pt", "--with-pose"], "no pose network", ("m.pt",)),
    Row("export/truncated-checkpoint", 1, lambda w, t: [
        "export", "--weights", _corrupt_weights(w, t), "--output", "m.pt"], "encoder.pth", ("m.pt",)),
    Row("export/output-folder-is-a-file", 1, lambda w, t: [
        "export", "--weights", w.resnet18, "--output", _write(t / "taken", "a file") / "m.pt"], "taken"),
    # -- synth ---------------------------------------------------------------------------------------------
    Row("synth/zero-width", 2, lambda w, t: ["synth", "out", "--width", "0"], "--width", ("out",)),
    Row("synth/negative-height", 2, lambda w, t: ["synth", "out", "--height", "-5"], "--height", ("out",)),
    Row("synth/too-few-frames", 2, lambda w, t: ["synth", "out", "--frames", "2"], "--frames", ("out",)),
    Row("synth/output-is-a-file", 2, lambda w, t: [
        "synth", _write(t / "taken", "a file"), "--drives", "1", "--frames", "3", "--width", "64", "--height",
        "32"], "taken"),
]


def _npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def world(synth_raw, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("bad_inputs_world")
    torch.manual_seed(0)
    folders = {}
    for layers in (18, 50):
        folders[layers] = random_model(root / f"resnet{layers}", use_stereo=False, pose=True, layers=layers)
    odd_size = random_model(root / "odd_size", use_stereo=False, height=100, width=190)
    splits = root / "splits"
    shutil.copytree(synth_raw / "splits", splits)
    export_gt(synth_raw, "synth", splits_dir=splits, jobs=1, progress=False)
    home = root / "home"
    home.mkdir()
    return World(synth_raw, splits, folders[18], folders[50], odd_size, home)


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under ``roots`` (symlinks not followed): files by size and mtime, links by target."""
    seen: dict[str, tuple] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(folder) / name
                info = path.lstat()
                if path.is_symlink():
                    seen[str(path)] = ("link", os.readlink(path))
                elif path.is_dir():
                    seen[str(path)] = ("dir",)
                else:
                    seen[str(path)] = ("file", info.st_size, info.st_mtime_ns)
    return seen


def run_md2_in(cwd: Path, home: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed ``md2`` console script in a process of its own (tests/md2_process.py: forked from a process
    that imported torch once, as tests/cli/test_app.py's run_md2), from ``cwd``, offline, one thread; ``env`` on
    top of that environment."""
    environment = {**os.environ, "COLUMNS": "200", "MD2_HOME": str(home), "MD2_ZOO_URL": OFFLINE,
                   "MD2_SPLITS_URL": OFFLINE, "OMP_NUM_THREADS": "1", **(env or {})}
    environment.pop("MD2_DEBUG", None)
    return md2_process.run(args, cwd=cwd, env=environment, timeout=120)


@dataclass
class Outcome:
    """What one row's run did: the process, and its folder's files before and after."""

    result: subprocess.CompletedProcess
    before: dict[str, tuple]
    after: dict[str, tuple]
    folder: Path


def run_table(rows: list, world: World, tmp_path_factory, workers: int) -> dict[str, Outcome | BaseException]:
    """Every row run once, ``workers`` md2 processes at a time, each in a folder of its own (with the row's ``env``
    when it has one). The shared fixtures are snapshotted around the whole table; each row's folder around its
    run. A row whose build fails (or skips: its data absent) holds that exception, raised by the row's own test."""
    shared_before = snapshot(world.data, world.splits, world.home, world.resnet18)

    def run(row) -> Outcome | BaseException:
        try:
            folder = tmp_path_factory.mktemp(row.id.replace("/", "-"))
            args = row.build(world, folder)
            before = snapshot(folder)
            result = run_md2_in(folder, world.home, *args, env=getattr(row, "env", None))
            return Outcome(result, before, snapshot(folder), folder)
        except BaseException as error:  # noqa: BLE001 -- reported (or skipped) by the row's own test
            return error

    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = dict(zip((row.id for row in rows), pool.map(run, rows)))
    done["shared fixtures"] = (shared_before, snapshot(world.data, world.splits, world.home, world.resnet18))
    return done


@pytest.fixture(scope="module")
def outcomes(world, tmp_path_factory) -> dict[str, Outcome | BaseException]:
    return run_table(BAD_INPUTS, world, tmp_path_factory, workers=3)


def assert_one_clear_line(row, outcome: Outcome | BaseException) -> None:
    """A row's run: one ``error:`` line saying ``row.says`` (and not ``row.not_says`` where the row has one), no
    traceback, ``row.code``, every file of its folder unchanged and ``row.absent`` not created."""
    if isinstance(outcome, BaseException):
        raise outcome
    result = outcome.result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert row.says in lines[0], lines[0]
    not_says = getattr(row, "not_says", None)
    assert not not_says or not_says not in lines[0], lines[0]
    assert result.returncode == row.code, lines[0]
    assert outcome.after == outcome.before, sorted(set(outcome.after.items()) ^ set(outcome.before.items()))
    for relative in row.absent:
        assert not (outcome.folder / relative).exists(), relative


@pytest.mark.parametrize("row", BAD_INPUTS, ids=[row.id for row in BAD_INPUTS])
def test_bad_input_is_one_clear_line_and_touches_nothing(row, outcomes):
    assert_one_clear_line(row, outcomes[row.id])


def test_no_row_touched_the_shared_fixtures(outcomes):
    before, after = outcomes["shared fixtures"]
    assert after == before, sorted(set(after.items()) ^ set(before.items()))


def test_the_table_covers_every_command_with_enough_rows():
    from tests.cli.test_app import COMMANDS

    assert len(BAD_INPUTS) >= 32 and len({row.id for row in BAD_INPUTS}) == len(BAD_INPUTS)
    assert {row.id.split("/")[0] for row in BAD_INPUTS} == set(COMMANDS)
    assert {row.code for row in BAD_INPUTS} == {1, 2}
