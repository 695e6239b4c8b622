"""md2's synthetic street scenes rendered into the real KITTI layouts (tests and the no-download demo)."""

from md2.data.synth.writer import SynthOptions, drive_name, drive_poses, generate_dataset

__all__ = ["SynthOptions", "drive_name", "drive_poses", "generate_dataset"]
