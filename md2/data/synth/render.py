"""Rendering synthetic scenes: camera images with exact z-depth, and 64-beam lidar scans."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from md2.data.synth.scene import Scene, cast_rays, shade

BASELINE = 0.54
"""KITTI's stereo baseline: image_03 is this far to the right of image_02, metres."""
LIDAR_IN_CAMERA = np.array([0.0, -0.08, -0.27])
"""Lidar origin in camera-2 coordinates (slightly above and behind the camera, as on the KITTI car)."""
LIDAR_TO_CAMERA = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
"""Lidar axes (x forward, y left, z up) -> camera axes (x right, y down, z forward)."""
BEAM_ELEVATIONS = np.linspace(2.0, -24.9, 64)
AZIMUTH_STEP = 0.35


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: u = fx X / Z + cx with u the 0-based column index of a pixel centre."""

    width: int
    height: int

    @property
    def fx(self) -> float:
        return 0.58 * self.width

    @property
    def fy(self) -> float:
        return 1.92 * self.height

    @property
    def cx(self) -> float:
        return 0.5 * self.width

    @property
    def cy(self) -> float:
        return 0.5 * self.height

    def rays(self) -> np.ndarray:
        """(H*W, 3) camera-frame ray directions with z = 1, row-major over pixels."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        return np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u)], -1).reshape(-1, 3)


def _box_ray_subsets(scene: Scene, camera: Camera, pose: np.ndarray) -> list[np.ndarray | None]:
    """Per box, the pixel indices inside the box's projected bounding rectangle (all pixels when the box
    reaches behind the camera, none when it is entirely behind)."""
    world_to_camera = np.linalg.inv(pose)
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    subsets: list[np.ndarray | None] = []
    everything = np.arange(camera.width * camera.height)
    boxes = scene.boxes
    for centre, half, yaw in zip(boxes.centre, boxes.half, boxes.yaw):
        c, s = np.cos(yaw), np.sin(yaw)
        rotation = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        corners = centre + (signs * half) @ rotation.T
        local = corners @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
        z = local[:, 2]
        if z.max() <= 0:
            subsets.append(None)
            continue
        if z.min() <= 0.05:
            subsets.append(everything)
            continue
        u = camera.fx * local[:, 0] / z + camera.cx
        v = camera.fy * local[:, 1] / z + camera.cy
        u0, u1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())), camera.width - 1)
        v0, v1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())), camera.height - 1)
        if u0 > u1 or v0 > v1:
            subsets.append(None)
            continue
        rows, cols = np.mgrid[v0:v1 + 1, u0:u1 + 1]
        subsets.append((rows * camera.width + cols).reshape(-1))
    return subsets


def render_view(scene: Scene, camera: Camera, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Render a camera at ``pose`` (camera-to-world 4x4): (RGB uint8 (H, W, 3), z-depth float32 (H, W))."""
    directions = camera.rays() @ pose[:3, :3].T
    origin = pose[:3, 3]
    t, material = cast_rays(scene, origin, directions, _box_ray_subsets(scene, camera, pose))
    colour = shade(scene, origin + t[:, None] * directions, material)
    image = np.round(colour * 255).astype(np.uint8).reshape(camera.height, camera.width, 3)
    return image, t.astype(np.float32).reshape(camera.height, camera.width)  # z = t since ray z = 1


def right_camera_pose(pose: np.ndarray) -> np.ndarray:
    """Pose of image_03's camera: BASELINE metres along the left camera's x axis."""
    right = pose.copy()
    right[:3, 3] = pose[:3, 3] + pose[:3, :3] @ np.array([BASELINE, 0.0, 0.0])
    return right


def lidar_scan(scene: Scene, pose: np.ndarray) -> np.ndarray:
    """A 64-beam scan from the lidar on the car whose left camera is at ``pose``: (N, 4) float32 x, y, z,
    reflectance in the lidar frame. It covers the front half (azimuth -90..90 degrees), the only half KITTI's
    depth tools use; rays that hit nothing within 120 m are omitted."""
    elevation = np.radians(BEAM_ELEVATIONS)[:, None]
    azimuth_deg = np.arange(-90.0, 90.0, AZIMUTH_STEP)
    azimuth = np.radians(azimuth_deg)[None, :]
    lidar_dirs = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                           np.sin(elevation) * np.ones_like(azimuth)], -1).reshape(-1, 3)
    lidar_to_world = pose[:3, :3] @ LIDAR_TO_CAMERA
    origin = pose[:3, :3] @ LIDAR_IN_CAMERA + pose[:3, 3]
    world_dirs = lidar_dirs @ lidar_to_world.T
    subsets = _lidar_ray_subsets(scene, origin, lidar_to_world, azimuth_deg)
    t, material = cast_rays(scene, origin, world_dirs, subsets)
    keep = t < 120
    points = lidar_dirs[keep] * t[keep, None]
    reflectance = shade(scene, origin + t[keep, None] * world_dirs[keep], material[keep]).mean(1)
    return np.concatenate([points, reflectance[:, None]], 1).astype(np.float32)


def _lidar_ray_subsets(scene: Scene, origin: np.ndarray, lidar_to_world: np.ndarray,
                       azimuth_deg: np.ndarray) -> list[np.ndarray | None]:
    """Per box, the lidar rays whose azimuth falls within the box's angular extent (all beams)."""
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    beams, columns = len(BEAM_ELEVATIONS), len(azimuth_deg)
    subsets: list[np.ndarray | None] = []
    for centre, half, yaw in zip(scene.boxes.centre, scene.boxes.half, scene.boxes.yaw):
        c, s = np.cos(yaw), np.sin(yaw)
        corners = centre + (signs * half) @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T
        local = (corners - origin) @ lidar_to_world  # world -> lidar axes
        if local[:, 0].max() <= 0:
            subsets.append(None)
            continue
        if local[:, 0].min() <= 0.05:
            subsets.append(np.arange(beams * columns))
            continue
        angles = np.degrees(np.arctan2(local[:, 1], local[:, 0]))
        chosen = np.nonzero((azimuth_deg >= angles.min() - AZIMUTH_STEP) & (azimuth_deg <= angles.max() + AZIMUTH_STEP))[0]
        subsets.append((np.arange(beams)[:, None] * columns + chosen[None, :]).reshape(-1))
    return subsets
