"""Ground truth on real KITTI scans: md2's depth maps and export-gt's file against a plain transcription of the
reference's rule (tests/data/reference_depth.py), where real scans put points on both ends of neighbouring rows."""

from __future__ import annotations

import numpy as np
import pytest

from md2.data.calib import generate_depth_map, velodyne_to_image
from md2.data.groundtruth import load_gt_depths
from tests.cli.test_app import run_md2
from tests.data.reference_depth import reference_depth_map, scan_points
from tests.real.conftest import DATE, DRIVE, FRAMES, scan_path, write_split


def test_export_gt_writes_the_reference_maps_of_the_real_scans(kitti_real, tmp_path):
    splits = write_split(tmp_path / "splits", "real", [f"{DRIVE} {frame} l" for frame in FRAMES])
    result = run_md2("export-gt", "--data-path", str(kitti_real), "--split", "real", "--splits-dir", str(splits))
    assert result.returncode == 0, result.stderr
    assert "wrote 10 ground-truth depth maps" in result.stderr
    maps = load_gt_depths(splits / "real" / "gt_depths.npz")
    P, shape = velodyne_to_image(kitti_real / DATE, cam=2)
    joined = 0
    for frame, depth in zip(FRAMES, maps):
        points = scan_points(scan_path(kitti_real, frame))
        expected = reference_depth_map(P, shape, points, vel_depth=True).astype(np.float32)
        assert depth.dtype == np.float32 and depth.shape == (375, 1242)
        np.testing.assert_array_equal(depth, expected, err_msg=f"frame {frame}")
        joined += np.count_nonzero(depth[1:, 0]) + np.count_nonzero(depth[:-1, -1])
    assert joined > 0  # the real scans do reach both border columns
    # Frame 9, row 177, column 0: the reference's 3.703 m, which the nearest point of that pixel alone (33.754 m)
    # is not: pixel (176, 1241) shares its key and comes first in the scan.
    assert maps[9][177, 0] == pytest.approx(3.703, abs=5e-4)


@pytest.mark.parametrize("frame", [0, 9])
def test_camera_depth_maps_of_real_scans_follow_the_reference_rule(kitti_real, frame):
    """The training loader's maps (camera z, vel_depth off), at full precision."""
    P, shape = velodyne_to_image(kitti_real / DATE, cam=2)
    depth = generate_depth_map(kitti_real / DATE, scan_path(kitti_real, frame), cam=2)
    expected = reference_depth_map(P, shape, scan_points(scan_path(kitti_real, frame)))
    np.testing.assert_array_equal(depth, expected)
    assert np.count_nonzero(depth) > 10000
