"""Ground-truth export and loading on synthetic KITTI drives: lidar and depth-benchmark sources, md2's and the
reference's npz formats, and failures that leave nothing half-written."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from md2.data.calib import generate_depth_map
from md2.data.groundtruth import export_gt, frame_keys, load_gt_depths
from md2.errors import DataError, UsageError

DATE = "2011_09_26"


@pytest.fixture
def splits(synth_raw, tmp_path) -> Path:
    """A --splits-dir with the synthetic test lines under the names eigen, eigen_benchmark and mine."""
    root = tmp_path / "splits"
    for name in ("eigen", "eigen_benchmark", "mine"):
        shutil.copytree(synth_raw / "splits" / "synth", root / name)
    return root


def split_lines(splits: Path, name: str = "eigen") -> list[tuple[str, int]]:
    return [(line.split()[0], int(line.split()[1]))
            for line in (splits / name / "test_files.txt").read_text().splitlines() if line.strip()]


def lidar_map(data: Path, folder: str, frame: int) -> np.ndarray:
    scan = data / folder / "velodyne_points" / "data" / f"{frame:010d}.bin"
    return generate_depth_map(data / folder.split("/")[0], scan, cam=2, vel_depth=True)


def benchmark_map(data: Path, folder: str, frame: int) -> np.ndarray:
    path = data / folder / "proj_depth" / "groundtruth" / "image_02" / f"{frame:010d}.png"
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64) / 256


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("split", ["eigen", "mine"])
def test_lidar_export_round_trips_the_projection_in_test_file_order(synth_raw, splits, split):
    path = export_gt(synth_raw, split, splits_dir=splits, jobs=3, progress=False)
    assert path == splits / split / "gt_depths.npz"
    depths = load_gt_depths(path)
    lines = split_lines(splits, split)
    assert len(depths) == len(lines) > 1
    for (folder, frame), depth in zip(lines, depths):
        expected = lidar_map(synth_raw, folder, frame)
        assert depth.dtype == np.float32 and depth.shape == expected.shape
        assert np.array_equal(depth, expected.astype(np.float32)) and (depth > 0).mean() > 0.01

def test_md2_npz_needs_no_pickle_and_is_keyed_by_position(synth_raw, splits):
    path = export_gt(synth_raw, "eigen", splits_dir=splits, progress=False)
    count = len(split_lines(splits))
    with np.load(path, allow_pickle=False) as archive:
        assert archive.files == frame_keys(count) == [f"{i:04d}" for i in range(count)]
        assert all(archive[key].dtype == np.float32 and archive[key].ndim == 2 for key in archive.files)

def test_keys_grow_beyond_four_digits_when_needed():
    assert frame_keys(3) == ["0000", "0001", "0002"]
    assert frame_keys(10_000)[-1] == "9999"
    keys = frame_keys(10_001)
    assert keys[0] == "00000" and keys[-1] == "10000" and keys == sorted(keys)

def test_eigen_benchmark_reads_the_projected_pngs_at_their_own_size(synth_raw, splits):
    depths = load_gt_depths(export_gt(synth_raw, "eigen_benchmark", splits_dir=splits, progress=False))
    for (folder, frame), depth in zip(split_lines(splits, "eigen_benchmark"), depths):
        expected = benchmark_map(synth_raw, folder, frame)
        assert depth.dtype == np.float32 and depth.shape == expected.shape
        assert np.array_equal(depth, expected.astype(np.float32)) and depth.max() > 1

def test_source_option_overrides_the_split_name(synth_raw, splits):
    lidar = load_gt_depths(export_gt(synth_raw, "eigen_benchmark", splits_dir=splits, source="lidar",
                                     progress=False))
    folder, frame = split_lines(splits)[0]
    assert np.array_equal(lidar[0], lidar_map(synth_raw, folder, frame).astype(np.float32))
    png = load_gt_depths(export_gt(synth_raw, "mine", splits_dir=splits, source="benchmark", progress=False))
    assert np.array_equal(png[0], benchmark_map(synth_raw, folder, frame).astype(np.float32))
    with pytest.raises(UsageError, match="radar"):
        export_gt(synth_raw, "mine", splits_dir=splits, source="radar", progress=False)

def test_a_split_of_your_own_without_scans_uses_the_benchmark_pngs(synth_raw, splits, tmp_path):
    data = tmp_path / "no_lidar"
    shutil.copytree(synth_raw / DATE, data / DATE, ignore=shutil.ignore_patterns("velodyne_points"))
    depths = load_gt_depths(export_gt(data, "mine", splits_dir=splits, progress=False))
    folder, frame = split_lines(splits, "mine")[0]
    assert np.array_equal(depths[0], benchmark_map(data, folder, frame).astype(np.float32))
    with pytest.raises(DataError, match="velodyne"):  # eigen is the lidar whatever exists
        export_gt(data, "eigen", splits_dir=splits, progress=False)

def test_parallel_and_serial_exports_are_equal(synth_raw, splits):
    serial = load_gt_depths(export_gt(synth_raw, "eigen", splits_dir=splits, jobs=1, progress=False))
    parallel = load_gt_depths(export_gt(synth_raw, "eigen", splits_dir=splits, jobs=4, progress=False))
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel, strict=True))

def test_progress_callback_sees_every_frame(synth_raw, splits):
    seen: list[tuple[int, int]] = []
    export_gt(synth_raw, "eigen", splits_dir=splits, progress=lambda done, total: seen.append((done, total)))
    count = len(split_lines(splits))
    assert seen == [(done, count) for done in range(1, count + 1)]

@pytest.mark.parametrize("split, victim", [
    ("eigen", "velodyne_points/data/0000000004.bin"),
    ("eigen_benchmark", "proj_depth/groundtruth/image_02/0000000004.png"),
])
def test_a_missing_frame_is_named_and_the_earlier_file_survives(synth_raw, splits, tmp_path, split, victim):
    data = tmp_path / "data"
    shutil.copytree(synth_raw / DATE, data / DATE, ignore=shutil.ignore_patterns("rendered_depth"))
    earlier = export_gt(data, split, splits_dir=splits, progress=False).read_bytes()
    missing = data / DATE / f"{DATE}_drive_0002_sync" / victim
    missing.unlink()
    with pytest.raises(DataError, match=str(missing)):
        export_gt(data, split, splits_dir=splits, jobs=2, progress=False)
    assert files_in(splits / split) == ["gt_depths.npz", "test_files.txt", "train_files.txt", "val_files.txt"]
    assert (splits / split / "gt_depths.npz").read_bytes() == earlier

def test_a_missing_frame_leaves_no_file_at_all(synth_raw, splits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_raw / DATE, data / DATE, ignore=shutil.ignore_patterns("rendered_depth"))
    (data / DATE / f"{DATE}_drive_0001_sync" / "velodyne_points" / "data" / "0000000006.bin").unlink()
    with pytest.raises(DataError, match="0000000006.bin"):
        export_gt(data, "eigen", splits_dir=splits, progress=False)
    assert files_in(splits / "eigen") == ["test_files.txt", "train_files.txt", "val_files.txt"]

def test_a_temporary_file_left_by_a_killed_run_is_removed(synth_raw, splits):
    stale = splits / "eigen" / ".gt_depths.abc123.tmp.npz"
    stale.write_bytes(b"PK half an archive")
    export_gt(synth_raw, "eigen", splits_dir=splits, progress=False)
    assert not stale.exists()

def test_odometry_lines_are_refused_with_the_line_number(synth_raw, splits):
    shutil.copy(synth_raw / "splits" / "odom" / "test_files_09.txt", splits / "mine" / "test_files.txt")
    with pytest.raises(DataError, match=r"test_files.txt, line 1"):
        export_gt(synth_raw, "mine", splits_dir=splits, progress=False)

def test_missing_data_folder_and_split_are_data_errors(synth_raw, splits, tmp_path):
    with pytest.raises(DataError, match="not found"):
        export_gt(tmp_path / "nowhere", "eigen", splits_dir=splits, progress=False)
    with pytest.raises(DataError, match="nope"):
        export_gt(synth_raw, "nope", splits_dir=splits, progress=False)

def test_reference_npz_with_an_object_array_loads(tmp_path):
    rng = np.random.default_rng(0)
    maps = [rng.random((4, 5), dtype=np.float32), rng.random((3, 6), dtype=np.float32)]
    data = np.empty(len(maps), dtype=object)  # what np.array(list of maps of different sizes) made in 2019
    data[:] = maps
    np.savez_compressed(tmp_path / "gt_depths.npz", data=data)
    loaded = load_gt_depths(tmp_path / "gt_depths.npz")
    assert len(loaded) == 2 and all(a.dtype == np.float32 and np.array_equal(a, b) for a, b in zip(loaded, maps))

def test_reference_npz_with_one_stacked_array_loads(tmp_path):
    stack = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # all maps the same size
    np.savez_compressed(tmp_path / "gt_depths.npz", data=stack)
    loaded = load_gt_depths(tmp_path / "gt_depths.npz")
    assert len(loaded) == 2 and np.array_equal(np.stack(loaded), stack)

def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    target = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (target,))

    data = np.empty(1, dtype=object)
    data[0] = Payload()
    np.savez(tmp_path / "gt_depths.npz", data=data)
    with pytest.raises(DataError, match="safely"):
        load_gt_depths(tmp_path / "gt_depths.npz")
    assert not target.exists()

@pytest.mark.parametrize("content", [{"depths": np.zeros((2, 2))}, {"0000": np.zeros(5)}, {}])
def test_files_that_are_not_ground_truth_are_named(tmp_path, content):
    path = tmp_path / "gt_depths.npz"
    np.savez(path, **content)
    with pytest.raises(DataError, match="gt_depths.npz"):
        load_gt_depths(path)

def test_missing_or_corrupt_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="export-gt"):
        load_gt_depths(tmp_path / "gt_depths.npz")
    (tmp_path / "gt_depths.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_gt_depths(tmp_path / "gt_depths.npz")

def test_members_are_deflated_like_savez_compressed(synth_raw, splits):
    path = export_gt(synth_raw, "eigen", splits_dir=splits, progress=False)
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}


@pytest.mark.parametrize("scan_bytes", [b"", np.full((50, 4), np.nan, dtype=np.float32).tobytes(),
                                        np.array([[-5.0, 0, 0, 1]] * 3, dtype=np.float32).tobytes()],
                         ids=["empty", "all NaN", "all behind"])
def test_a_scan_with_no_point_in_the_image_is_named_and_nothing_is_written(synth_raw, splits, tmp_path,
                                                                            scan_bytes):
    data = tmp_path / "data"
    shutil.copytree(synth_raw / DATE, data / DATE, ignore=shutil.ignore_patterns("rendered_depth"))
    scan = data / DATE / f"{DATE}_drive_0001_sync" / "velodyne_points" / "data" / "0000000004.bin"
    scan.write_bytes(scan_bytes)
    with pytest.raises(DataError, match=rf"{scan}.*test line '{DATE}/{DATE}_drive_0001_sync 4 l'.*no point"):
        export_gt(data, "eigen", splits_dir=splits, progress=False)
    assert files_in(splits / "eigen") == ["test_files.txt", "train_files.txt", "val_files.txt"]


def test_a_depth_png_with_no_valid_pixel_is_named(synth_raw, splits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_raw / DATE, data / DATE, ignore=shutil.ignore_patterns("rendered_depth"))
    png = data / DATE / f"{DATE}_drive_0002_sync" / "proj_depth" / "groundtruth" / "image_02" / "0000000003.png"
    with Image.open(png) as image:
        size = image.size
    Image.fromarray(np.zeros(size[::-1], dtype=np.uint16)).save(png)
    with pytest.raises(DataError, match=rf"{png}.*no valid pixel"):
        export_gt(data, "eigen_benchmark", splits_dir=splits, progress=False)
