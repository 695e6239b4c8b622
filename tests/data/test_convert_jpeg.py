"""PNG -> JPEG conversion: the reference's JPEG settings, safety under SIGKILL, resume, and what is never touched."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from md2.data.convert import camera_pngs, convert_tree
from md2.data.synth import SynthOptions, generate_dataset
from tests.cli.test_app import run_md2

# The IJG standard luminance table (JPEG spec Annex K), scaled as libjpeg does for quality 92.
LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22,
        29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103,
        121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
          47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def scaled(table, quality=92):
    factor = 200 - 2 * quality
    return [min(max((value * factor + 50) // 100, 1), 255) for value in table]


def sampling_factors(path: Path) -> list[tuple[int, int]]:
    """(h, v) sampling factor of each component, read from the SOF0 marker."""
    data = path.read_bytes()
    at = data.index(b"\xff\xc0")
    components = data[at + 9]
    return [(data[at + 11 + 3 * i] >> 4, data[at + 11 + 3 * i] & 15) for i in range(components)]


@pytest.fixture
def drive_copy(synth_raw, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synth_raw / "2011_09_26", root / "2011_09_26")
    shutil.copytree(synth_raw / "sequences", root / "sequences")
    return root


def test_jpegs_match_the_reference_conversion(drive_copy):
    pngs = camera_pngs(drive_copy)
    originals = {p: np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in pngs[:3]}
    report = convert_tree(drive_copy, jobs=1)
    assert report.converted == len(pngs) > 0 and not report.failed
    for png, pixels in originals.items():
        jpeg = png.with_suffix(".jpg")
        assert not png.exists()
        assert sampling_factors(jpeg) == [(2, 2), (1, 1), (1, 1)]
        with Image.open(jpeg) as image:
            assert list(image.quantization[0]) == scaled(LUMA)
            assert list(image.quantization[1]) == scaled(CHROMA)
            decoded = np.asarray(image.convert("RGB"), dtype=np.float64)
        psnr = 10 * np.log10(255 ** 2 / np.mean((decoded - pixels) ** 2))
        assert decoded.shape == pixels.shape and psnr > 30


def test_ground_truth_pngs_are_never_touched(drive_copy):
    gt = sorted(drive_copy.rglob("proj_depth/**/*.png"))
    assert gt
    convert_tree(drive_copy, jobs=1)
    assert all(p.exists() for p in gt)


def test_keep_png_and_rerun_resumes(drive_copy):
    first = convert_tree(drive_copy, jobs=2, keep_png=True)
    assert first.converted > 0 and all(p.with_suffix(".jpg").exists() for p in camera_pngs(drive_copy))
    second = convert_tree(drive_copy, jobs=2)
    assert second.converted == 0 and second.skipped == first.converted
    assert camera_pngs(drive_copy) == []


def every_frame_is_valid(root: Path) -> bool:
    frames = {p.with_suffix("") for p in root.rglob("image_0*/data/*") if p.suffix in (".png", ".jpg")}
    for stem in frames:
        ok = False
        for suffix in (".png", ".jpg"):
            path = stem.with_suffix(suffix)
            if path.exists():
                try:
                    with Image.open(path) as image:
                        image.load()
                    ok = True
                except OSError:
                    pass
        if not ok:
            return False
    return True


def test_sigkill_loses_no_image_and_a_rerun_finishes(tmp_path):
    root = generate_dataset(tmp_path / "big", SynthOptions(drives=1, frames=40, width=640, height=192, lidar=False))
    count = len(camera_pngs(root))
    executable = os.path.join(os.path.dirname(sys.executable), "md2")
    process = subprocess.Popen([executable, "convert-jpeg", str(root), "--jobs", "1", "--quiet"])
    deadline = time.time() + 60
    while time.time() < deadline and len(camera_pngs(root)) > count * 0.6:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < len(camera_pngs(root)) < count  # killed in the middle
    assert every_frame_is_valid(root)
    assert run_md2("convert-jpeg", str(root), "--quiet").returncode == 0
    assert camera_pngs(root) == [] and every_frame_is_valid(root)
    assert len(list(root.rglob("image_0*/data/*.jpg"))) == count


def test_write_error_is_clear_and_keeps_the_png(drive_copy):
    png = drive_copy / "2011_09_26" / "2011_09_26_drive_0001_sync" / "image_02" / "data" / "0000000003.png"
    png.with_suffix(".jpg").mkdir()  # the JPEG cannot be written there
    result = run_md2("convert-jpeg", str(drive_copy), "--quiet", "--jobs", "1")
    assert result.returncode == 1 and "0000000003.jpg" in result.stderr
    assert png.exists() and len(result.stderr.strip().splitlines()) == 1


def test_missing_folder_is_one_line(tmp_path):
    result = run_md2("convert-jpeg", str(tmp_path / "nothing"))
    assert result.returncode == 1 and "not found" in result.stderr and len(result.stderr.strip().splitlines()) == 1
