"""Procedural street scenes for md2's synthetic KITTI data: geometry, textures and ray casting.

World frame = the first camera's frame at the start of the drive, KITTI camera convention: x right, y down,
z forward. The ground is the plane y = CAMERA_HEIGHT. Surfaces are coloured by a function of their world
position only (sums of sinusoids), so a point looks the same in every frame and in both cameras.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAMERA_HEIGHT = 1.65
"""Camera height above the ground, metres (KITTI's)."""
BACKDROP_RADIUS = 75.0
"""The far backdrop: a sphere of this radius around the middle of the drive, so every depth is finite."""
STEP_METRES = 1.0
"""Mean forward motion per frame."""

GROUND, BUILDING, CAR, POLE, BACKDROP = range(5)
MATERIALS = 5


@dataclass(frozen=True)
class Boxes:
    """Boxes standing on the ground, rotated about the vertical axis. All arrays have one row per box."""

    centre: np.ndarray    # (N, 3) world
    half: np.ndarray      # (N, 3) half sizes along the box's own x, y, z
    yaw: np.ndarray       # (N,) rotation about y (heading of the box's z axis)
    material: np.ndarray  # (N,) material id


@dataclass(frozen=True)
class Texture:
    """Colour = clip(base + sum_k amplitude_k * sin(frequency_k . X + phase_k), 0, 1) per material."""

    base: np.ndarray       # (M, 3)
    frequency: np.ndarray  # (M, K, 3) rad / metre
    phase: np.ndarray      # (M, K)
    amplitude: np.ndarray  # (M, K, 3)


@dataclass(frozen=True)
class Scene:
    """A drive: camera poses (camera-to-world, 4x4) for each frame, boxes, textures and the backdrop."""

    poses: np.ndarray  # (F, 4, 4)
    boxes: Boxes
    texture: Texture
    backdrop_centre: np.ndarray  # (3,)


def yaw_matrix(yaw: float | np.ndarray) -> np.ndarray:
    """Rotation about y mapping the z axis to (sin yaw, 0, cos yaw)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _path(rng: np.random.Generator, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (steps, 3) and headings (steps,) of a gently turning drive at ~1 m per step."""
    amplitude, period, phase = rng.uniform(0.005, 0.02), rng.uniform(20, 60), rng.uniform(0, 2 * np.pi)
    yaw_rate = amplitude * np.sin(2 * np.pi * np.arange(steps) / period + phase)
    heading = np.concatenate([[0.0], np.cumsum(yaw_rate)[:-1]])
    speed = STEP_METRES * rng.uniform(0.9, 1.1, steps)
    direction = np.stack([np.sin(heading), np.zeros(steps), np.cos(heading)], 1)
    position = np.concatenate([np.zeros((1, 3)), np.cumsum(direction[:-1] * speed[:-1, None], 0)])
    return position, heading


def _roadside(rng: np.random.Generator, position: np.ndarray, heading: np.ndarray, start: int,
              kind: int) -> list[tuple[np.ndarray, np.ndarray, float, int]]:
    """Boxes along both sides of the path: building blocks, parked cars or poles."""
    boxes = []
    for side in (-1.0, 1.0):
        index = start
        while index < len(position) - 1:
            if kind == BUILDING:
                length, depth = rng.uniform(6, 14), rng.uniform(6, 12)
                height, lateral = rng.uniform(5, 16), rng.uniform(5.5, 9.0) + depth / 2
                gap = rng.uniform(0, 4)
            elif kind == CAR:
                length, depth, height, lateral = 4.2, 1.8, 1.5, rng.uniform(3.0, 4.0)
                gap = rng.uniform(2, 14)
            else:
                length, depth, height, lateral = 0.3, 0.3, 5.0, 4.8
                gap = rng.uniform(8, 20)
            middle = min(int(index + length / 2), len(position) - 1)
            normal = yaw_matrix(heading[middle]) @ np.array([1.0, 0.0, 0.0])
            centre = position[middle] + side * lateral * normal
            centre[1] = CAMERA_HEIGHT - height / 2
            boxes.append((centre, np.array([depth / 2, height / 2, length / 2]), heading[middle], kind))
            index += int(np.ceil(length + gap))
    return boxes


def _texture(rng: np.random.Generator, components: int = 10) -> Texture:
    base = np.array([[0.45, 0.42, 0.40], [0.60, 0.50, 0.42], [0.35, 0.38, 0.55], [0.55, 0.55, 0.50],
                     [0.55, 0.65, 0.80]]) + rng.uniform(-0.08, 0.08, (MATERIALS, 3))
    low = np.array([0.6, 0.4, 0.8, 1.0, 0.02])[:, None]
    high = np.array([6.0, 5.0, 6.0, 6.0, 0.3])[:, None]
    magnitude = np.exp(rng.uniform(np.log(low), np.log(high), (MATERIALS, components)))
    direction = rng.normal(size=(MATERIALS, components, 3))
    direction /= np.linalg.norm(direction, axis=2, keepdims=True)
    amplitude = rng.uniform(0.02, 0.09, (MATERIALS, components, 3))
    return Texture(base, direction * magnitude[..., None], rng.uniform(0, 2 * np.pi, (MATERIALS, components)),
                   amplitude)


def build_scene(seed: int, frames: int) -> Scene:
    """A deterministic street scene for ``frames`` camera positions (the street extends beyond them)."""
    rng = np.random.default_rng(seed)
    extra = 70
    position, heading = _path(rng, frames + extra)
    boxes = []
    for kind in (BUILDING, CAR, POLE):
        boxes += _roadside(rng, position, heading, start=0, kind=kind)
    poses = np.repeat(np.eye(4)[None], frames, 0)
    for k in range(frames):
        poses[k, :3, :3] = yaw_matrix(heading[k])
        poses[k, :3, 3] = position[k]
    backdrop = position[:frames].mean(0)
    backdrop[1] = 0.0
    return Scene(
        poses=poses,
        boxes=Boxes(np.array([b[0] for b in boxes]), np.array([b[1] for b in boxes]),
                    np.array([b[2] for b in boxes]), np.array([b[3] for b in boxes])),
        texture=_texture(rng),
        backdrop_centre=backdrop,
    )


def cast_rays(scene: Scene, origin: np.ndarray, directions: np.ndarray,
              box_subsets: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of each ray: (t (N,), material (N,)), with hit point = origin + t * direction.

    ``directions`` (N, 3) need not be unit length; t is in units of each direction's length.
    ``box_subsets`` optionally gives, per box, the indices of the rays that can hit it (screen-space culling).
    """
    count = len(directions)
    t_best, material = _backdrop_hit(scene, origin, directions)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = (CAMERA_HEIGHT - origin[1]) / directions[:, 1]
    closer = (t_ground > 1e-6) & (t_ground < t_best)
    t_best[closer], material[closer] = t_ground[closer], GROUND
    boxes = scene.boxes
    for index in range(len(boxes.centre)):
        rays = np.arange(count) if box_subsets is None else box_subsets[index]
        if rays is None or len(rays) == 0:
            continue
        t_box = _box_hit(origin, directions[rays], boxes.centre[index], boxes.half[index], boxes.yaw[index])
        closer = t_box < t_best[rays]
        t_best[rays[closer]] = t_box[closer]
        material[rays[closer]] = boxes.material[index]
    return t_best, material


def _backdrop_hit(scene: Scene, origin: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offset = origin - scene.backdrop_centre
    a = np.einsum("ij,ij->i", directions, directions)
    b = 2 * directions @ offset
    c = offset @ offset - BACKDROP_RADIUS ** 2
    t = (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0))) / (2 * a)  # inside the sphere: the far root
    return t, np.full(len(directions), BACKDROP, dtype=np.int64)


def _box_hit(origin: np.ndarray, directions: np.ndarray, centre: np.ndarray, half: np.ndarray,
             yaw: float) -> np.ndarray:
    """Entry distance of rays into one yawed box (inf where missed), by the slab method."""
    rotation = yaw_matrix(yaw)
    local_origin = rotation.T @ (origin - centre)
    local_dir = directions @ rotation  # each row: rotation.T @ d
    local_dir = np.where(np.abs(local_dir) < 1e-12, 1e-12, local_dir)  # no 0/0 for axis-parallel rays
    inverse = 1.0 / local_dir
    t1 = (-half - local_origin) * inverse
    t2 = (half - local_origin) * inverse
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_near = np.maximum(np.maximum(near[:, 0], near[:, 1]), near[:, 2])
    t_far = np.minimum(np.minimum(far[:, 0], far[:, 1]), far[:, 2])
    hit = (t_far >= t_near) & (t_near > 1e-6)
    return np.where(hit, t_near, np.inf)


def shade(scene: Scene, points: np.ndarray, material: np.ndarray) -> np.ndarray:
    """Colour (N, 3) in [0, 1] of world points on the given materials: a function of position only."""
    texture = scene.texture
    colour = texture.base[material].copy()
    for m in np.unique(material):
        rows = material == m
        phase = points[rows].astype(np.float32) @ texture.frequency[m].T.astype(np.float32)
        waves = np.sin(phase + texture.phase[m].astype(np.float32))  # (n, K)
        colour[rows] += waves @ texture.amplitude[m].astype(np.float32)
    return np.clip(colour, 0.0, 1.0)
