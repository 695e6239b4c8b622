"""``md2 export-gt`` through the real executable: what it prints, what it writes, and one-line errors."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from md2.data.groundtruth import load_gt_depths
from tests.cli.test_app import run_md2


@pytest.fixture
def splits(synth_raw, tmp_path) -> Path:
    root = tmp_path / "splits"
    for name in ("eigen", "eigen_benchmark", "mine"):
        shutil.copytree(synth_raw / "splits" / "synth", root / name)
    return root


def line_count(splits: Path, name: str) -> int:
    return sum(1 for line in (splits / name / "test_files.txt").read_text().splitlines() if line.strip())


@pytest.mark.parametrize("split, extra", [("eigen", []), ("mine", ["--jobs", "1"]), ("eigen_benchmark", [])])
def test_export_prints_where_and_how_many(synth_raw, splits, split, extra):
    result = run_md2("export-gt", "--data-path", str(synth_raw), "--split", split, "--splits-dir", str(splits), *extra)
    assert result.returncode == 0, result.stderr
    path = splits / split / "gt_depths.npz"
    count = line_count(splits, split)
    assert f"wrote {count} ground-truth depth maps to {path}" in result.stderr
    assert len(load_gt_depths(path)) == count


def test_source_option_and_quiet(synth_raw, splits):
    args = ["export-gt", "--data-path", str(synth_raw), "--splits-dir", str(splits), "--quiet"]
    assert run_md2(*args, "--split", "mine", "--source", "benchmark").stderr == ""
    benchmark = load_gt_depths(splits / "mine" / "gt_depths.npz")
    assert run_md2(*args, "--split", "mine", "--source", "lidar").returncode == 0
    lidar = load_gt_depths(splits / "mine" / "gt_depths.npz")
    assert not np.array_equal(benchmark[0], lidar[0])  # two different sources were used


def test_a_missing_scan_is_named_in_one_line_and_no_file_is_written(synth_raw, splits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_raw / "2011_09_26", data / "2011_09_26", ignore=shutil.ignore_patterns("rendered_depth"))
    scan = data / "2011_09_26" / "2011_09_26_drive_0002_sync" / "velodyne_points" / "data" / "0000000005.bin"
    scan.unlink()
    result = run_md2("export-gt", "--data-path", str(data), "--split", "eigen", "--splits-dir", str(splits))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and str(scan) in result.stderr.replace("\n", "")
    assert sorted(p.name for p in (splits / "eigen").iterdir()) == ["test_files.txt", "train_files.txt",
                                                                    "val_files.txt"]


@pytest.mark.parametrize("args, code, words", [
    (["--split", "nope"], 1, "no split 'nope'"),
    (["--split", "mine", "--source", "radar"], 2, "--source must be one of lidar, benchmark"),
    (["--split", "mine", "--jobs", "0"], 2, "--jobs"),
    (["--split", "mine", "--data-path", "{tmp}/nowhere"], 1, "data folder not found"),
])
def test_bad_input_is_one_line_with_the_exit_code(synth_raw, splits, tmp_path, args, code, words):
    base = ["export-gt", "--data-path", str(synth_raw), "--splits-dir", str(splits)]
    result = run_md2(*base, *(arg.format(tmp=tmp_path) for arg in args))
    assert result.returncode == code
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr
    assert not list(splits.rglob("gt_depths.npz"))


def test_a_full_disk_is_one_line_and_the_earlier_file_survives(synth_raw, splits):
    args = ["export-gt", "--data-path", str(synth_raw), "--split", "eigen", "--splits-dir", str(splits)]
    assert run_md2(*args, "--source", "benchmark").returncode == 0
    earlier = (splits / "eigen" / "gt_depths.npz").read_bytes()
    limit = 4096
    assert len(earlier) > limit

    def full_disk() -> None:
        # Writes past RLIMIT_FSIZE fail with EFBIG once SIGXFSZ is ignored: a disk that is full for this process.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    env = {key: value for key, value in os.environ.items() if key != "MD2_DEBUG"}
    md2 = os.path.join(os.path.dirname(sys.executable), "md2")
    result = subprocess.run([md2, *args, "--source", "lidar"], capture_output=True, text=True, timeout=120,
                            env={**env, "COLUMNS": "200"}, preexec_fn=full_disk)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "gt_depths.npz" in lines[0]
    assert (splits / "eigen" / "gt_depths.npz").read_bytes() == earlier
    assert sorted(p.name for p in (splits / "eigen").iterdir()) == ["gt_depths.npz", "test_files.txt",
                                                                    "train_files.txt", "val_files.txt"]


def test_an_empty_scan_is_one_line_naming_it_and_no_file_is_written(synth_raw, splits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_raw / "2011_09_26", data / "2011_09_26", ignore=shutil.ignore_patterns("rendered_depth"))
    scan = data / "2011_09_26" / "2011_09_26_drive_0001_sync" / "velodyne_points" / "data" / "0000000002.bin"
    scan.write_bytes(b"")
    result = run_md2("export-gt", "--data-path", str(data), "--split", "eigen", "--splits-dir", str(splits))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = result.stderr.replace("\n", "")
    assert len(result.stderr.strip().splitlines()) == 1 and str(scan) in message and "no point in the image" in message
    assert not (splits / "eigen" / "gt_depths.npz").exists()


def _drop_p_rect(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith("P_rect_02"))


def _text_p_rect(text: str) -> str:
    return "".join(("P_rect_02: 1 2 abc" if line.startswith("P_rect_02") else line) + "\n"
                   for line in text.splitlines())


@pytest.mark.parametrize("damage, words", [
    ("scan:1001", "has 1001 bytes, not a multiple of 16"),
    ("calib:drop", "calib_cam_to_cam.txt has no 'P_rect_02'"),
    ("calib:text", "calib_cam_to_cam.txt: 'P_rect_02' must be 12 numbers, got '1 2 abc'"),
])
def test_a_damaged_scan_or_calibration_is_one_line_and_the_earlier_file_survives(synth_raw, splits, tmp_path,
                                                                                 damage, words):
    data = tmp_path / "data"
    shutil.copytree(synth_raw / "2011_09_26", data / "2011_09_26", ignore=shutil.ignore_patterns("rendered_depth"))
    args = ["export-gt", "--data-path", str(data), "--split", "eigen", "--splits-dir", str(splits)]
    assert run_md2(*args).returncode == 0
    earlier = (splits / "eigen" / "gt_depths.npz").read_bytes()
    what, how = damage.split(":")
    if what == "scan":
        scan = data / "2011_09_26" / "2011_09_26_drive_0002_sync" / "velodyne_points" / "data" / "0000000003.bin"
        scan.write_bytes(scan.read_bytes()[:1001])
    else:
        calib = data / "2011_09_26" / "calib_cam_to_cam.txt"
        calib.write_text((_drop_p_rect if how == "drop" else _text_p_rect)(calib.read_text()))
    result = run_md2(*args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr.replace("\n", ""), result.stderr
    assert (splits / "eigen" / "gt_depths.npz").read_bytes() == earlier
