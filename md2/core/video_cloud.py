"""``md2 predict clip.mp4 --point-cloud``: one cloud of a video, fused in the first frame's camera with the
pose network (pose_encoder.pth, pose.pth), chaining its frame-to-frame transforms as ``evaluate-pose`` does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from md2.core.checkpoint import load_pose_networks, require_pose_files
from md2.core.geometry import transformation_from_parameters
from md2.core.pointcloud.backproject import CameraPoints
from md2.core.pointcloud.fuse import VoxelCloud, chain, first_per_voxel, points_in_first_camera
from md2.core.pointcloud.photo import CloudOptions
from md2.core.pointcloud.ply import write_ply
from md2.core.pointcloud.render import render_cloud, view_for
from md2.errors import CheckpointError


def check_pose_weights(weights: Path | None) -> None:
    """A CheckpointError (one line) unless ``weights`` is a folder with the pose network."""
    if weights is None or not Path(weights).is_dir():
        raise CheckpointError(f"a video's point cloud needs the pose network of a weights folder (pose_encoder.pth, "
                              f"pose.pth); {weights} is an exported depth model")
    require_pose_files(Path(weights))


class VideoFusion:
    """Poses in frame order (:meth:`pose`, torch, the caller's thread), points of a frame in the first camera
    (:meth:`frame_points`, NumPy, a worker thread), fused in order (:meth:`add`)."""

    def __init__(self, options: CloudOptions, weights: Path, device: torch.device, width: int, height: int) -> None:
        check_pose_weights(weights)
        self.options = options
        self.encoder, self.decoder, _ = load_pose_networks(Path(weights), None, device)
        self.device = device
        self.camera = options.camera.resolve(width, height)
        self.cloud = VoxelCloud(options.voxel)
        self.previous: torch.Tensor | None = None
        self.to_first = np.eye(4)
        self.frames = 0

    @torch.inference_mode()
    def pose(self, pixels: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 network-size pixels of the next kept frame -> its camera-to-first-camera (4, 4).

        The pose network on (previous, this) gives T, which maps the previous camera's points into this one's
        (md2.core.evaluation.pose); its translation is in the depth network's units, so it is scaled as the
        depth is. This camera to the first: to_first(previous) @ inv(T)."""
        image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float().div_(255.0).to(self.device)
        if self.previous is not None:
            axisangle, translation = self.decoder([self.encoder(torch.cat([self.previous, image], 1))])
            step = transformation_from_parameters(axisangle[:, 0], translation[:, 0])[0].double().cpu().numpy()
            step[:3, 3] *= self.options.depth_factor
            self.to_first = chain(self.to_first, step)
        self.previous = image
        return self.to_first.copy()

    def frame_points(self, disp_full: np.ndarray, rgb: np.ndarray, to_first: np.ndarray):
        """One frame's points in the first camera, one per voxel: (keys, points, colours)."""
        cloud = CameraPoints(self.options.depth(disp_full), rgb, self.camera, self.options.stride,
                             self.options.max_depth)
        return first_per_voxel(*points_in_first_camera(cloud, to_first), self.options.voxel)

    def add(self, part) -> None:
        self.cloud.add(*part)
        self.frames += 1

    def write(self, stem: Path, video: Path) -> list[Path]:
        """STEM.ply and STEM_cloud.png of the fused cloud."""
        comments = [f"md2 point cloud of {video.name}: {self.frames} frames fused with the pose network",
                    f"units: {self.options.units}", "frame: the first frame's camera, x right, y down, z forward",
                    f"intrinsics: {self.camera.describe()}", f"voxel {self.options.voxel:g}, stride "
                    f"{self.options.stride}" + (f", max depth {self.options.max_depth:g}"
                                                if self.options.max_depth is not None else "")]
        ply = write_ply(Path(f"{stem}.ply"), len(self.cloud), self.cloud.chunks(), comments)
        picture = render_cloud(Path(f"{stem}_cloud.png"), view_for(self.cloud.sample()), self.cloud.chunks(),
                               len(self.cloud))
        return [ply, picture]
