"""``md2 predict --point-cloud``'s options: checked before the model loads, resolved once it has."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from md2.errors import UsageError

CLOUD_ONLY = ("--intrinsics", "--fov", "--max-depth", "--stride", "--voxel")


@dataclass(frozen=True)
class CloudRequest:
    """What the command line asked of the point clouds, already checked."""

    intrinsics: str | None
    fov: float | None
    max_depth: float | None
    stride: int
    voxel: float

    def options(self, scale, net_depth_range: tuple[float, float], weights: Path):
        """The :class:`md2.core.pointcloud.photo.CloudOptions` for a model whose depth has ``scale``."""
        from md2.core.pointcloud.intrinsics import camera_choice
        from md2.core.pointcloud.photo import CloudOptions

        return CloudOptions(camera_choice(self.intrinsics, self.fov), self.stride, self.max_depth, self.voxel,
                            scale.factor, scale.units, net_depth_range, weights)


def cloud_request(point_cloud: bool, intrinsics: str | None, fov: float | None, max_depth: float | None,
                  stride: int, voxel: float) -> CloudRequest | None:
    """None without --point-cloud (and then none of its options may be given); usage errors for bad values."""
    given = dict(zip(CLOUD_ONLY, (intrinsics is not None, fov is not None, max_depth is not None, stride != 1,
                                  voxel != 0.1)))
    if not point_cloud:
        if any(given.values()):
            raise UsageError(f"{', '.join(k for k, v in given.items() if v)} applies to --point-cloud, which is "
                             "not given")
        return None
    from md2.core.pointcloud.intrinsics import camera_choice

    camera_choice(intrinsics, fov)  # a usage error now rather than after the model is loaded
    for name, value in (("--max-depth", max_depth), ("--voxel", voxel)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"{name} must be a positive number, got {value}")
    return CloudRequest(intrinsics, fov, max_depth, stride, voxel)


def depth_outputs(predictor, label: str, weights: Path, cloud: CloudRequest | None, videos: bool,
                  pred_metric_depth: bool, save_depth_png: bool, console):
    """Once the model is loaded: (CloudOptions or None, --pred-metric-depth's factor), the lines saying the depth's
    scale, and a CheckpointError now if a video's cloud has no pose network to use."""
    from md2.core.metric_scale import STEREO_SCALE_FACTOR, depth_scale

    stereo = bool(predictor.use_stereo) or "stereo" in label
    scale = depth_scale(stereo, weights)
    metric_scale = scale.factor if scale.metric else STEREO_SCALE_FACTOR  # the reference's x 5.4 otherwise
    options = cloud.options(scale, (predictor.min_depth, predictor.max_depth), weights) if cloud else None
    if cloud and videos:
        from md2.core.video_cloud import check_pose_weights

        check_pose_weights(weights)  # one line now, not after the photos
    if pred_metric_depth and scale.metric and not stereo:
        console.print(f"metric depth in {scale.units}", highlight=False)
    if (pred_metric_depth or cloud) and not scale.metric or save_depth_png and not stereo:
        console.print("[yellow]warning:[/yellow] this model was not trained with stereo, so its depth has no "
                      "metric scale")
    return options, metric_scale


def intrinsics_summary(request: CloudRequest, images: list[Path], videos: list[Path]) -> str | None:
    """The line saying where the clouds' intrinsics come from when neither --intrinsics nor --fov is given."""
    if request.intrinsics is not None or request.fov is not None:
        return None
    from md2.core.pointcloud.intrinsics import exif_focal_35mm

    exif = sum(exif_focal_35mm(path) is not None for path in images)
    kitti = len(images) - exif + len(videos)
    parts = ([f"the EXIF 35 mm focal length for {exif}"] if exif else []) + (
        [f"KITTI's scaled to the picture for {kitti} (fx 0.58 W, fy 1.92 H; give --intrinsics or --fov)"]
        if kitti else [])
    return "intrinsics: " + "; ".join(parts)
