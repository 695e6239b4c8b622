"""Rendering synthetic scenes: camera images with exact z-depth, and 64-beam lidar scans.

Camera convention (md2's and the reference's intrinsics): a pixel (u, v) with integer u = column index and
v = row index is the ray through u = fx X / Z + cx, v = fy Y / Z + cy in the camera frame, with fx = 0.58 W,
fy = 1.92 H, cx = 0.5 W, cy = 0.5 H for every image size -- exactly the normalised K md2's KITTI reader uses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from md2.data.synth.raycast import BACKDROP_SURFACE, cast_rays, rotate, surface_normals
from md2.data.synth.scene import Scene
from md2.data.synth.texture import shade

BASELINE = 0.54
"""KITTI's stereo baseline: image_03's camera is this far to the right of image_02's, metres."""
LIDAR_IN_CAMERA = np.array([0.0, -0.08, -0.27])
"""Lidar origin in camera-2 coordinates: 8 cm above and 27 cm behind the camera, as on the KITTI car."""
LIDAR_TO_CAMERA = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
"""Lidar axes (x forward, y left, z up) -> camera axes (x right, y down, z forward)."""
BEAM_ELEVATIONS = np.linspace(2.0, -24.9, 64)
"""Elevation of the 64 beams, degrees (a Velodyne HDL-64E's field of view)."""
AZIMUTH_STEP = 0.25
"""Degrees between firings of a beam; a scan covers the full 360 degrees."""
LIDAR_RANGE = 120.0
"""Metres; the backdrop (sky and far scenery) gives no return either, as the sky gives none to KITTI's lidar."""
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera of a ``width`` x ``height`` image with md2's KITTI intrinsics (see the module docstring)."""

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

    @property
    def K(self) -> np.ndarray:
        """(3, 3) intrinsics in pixels (0-based pixel centres)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def rays(self) -> np.ndarray:
        """(3, H*W) camera-frame ray directions with z = 1, pixels in row-major order (read-only, cached)."""
        return _camera_rays(self.width, self.height)


@functools.lru_cache(maxsize=4)
def _camera_rays(width: int, height: int) -> np.ndarray:
    camera = Camera(width, height)
    u = (np.arange(camera.width) - camera.cx) / camera.fx
    v = (np.arange(camera.height) - camera.cy) / camera.fy
    rays = np.stack([np.tile(u, camera.height), np.repeat(v, camera.width), np.ones(camera.width * camera.height)])
    rays.flags.writeable = False
    return rays


def box_corners(scene: Scene) -> np.ndarray:
    """(N, 8, 3) world corners of every box."""
    boxes = scene.boxes
    c, s = np.cos(boxes.yaw), np.sin(boxes.yaw)
    zero, one = np.zeros_like(c), np.ones_like(c)
    rotation = np.stack([np.stack([c, zero, s], 1), np.stack([zero, one, zero], 1), np.stack([-s, zero, c], 1)], 1)
    return boxes.centre[:, None] + np.einsum("nij,nkj->nki", rotation, _CORNERS[None] * boxes.half[:, None])


def _clip_in_front(local: np.ndarray, near: float) -> np.ndarray:
    """Points of a convex box (8 corners, camera frame) with z >= near whose projections bound the visible part:
    the corners in front and the crossings of the near plane by segments between corners."""
    front = local[local[:, 2] >= near]
    a, b = np.repeat(local, 8, 0), np.tile(local, (8, 1))
    crossing = (a[:, 2] < near) & (b[:, 2] >= near)
    w = (near - a[crossing, 2]) / (b[crossing, 2] - a[crossing, 2])
    return np.concatenate([front, a[crossing] + w[:, None] * (b[crossing] - a[crossing])])


def _box_pixel_subsets(scene: Scene, camera: Camera, pose: np.ndarray) -> list[np.ndarray | None]:
    """Per box, the indices of the pixels inside its projected bounding rectangle (None: not in view)."""
    world_to_camera = np.linalg.inv(pose)
    corners = box_corners(scene) @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    subsets: list[np.ndarray | None] = []
    for local in corners:
        visible = _clip_in_front(local, near=1e-3)
        if len(visible) == 0:
            subsets.append(None)
            continue
        u = camera.fx * visible[:, 0] / visible[:, 2] + camera.cx
        v = camera.fy * visible[:, 1] / visible[:, 2] + camera.cy
        u0, u1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())), camera.width - 1)
        v0, v1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())), camera.height - 1)
        if u0 > u1 or v0 > v1:
            subsets.append(None)
            continue
        rows = np.arange(v0, v1 + 1)[:, None] * camera.width
        subsets.append((rows + np.arange(u0, u1 + 1)[None, :]).reshape(-1))
    return subsets


def _footprint(directions: np.ndarray, normals: np.ndarray, t: np.ndarray, pose: np.ndarray,
               camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World displacement (3, N) of the hit point per one-pixel step along u and along v (locally planar).

    A ray d(u) hits the surface's tangent plane at P = o + t d; moving one pixel changes d by e = R[:, 0] / fx
    (or R[:, 1] / fy), and then P by t (e - d (n . e) / (n . d)).
    """
    facing = normals[0] * directions[0] + normals[1] * directions[1] + normals[2] * directions[2]
    facing[np.abs(facing) < 1e-9] = -1e-9  # grazing rays: a huge footprint, the texture averages out
    scale = t / facing
    steps = []
    for axis, focal in ((0, camera.fx), (1, camera.fy)):
        step = pose[:3, axis] / focal
        along = (normals[0] * step[0] + normals[1] * step[1] + normals[2] * step[2]) * scale
        steps.append(t * step[:, None] - directions * along)
    return steps[0], steps[1]


