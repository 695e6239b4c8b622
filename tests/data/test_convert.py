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
from tests.hostile_files import bomb_png, write_png16

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


# -- hostile trees (issue 24 items 1-3, issue 28 item 4) -----------------------------------------------------

REAL_DRIVE = Path("2011_09_26") / "2011_09_26_drive_0060_sync" / "image_02" / "data"


def test_a_jpeg_of_another_real_frame_beside_a_png_is_not_taken_for_its_conversion(shared_dir, tmp_path):
    # Real KITTI frames of a traffic jam: frame 1 hardly differs from frame 0, yet it is another picture.
    source = shared_dir / "kitti_real" / REAL_DRIVE
    folder = tmp_path / "kitti" / REAL_DRIVE
    folder.mkdir(parents=True)
    png = folder / "0000000000.png"
    shutil.copyfile(source / "0000000000.png", png)
    with Image.open(source / "0000000001.png") as other:
        other.convert("RGB").save(png.with_suffix(".jpg"), quality=40)
    before = digest(png), digest(png.with_suffix(".jpg"))
    report = convert_tree(tmp_path / "kitti", jobs=1, progress=False)
    assert (report.converted, report.skipped, len(report.failed)) == (0, 0, 1)
    assert "is not the conversion of 0000000000.png" in report.failed[0] and "both kept" in report.failed[0]
    assert (digest(png), digest(png.with_suffix(".jpg"))) == before


def test_a_real_frame_converted_with_keep_png_then_resumed_deletes_the_png(shared_dir, tmp_path):
    folder = tmp_path / "kitti" / REAL_DRIVE
    shutil.copytree(shared_dir / "kitti_real" / REAL_DRIVE, folder)
    first = convert_tree(tmp_path / "kitti", jobs=1, keep_png=True, progress=False)
    again = convert_tree(tmp_path / "kitti", jobs=1, progress=False)
    assert (first.converted, again.skipped, again.failed) == (10, 10, [])
    assert camera_pngs(tmp_path / "kitti") == []


def test_a_jpeg_of_the_same_png_from_another_encoder_counts_as_done(tree):
    png = tree / DRIVE / "image_02" / "data" / "0000000002.png"
    with Image.open(png) as image:  # the same picture, other settings: no optimisation of Huffman tables, 4:4:4
        image.save(png.with_suffix(".jpg"), quality=92, subsampling=0, optimize=True)
    report = convert_tree(tree / DRIVE / "image_02", jobs=1, progress=False)
    assert report.failed == [] and report.skipped == 1 and not png.exists()


def test_a_jpeg_of_another_synthetic_frame_keeps_both_and_the_rest_is_converted(tree):
    folder = tree / DRIVE / "image_02" / "data"
    png, count = folder / "0000000003.png", len(camera_pngs(folder))
    with Image.open(folder / "0000000005.png") as other:
        other.save(png.with_suffix(".jpg"), quality=40)
    wrong = digest(png.with_suffix(".jpg"))
    report = convert_tree(folder, jobs=2, progress=False)
    assert (report.converted, len(report.failed)) == (count - 1, 1) and str(png.with_suffix(".jpg")) in report.failed[0]
    assert png.exists() and digest(png.with_suffix(".jpg")) == wrong and camera_pngs(folder) == [png]


@pytest.mark.parametrize("channels", [1, 3], ids=["grey-I;16", "rgb-48-bit"])
def test_a_16_bit_png_in_a_camera_folder_is_reported_and_left_alone(tree, channels):
    folder = tree / DRIVE / "image_02" / "data"
    shape = (80, 256) if channels == 1 else (80, 256, 3)
    png = write_png16(folder / "0000000004.png", np.random.default_rng(0).integers(0, 65535, shape, np.uint16))
    before = digest(png)
    report = convert_tree(tree, jobs=2, progress=False)
    assert len(report.failed) == 1 and "not an 8-bit camera image" in report.failed[0] and "16-bit" in report.failed[0]
    assert digest(png) == before and not png.with_suffix(".jpg").exists()
    assert camera_pngs(tree) == [png]


def test_a_decompression_bomb_is_reported_and_the_rest_of_the_folder_converted(tree):
    folder = tree / DRIVE / "image_02" / "data"
    count = len(camera_pngs(folder))
    bomb = folder / "0000000099.png"
    bomb.write_bytes(bomb_png())
    report = convert_tree(folder, jobs=1, progress=False)
    assert report.converted == count and len(report.failed) == 1
    assert str(bomb) in report.failed[0] and "decompression bomb" in report.failed[0]
    assert bomb.exists() and not bomb.with_suffix(".jpg").exists()


def test_a_symlinked_camera_folder_is_followed_and_converted_where_it_lives(tree, tmp_path):
    elsewhere = tmp_path / "other_disk" / "image_02_data"
    camera, total = tree / DRIVE / "image_02", len(camera_pngs(tree))
    shutil.move(camera / "data", elsewhere)
    (camera / "data").symlink_to(elsewhere, target_is_directory=True)
    (tree / DRIVE / "loop").symlink_to(tree / DRIVE, target_is_directory=True)  # a link to an ancestor: no loop
    count = len(list(elsewhere.glob("*.png")))
    assert len(camera_pngs(tree)) == total  # each image once, not again through the loop
    report = convert_tree(tree, jobs=2, progress=False)
    assert report.failed == [] and report.converted == total and camera_pngs(tree) == []
    assert len(list(elsewhere.glob("*.jpg"))) == count and not list(elsewhere.glob("*.png"))


def test_a_symlinked_png_counts_no_bytes_freed(tree, tmp_path):
    folder = tree / DRIVE / "image_02" / "data"
    for png in sorted(folder.glob("*.png")):
        target = tmp_path / "kept" / png.name
        target.parent.mkdir(exist_ok=True)
        shutil.move(png, target)
        png.symlink_to(target)
    report = convert_tree(folder, jobs=1, progress=False)
    assert report.failed == [] and report.converted == len(list(folder.glob("*.jpg")))
    assert report.bytes_before == 0 and all(p.exists() for p in (tmp_path / "kept").iterdir())
