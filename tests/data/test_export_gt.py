"""md2 export-gt on synthetic drives: lidar and benchmark ground truth, both file formats, failures."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from md2.data.calib import generate_depth_map
from md2.data.groundtruth import export_gt, load_gt_depths
from md2.errors import DataError
from tests.cli.test_app import run_md2


@pytest.fixture
def splits(synth_raw, tmp_path):
    """A splits folder with the synthetic test lines as 'eigen', 'eigen_benchmark' and 'mine'."""
    root = tmp_path / "splits"
    for name in ("eigen", "eigen_benchmark", "mine"):
        shutil.copytree(synth_raw / "splits" / "synth", root / name)
    return root


def test_eigen_export_is_the_lidar_projection_in_test_file_order(synth_raw, splits):
    path, count = export_gt(synth_raw, "eigen", splits_dir=splits, jobs=2)
    lines = (splits / "eigen" / "test_files.txt").read_text().splitlines()
    depths = load_gt_depths(path)
    assert count == len(lines) == len(depths)
    for line, depth in zip(lines[::5], depths[::5]):
        folder, frame, _ = line.split()
        expected = generate_depth_map(synth_raw / "2011_09_26",
                                      synth_raw / folder / "velodyne_points" / "data" / f"{int(frame):010d}.bin",
                                      cam=2, vel_depth=True)
        assert depth.dtype == np.float64 and np.array_equal(depth, expected)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files)[:2] == ["0000", "0001"]


def test_eigen_benchmark_export_reads_the_projected_pngs(synth_raw, splits):
    path, _ = export_gt(synth_raw, "eigen_benchmark", splits_dir=splits)
    depth = load_gt_depths(path)[0]
    assert depth.dtype == np.float32 and depth.shape == (80, 256) and depth.max() > 1


def test_reference_npz_with_an_object_array_loads(tmp_path):
    maps = [np.random.rand(4, 5), np.random.rand(3, 6)]
    data = np.empty(2, dtype=object)
    data[0], data[1] = maps
    np.savez_compressed(tmp_path / "gt_depths.npz", data=data)
    loaded = load_gt_depths(tmp_path / "gt_depths.npz")
    assert all(np.array_equal(a, b) for a, b in zip(loaded, maps))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    data = np.empty(1, dtype=object)
    data[0] = Evil()
    with open(tmp_path / "data.npy", "wb") as handle:
        np.lib.format.write_array(handle, data, allow_pickle=True)
    import zipfile
    with zipfile.ZipFile(tmp_path / "gt_depths.npz", "w") as archive:
        archive.write(tmp_path / "data.npy", "data.npy")
    with pytest.raises(DataError, match="safely"):
        load_gt_depths(tmp_path / "gt_depths.npz")


def test_missing_frame_is_named_and_nothing_is_written(synth_raw, splits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_raw / "2011_09_26", data / "2011_09_26")
    victim = data / "2011_09_26/2011_09_26_drive_0002_sync/velodyne_points/data/0000000004.bin"
    victim.unlink()
    with pytest.raises(DataError, match="0000000004.bin"):
        export_gt(data, "eigen", splits_dir=splits)
    assert sorted(p.name for p in (splits / "eigen").iterdir()) == ["test_files.txt", "train_files.txt",
                                                                    "val_files.txt"]


def test_cli_exports_and_reports(synth_raw, splits):
    result = run_md2("export-gt", "--data-path", str(synth_raw), "--split", "mine", "--splits-dir", str(splits))
    assert result.returncode == 0, result.stderr
    assert "wrote 12 ground-truth depth maps" in result.stderr
    missing = run_md2("export-gt", "--data-path", str(synth_raw), "--split", "nope", "--splits-dir", str(splits))
    assert missing.returncode == 1 and "no split 'nope'" in missing.stderr
