"""PNG -> JPEG conversion on synthetic KITTI trees: the reference's JPEG settings, what is (never) converted,
resuming, and failures that keep every PNG."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from md2.data.convert import camera_pngs, convert_tree
from md2.errors import DataError

# JPEG spec (ITU T.81) Annex K tables K.1 (luminance) and K.2 (chrominance), in row-major order.
IJG_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
            14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
            49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
IJG_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
              47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32
DRIVE = Path("2011_09_26") / "2011_09_26_drive_0001_sync"


def ijg_scaled(table: list[int], quality: int) -> list[int]:
    """libjpeg's jpeg_set_quality: percentage 5000/q below 50, else 200 - 2q; baseline values clamped to 1..255."""
    percent = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(max((value * percent + 50) // 100, 1), 255) for value in table]


def sof0_sampling_factors(path: Path) -> list[tuple[int, int]]:
    """(horizontal, vertical) sampling factor per component, from the baseline frame header (SOF0)."""
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8"
    at = 2
    while data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        if marker == 0xC0:
            count = data[at + 9]
            return [(data[at + 11 + 3 * i] >> 4, data[at + 11 + 3 * i] & 0x0F) for i in range(count)]
        at += 2 + length
    raise AssertionError(f"no SOF0 marker in {path}")


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tree(synth_raw, tmp_path) -> Path:
    """A writable copy of the synthetic dataset: raw drives (with proj_depth PNGs) and odometry sequences."""
    root = tmp_path / "kitti_data"
    shutil.copytree(synth_raw, root, ignore=shutil.ignore_patterns("rendered_depth", "velodyne_points"))
    return root


def test_jpegs_have_the_reference_sampling_factors_and_quality_92_tables(tree):
    pngs = camera_pngs(tree)
    originals = {png: pixels(png) for png in pngs[::7]}
    report = convert_tree(tree, jobs=1, progress=False)
    assert report.converted == len(pngs) and report.skipped == 0 and report.failed == []
    for png, original in originals.items():
        jpeg = png.with_suffix(".jpg")
        assert not png.exists()
        assert sof0_sampling_factors(jpeg) == [(2, 2), (1, 1), (1, 1)]
        with Image.open(jpeg) as image:
            assert list(image.quantization[0]) == ijg_scaled(IJG_LUMA, 92)
            assert list(image.quantization[1]) == ijg_scaled(IJG_CHROMA, 92)
        decoded = pixels(jpeg)
        assert decoded.shape == original.shape
        psnr = 10 * np.log10(255 ** 2 / np.mean((decoded - original) ** 2))
        assert 30 < psnr < 60  # lossy, but close


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_converted_jpegs_have_the_permissions_of_new_files(tree):
    previous = os.umask(0o022)
    try:
        convert_tree(tree, jobs=1, progress=False)
    finally:
        os.umask(previous)
    assert {stat.S_IMODE(jpeg.stat().st_mode) for jpeg in tree.rglob("*.jpg")} == {0o644}  # not mkstemp's 0600


def test_report_counts_bytes_of_every_png_and_jpeg(tree):
    before = sum(png.stat().st_size for png in camera_pngs(tree))
    report = convert_tree(tree, jobs=1, progress=False)
    after = sum(jpeg.stat().st_size for jpeg in tree.rglob("*.jpg"))
    assert (report.bytes_before, report.bytes_after) == (before, after)
    assert report.bytes_saved == before - after > 0


def test_only_camera_images_are_converted(tree):
    expected = sorted([*tree.glob("*/*/image_0[0-3]/data/*.png"), *tree.glob("sequences/*/image_[0-3]/*.png")])
    untouched = [p for p in tree.rglob("*.png") if p not in set(expected)]
    extra = tree / "previews" / "image_02" / "0000000000.png"  # a PNG outside the camera folders
    extra.parent.mkdir(parents=True)
    shutil.copy(expected[0], extra)
    untouched.append(extra)
    assert any("proj_depth" in p.parts for p in untouched) and camera_pngs(tree) == expected
    hashes = {p: digest(p) for p in untouched}
    report = convert_tree(tree, jobs=2, progress=False)
    assert report.converted == len(expected)
    assert all(p.with_suffix(".jpg").is_file() and not p.exists() for p in expected)
    assert {p: digest(p) for p in untouched} == hashes
    assert not any(p.with_suffix(".jpg").exists() for p in untouched)


def test_a_camera_folder_can_be_converted_on_its_own(tree):
    folder = tree / DRIVE / "image_03" / "data"
    count = len(list(folder.glob("*.png")))
    assert convert_tree(folder, jobs=1, progress=False).converted == count > 0
    assert len(camera_pngs(tree)) > 0  # the rest of the tree is left for later


def test_grayscale_cameras_stay_single_channel(tree):
    gray = tree / DRIVE / "image_00" / "data" / "0000000000.png"
    gray.parent.mkdir(parents=True)
    with Image.open(tree / DRIVE / "image_02" / "data" / "0000000000.png") as image:
        image.convert("L").save(gray)
    convert_tree(gray.parent, jobs=1, progress=False)
    jpeg = gray.with_suffix(".jpg")
    with Image.open(jpeg) as image:
        assert image.mode == "L" and list(image.quantization[0]) == ijg_scaled(IJG_LUMA, 92)
    assert len(sof0_sampling_factors(jpeg)) == 1


def test_parallel_conversion_writes_the_same_bytes_as_serial(tree, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(tree, twin)
    convert_tree(tree, jobs=1, progress=False)
    convert_tree(twin, jobs=2, progress=False)
    ours = sorted(p.relative_to(tree) for p in tree.rglob("*.jpg"))
    assert ours == sorted(p.relative_to(twin) for p in twin.rglob("*.jpg")) and ours
    assert all(digest(tree / p) == digest(twin / p) for p in ours)


def test_keep_png_then_a_rerun_only_deletes_the_pngs(tree):
    pngs = camera_pngs(tree)
    first = convert_tree(tree, jobs=2, keep_png=True, progress=False)
    assert first.converted == len(pngs) and all(p.exists() and p.with_suffix(".jpg").exists() for p in pngs)
    jpeg_hashes = {p: digest(p.with_suffix(".jpg")) for p in pngs}
    again = convert_tree(tree, jobs=2, keep_png=True, progress=False)
    assert (again.converted, again.skipped) == (0, len(pngs))
    last = convert_tree(tree, jobs=2, progress=False)
    assert (last.converted, last.skipped) == (0, len(pngs)) and camera_pngs(tree) == []
    assert {p: digest(p.with_suffix(".jpg")) for p in pngs} == jpeg_hashes


def test_a_rerun_repairs_what_a_killed_run_left(tree):
    folder = tree / DRIVE / "image_02" / "data"
    count = len(camera_pngs(folder))
    shape = pixels(folder / "0000000001.png").shape
    convert_tree(folder, jobs=1, keep_png=True, progress=False)
    truncated, empty, wrong_size = (folder / f"000000000{i}.jpg" for i in (1, 2, 3))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    empty.write_bytes(b"")
    Image.new("RGB", (16, 16)).save(wrong_size)
    stale = folder / ".0000000004.jpg.x1y2z3.tmp"
    stale.write_bytes(b"\xff\xd8 half a jpeg")
    report = convert_tree(folder, jobs=1, progress=False)
    assert (report.converted, report.skipped, report.failed) == (3, count - 3, [])
    assert not stale.exists() and camera_pngs(folder) == []
    for jpeg in (truncated, empty, wrong_size):
        assert pixels(jpeg).shape == shape


def test_an_unreadable_png_is_reported_and_left_alone(tree):
    broken = tree / DRIVE / "image_02" / "data" / "0000000002.png"
    broken.write_bytes(broken.read_bytes()[:200])
    report = convert_tree(tree, jobs=2, progress=False)
    assert len(report.failed) == 1 and str(broken) in report.failed[0]
    assert broken.exists() and not broken.with_suffix(".jpg").exists()
    assert camera_pngs(tree) == [broken]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_write_error_names_the_jpeg_and_keeps_the_png(tree, jobs):
    png = tree / DRIVE / "image_02" / "data" / "0000000003.png"
    original = digest(png)
    png.with_suffix(".jpg").mkdir()  # a folder where the JPEG should go: the rename fails
    with pytest.raises(DataError, match="0000000003.jpg"):
        convert_tree(tree, jobs=jobs, progress=False)
    assert digest(png) == original
    assert not list(tree.rglob("*.tmp"))


def test_a_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        convert_tree(tmp_path / "nowhere", progress=False)


def test_progress_callback_sees_every_image(tree):
    seen: list[tuple[int, int]] = []
    total = len(camera_pngs(tree))
    convert_tree(tree, jobs=2, progress=lambda done, count: seen.append((done, count)))
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
