"""One photo's point cloud, from the predict pipeline's finishing step: NAME.ply and NAME_cloud.png."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from md2.core.pictures import read_rgb
from md2.core.pointcloud.backproject import CameraPoints, depth_from_disparity
from md2.core.pointcloud.intrinsics import CameraChoice
from md2.core.pointcloud.ply import write_ply
from md2.core.pointcloud.render import render_cloud, view_for

VIEW_SAMPLE = 20000
"""Points at most that frame the rendered view (a coarse grid of the depth map)."""
RENDER_POINTS = 4 * 480 * 320
"""Points at most drawn into NAME_cloud.png: about four per pixel of the picture; a larger cloud is drawn from
a coarser grid (a 12 MP photo's picture takes 0.5 s instead of 10)."""


@dataclass(frozen=True)
class CloudOptions:
    """What ``--point-cloud`` writes and in which units.

    depth_factor multiplies disp_to_depth's depth (``net_depth_range`` = its min_depth, max_depth): 5.4 for a
    stereo model, the scale ``evaluate-depth --save-scale`` stored for a mono one, else 1; ``units`` says which
    (in the PLY header and the summary line). ``max_depth`` (in those units) drops far points; ``stride`` keeps
    every N-th pixel of every N-th row; ``voxel`` is the fused video cloud's cell size (same units).
    """

    camera: CameraChoice = field(default_factory=CameraChoice)
    stride: int = 1
    max_depth: float | None = None
    voxel: float = 0.1
    depth_factor: float = 1.0
    units: str = "the network's units (no metric scale)"
    net_depth_range: tuple[float, float] = (0.1, 100.0)
    pose_weights: Path | None = None
    """Videos: the weights folder holding pose_encoder.pth and pose.pth."""

    def depth(self, disp: np.ndarray) -> np.ndarray:
        """(H, W) sigmoid disparity -> depth in the cloud's units, float32."""
        depth = depth_from_disparity(disp, *self.net_depth_range)
        return depth * np.float32(self.depth_factor) if self.depth_factor != 1.0 else depth


def cloud_comments(source: str, cloud: CameraPoints, options: CloudOptions) -> list[str]:
    return [f"md2 point cloud of {source}", f"units: {options.units}",
            "frame: the camera's, x right, y down, z forward (KITTI / OpenCV)",
            f"intrinsics: {cloud.camera.describe()}",
            f"stride {cloud.stride}" + (f", max depth {cloud.max_depth:g}" if cloud.max_depth is not None else "")]


def write_photo_cloud(stem: Path, photo: Path, disp_full: np.ndarray, options: CloudOptions) -> list[Path]:
    """STEM.ply and STEM_cloud.png of ``photo`` from its (H, W) disparity at the photo's size (the photo is
    read again here, in a worker thread, for its colours and EXIF)."""
    rgb = np.asarray(read_rgb(photo))
    height, width = disp_full.shape
    camera = options.camera.resolve_for(photo, width, height)
    cloud = CameraPoints(options.depth(disp_full), rgb, camera, options.stride, options.max_depth)
    return write_cloud_files(stem, cloud, cloud_comments(photo.name, cloud, options))


def write_cloud_files(stem: Path, cloud: CameraPoints, comments: list[str]) -> list[Path]:
    count = cloud.count()
    ply = write_ply(Path(f"{stem}.ply"), count, cloud.chunks(), comments)
    sample = [points for points, _ in _coarser(cloud, VIEW_SAMPLE, with_colours=False).chunks()]
    view = view_for(np.concatenate(sample) if sample else np.zeros((0, 3), np.float32))
    drawn = _coarser(cloud, RENDER_POINTS)
    return [ply, render_cloud(Path(f"{stem}_cloud.png"), view, drawn.chunks(), drawn.count())]


def _coarser(cloud: CameraPoints, points: int, with_colours: bool = True) -> CameraPoints:
    """The same cloud on a grid coarse enough for about ``points`` pixels (never finer than its own)."""
    stride = max(cloud.stride, int(np.ceil(np.sqrt(cloud.depth.size / points))))
    if stride == cloud.stride and with_colours:
        return cloud
    return CameraPoints(cloud.depth, cloud.rgb if with_colours else None, cloud.camera, stride, cloud.max_depth)
