"""md2's synthetic street scenes rendered into the real KITTI layouts (tests and the no-download demo).

``generate_dataset(out, SynthOptions(drives=2, frames=20, seed=0, width=1242, height=375))`` or, the same,
``generate_dataset(out, drives=2, frames=20)``; ``drive_poses(seed, drive, frames)`` gives the exact camera
poses of a drive. Modules: scene (path, boxes, backdrop), texture (world-position colours), raycast, render
(cameras with md2's intrinsics, lidar), kitti_files (calibration and file formats), splits, writer.
"""

from md2.data.synth.kitti_files import DATE, drive_name
from md2.data.synth.render import BASELINE, Camera
from md2.data.synth.writer import SynthOptions, drive_poses, drive_scene, generate_dataset

__all__ = ["BASELINE", "DATE", "Camera", "SynthOptions", "drive_name", "drive_poses", "drive_scene",
           "generate_dataset"]
