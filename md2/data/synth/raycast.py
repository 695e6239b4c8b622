"""Analytic, vectorised ray casting against a scene: ground plane, yawed boxes (slab method), backdrop sphere.

Vectors are stored as (3, N) arrays (one contiguous row per coordinate): every step is an element-wise numpy
operation on whole rows. (Products with tiny matrices are written out rather than handed to BLAS, whose threads
would only add overhead for a 3 x 3 matrix.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from md2.data.synth.scene import CAMERA_HEIGHT, Scene
from md2.data.synth.texture import BACKDROP, GROUND

GROUND_SURFACE, BACKDROP_SURFACE = -1, -2
"""Surface ids of the ground and the backdrop; boxes are numbered from 0."""


def rotate(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``matrix`` (3, 3) @ ``vectors`` (3, N) -> (3, N), element-wise."""
    return matrix[:, :1] * vectors[0] + matrix[:, 1:2] * vectors[1] + matrix[:, 2:] * vectors[2]


@dataclass(frozen=True)
class Hits:
    """Nearest hit per ray: hit point = origin + t * direction (t in units of each direction's length)."""

    t: np.ndarray        # (N,) float64
    surface: np.ndarray  # (N,) int64: GROUND_SURFACE, BACKDROP_SURFACE or a box index

    def kind(self, scene: Scene) -> np.ndarray:
        """(N,) texture kind of each hit surface."""
        kinds = np.concatenate([scene.boxes.kind, [BACKDROP, GROUND]])
        return kinds[self.surface]  # -1 and -2 index the two appended entries

    def tint(self, scene: Scene) -> np.ndarray:
        """(N, 3) per-object colour offsets (zero for the ground and the backdrop)."""
        return np.concatenate([scene.boxes.tint, np.zeros((2, 3))])[self.surface]

    def select(self, keep: np.ndarray) -> "Hits":
        return Hits(self.t[keep], self.surface[keep])


def cast_rays(scene: Scene, origin: np.ndarray, directions: np.ndarray,
              box_subsets: list[np.ndarray | None] | None = None) -> Hits:
    """Nearest hit of rays from ``origin`` (3,) along ``directions`` (3, N), which need not be unit length.

    ``box_subsets`` optionally gives per box the indices of the only rays that can hit it (None: no ray), from
    screen-space culling; without it every ray is tested against every box.
    """
    t_best = _sphere_exit(origin, directions, scene.backdrop_centre, scene.backdrop_radius)
    surface = np.full(directions.shape[1], BACKDROP_SURFACE, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = (CAMERA_HEIGHT - origin[1]) / directions[1]
    closer = (t_ground > 1e-6) & (t_ground < t_best)
    t_best[closer], surface[closer] = t_ground[closer], GROUND_SURFACE
    boxes = scene.boxes
    everything = np.arange(directions.shape[1])
    for index in range(len(boxes.centre)):
        rays = everything if box_subsets is None else box_subsets[index]
        if rays is None or len(rays) == 0:
            continue
        t_box = _box_entry(origin, directions[:, rays], boxes.centre[index], boxes.half[index], boxes.yaw[index])
        closer = t_box < t_best[rays]
        t_best[rays[closer]] = t_box[closer]
        surface[rays[closer]] = index
    return Hits(t_best, surface)


def _sphere_exit(origin: np.ndarray, directions: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Distance to the sphere along each ray from an origin inside it (the positive root)."""
    offset = origin - centre
    a = directions[0] ** 2 + directions[1] ** 2 + directions[2] ** 2
    half_b = directions[0] * offset[0] + directions[1] * offset[1] + directions[2] * offset[2]
    c = offset @ offset - radius ** 2
    if c >= 0:
        raise ValueError(f"ray origin {origin} is outside the backdrop sphere")  # a bug in build_scene
    return (np.sqrt(half_b * half_b - a * c) - half_b) / a


def _box_entry(origin: np.ndarray, directions: np.ndarray, centre: np.ndarray, half: np.ndarray,
               yaw: float) -> np.ndarray:
    """Entry distance of rays (3, n) into one yawed box (inf where missed or behind), by the slab method."""
    c, s = np.cos(yaw), np.sin(yaw)
    offset = origin - centre
    local_origin = (c * offset[0] - s * offset[2], offset[1], s * offset[0] + c * offset[2])
    local_dirs = (c * directions[0] - s * directions[2], directions[1], s * directions[0] + c * directions[2])
    t_near = np.full(directions.shape[1], -np.inf)
    t_far = np.full(directions.shape[1], np.inf)
    for start, direction, extent in zip(local_origin, local_dirs, half):
        direction = np.where(np.abs(direction) < 1e-12, 1e-12, direction)  # axis-parallel rays: no 0/0
        inverse = 1.0 / direction
        t1 = (-extent - start) * inverse
        t2 = (extent - start) * inverse
        np.maximum(t_near, np.minimum(t1, t2), out=t_near)
        np.minimum(t_far, np.maximum(t1, t2), out=t_far)
    return np.where((t_far >= t_near) & (t_near > 1e-6), t_near, np.inf)


def surface_normals(scene: Scene, hits: Hits, points: np.ndarray) -> np.ndarray:
    """(3, N) unit normals at the hit ``points`` (3, N): up for the ground, inward for the backdrop, and for a
    box the normal of the face the point lies on."""
    normals = np.zeros_like(points)
    normals[1, hits.surface == GROUND_SURFACE] = -1.0
    sky = hits.surface == BACKDROP_SURFACE
    normals[:, sky] = (scene.backdrop_centre[:, None] - points[:, sky]) / scene.backdrop_radius
    rows = np.nonzero(hits.surface >= 0)[0]
    box = hits.surface[rows]
    c, s = np.cos(scene.boxes.yaw[box]), np.sin(scene.boxes.yaw[box])
    half = scene.boxes.half[box]
    offset = points[:, rows] - scene.boxes.centre[box].T
    local_x, local_y, local_z = c * offset[0] - s * offset[2], offset[1], s * offset[0] + c * offset[2]
    # The face is the one of the axis where the point is relatively farthest out.
    ratio_x, ratio_y, ratio_z = np.abs(local_x) / half[:, 0], np.abs(local_y) / half[:, 1], np.abs(local_z) / half[:, 2]
    on_x = (ratio_x >= ratio_y) & (ratio_x >= ratio_z)
    on_y = ~on_x & (ratio_y >= ratio_z)
    on_z = ~on_x & ~on_y
    # Face normal = +-column of the box's rotation: x -> (c, 0, -s), y -> (0, 1, 0), z -> (s, 0, c).
    sign_x, sign_y, sign_z = np.sign(local_x) * on_x, np.sign(local_y) * on_y, np.sign(local_z) * on_z
    normals[0, rows] = c * sign_x + s * sign_z
    normals[1, rows] = sign_y
    normals[2, rows] = -s * sign_x + c * sign_z
    return normals