def render_view(scene: Scene, camera: Camera, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Render the camera at ``pose`` (camera-to-world 4x4): (RGB uint8 (H, W, 3), z-depth float32 (H, W), metres)."""
    directions = rotate(pose[:3, :3], camera.rays())
    origin = pose[:3, 3]
    hits = cast_rays(scene, origin, directions, _box_pixel_subsets(scene, camera, pose))
    points = origin[:, None] + hits.t * directions
    normals = surface_normals(scene, hits, points)
    footprint = _footprint(directions, normals, hits.t, pose, camera)
    colour = shade(scene.texture, hits.kind(scene), points, normals, hits.tint(scene), footprint)
    image = np.round(colour.T * 255).astype(np.uint8).reshape(camera.height, camera.width, 3)
    return image, hits.t.astype(np.float32).reshape(camera.height, camera.width)  # z = t: rays have z = 1


def right_camera_pose(pose: np.ndarray) -> np.ndarray:
    """Pose of image_03's camera: BASELINE metres along the left camera's x axis (to its right)."""
    right = pose.copy()
    right[:3, 3] = pose[:3, 3] + pose[:3, 0] * BASELINE
    return right


@functools.lru_cache(maxsize=1)
def lidar_directions() -> np.ndarray:
    """(3, 64 * columns) unit firing directions in the lidar frame (x forward, y left, z up), beam-major
    (read-only, cached)."""
    elevation = np.radians(BEAM_ELEVATIONS)[:, None]
    azimuth = np.radians(np.arange(-180.0, 180.0, AZIMUTH_STEP))[None, :]
    directions = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                           np.sin(elevation) * np.ones_like(azimuth)]).reshape(3, -1)
    directions.flags.writeable = False
    return directions


def lidar_scan(scene: Scene, pose: np.ndarray) -> np.ndarray:
    """The 64-beam, 360-degree scan of the lidar on the car whose left camera is at ``pose``.

    Returns (N, 4) float32 rows x, y, z (lidar frame, metres) and reflectance in [0, 1]; firings that hit
    nothing within LIDAR_RANGE (or only the backdrop) are omitted.
    """
    lidar_dirs = lidar_directions()
    lidar_to_world = pose[:3, :3] @ LIDAR_TO_CAMERA
    origin = pose[:3, :3] @ LIDAR_IN_CAMERA + pose[:3, 3]
    world_dirs = rotate(lidar_to_world, lidar_dirs)
    hits = cast_rays(scene, origin, world_dirs, _lidar_ray_subsets(scene, origin, lidar_to_world))
    keep = np.nonzero((hits.surface != BACKDROP_SURFACE) & (hits.t < LIDAR_RANGE))[0]
    kept = hits.select(keep)
    points = origin[:, None] + kept.t * world_dirs[:, keep]
    reflectance = shade(scene.texture, kept.kind(scene), points).mean(0)
    return np.concatenate([(lidar_dirs[:, keep] * kept.t).T, reflectance[:, None]], 1).astype(np.float32)


def _lidar_ray_subsets(scene: Scene, origin: np.ndarray, lidar_to_world: np.ndarray) -> list[np.ndarray | None]:
    """Per box, the firings (all beams) whose azimuth lies within the box's angular extent seen from the lidar."""
    azimuth = np.arange(-180.0, 180.0, AZIMUTH_STEP)
    columns = len(azimuth)
    beams = np.arange(len(BEAM_ELEVATIONS))[:, None] * columns
    subsets: list[np.ndarray | None] = []
    for corners, centre in zip(box_corners(scene), scene.boxes.centre):
        local = (corners - origin) @ lidar_to_world  # world -> lidar axes
        middle = (centre - origin) @ lidar_to_world
        heading = np.degrees(np.arctan2(middle[1], middle[0]))
        spread = (np.degrees(np.arctan2(local[:, 1], local[:, 0])) - heading + 180.0) % 360.0 - 180.0
        if np.ptp(spread) > 179.0:  # the lidar is (nearly) inside the box's footprint: test every firing
            chosen = np.arange(columns)
        else:
            offset = (azimuth - heading + 180.0) % 360.0 - 180.0
            chosen = np.nonzero((offset >= spread.min() - AZIMUTH_STEP) & (offset <= spread.max() + AZIMUTH_STEP))[0]
        subsets.append((beams + chosen[None, :]).reshape(-1))
    return subsets
