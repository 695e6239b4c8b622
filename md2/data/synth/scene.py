"""Procedural street scenes for md2's synthetic KITTI data: the drive's path, the boxes along it, the backdrop.

World frame = the first camera's frame of the drive, KITTI's camera convention: x right, y down, z forward,
metres. The ground is the plane y = CAMERA_HEIGHT. Along the path stand building blocks at varying setbacks,
parked cars and poles on both sides (boxes on the ground, turned with the street); a backdrop sphere (sky and
distant scenery) encloses everything, so every ray hits something at a finite depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from md2.data.synth.texture import BACKDROP, BUILDING, CAR, POLE, Texture, make_texture

CAMERA_HEIGHT = 1.65
"""Camera height above the ground, metres (KITTI's)."""
STEP_METRES = 1.0
"""Mean forward motion per frame, metres."""
BACKDROP_RADIUS = 70.0
"""Backdrop sphere radius for short drives: 60-80 m from every camera of a drive up to ~20 frames."""
BACKDROP_MARGIN = 60.0
"""For longer drives the sphere grows: it stays at least this far from every camera position."""
STREET_BEFORE, STREET_AFTER = 30, 70
"""The street extends this many steps behind the first frame (seen by the 360-degree lidar) and beyond the last."""


@dataclass(frozen=True)
class Boxes:
    """Boxes standing on the ground, turned about the vertical axis; one row per box."""

    centre: np.ndarray  # (N, 3) world, metres
    half: np.ndarray    # (N, 3) half sizes along the box's own x (across), y (up/down), z (along), metres
    yaw: np.ndarray     # (N,) rotation about world y, radians (see yaw_matrix)
    kind: np.ndarray    # (N,) texture kind: BUILDING, CAR or POLE
    tint: np.ndarray    # (N, 3) per-box colour offset, so neighbouring objects differ


@dataclass(frozen=True)
class Scene:
    """One drive: left-camera poses (F, 4, 4) camera-to-world, the boxes, the textures and the backdrop sphere."""

    poses: np.ndarray
    boxes: Boxes
    texture: Texture
    backdrop_centre: np.ndarray  # (3,) world, metres
    backdrop_radius: float       # metres


def yaw_matrix(yaw: float | np.ndarray) -> np.ndarray:
    """(3, 3) rotation about y that maps the z axis (forward) to (sin yaw, 0, cos yaw): positive yaw turns right."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _path(rng: np.random.Generator, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (steps, 3) and headings (steps,) of a gently turning drive at ~1 m per step.

    The yaw rate is a sinusoid of 0.005-0.02 rad per step (at most ~20 degrees of heading change overall).
    """
    amplitude, period, phase = rng.uniform(0.005, 0.02), rng.uniform(20, 60), rng.uniform(0, 2 * np.pi)
    yaw_rate = amplitude * np.sin(2 * np.pi * np.arange(steps) / period + phase)
    heading = np.concatenate([[0.0], np.cumsum(yaw_rate)[:-1]])
    speed = STEP_METRES * rng.uniform(0.9, 1.1, steps)
    direction = np.stack([np.sin(heading), np.zeros(steps), np.cos(heading)], 1)
    position = np.concatenate([np.zeros((1, 3)), np.cumsum(direction[:-1] * speed[:-1, None], 0)])
    return position, heading


def _box_size(rng: np.random.Generator, kind: int) -> tuple[float, float, float, float, float]:
    """(length along the street, depth across, height, lateral offset of the centre, gap to the next), metres."""
    if kind == BUILDING:
        depth = rng.uniform(6, 12)
        return rng.uniform(6, 14), depth, rng.uniform(5, 16), rng.uniform(5.5, 9.0) + depth / 2, rng.uniform(0, 4)
    if kind == CAR:
        return rng.uniform(3.8, 4.8), rng.uniform(1.6, 1.9), rng.uniform(1.3, 1.7), rng.uniform(3.0, 4.0), \
            rng.uniform(2, 14)
    return 0.3, 0.3, rng.uniform(4, 7), rng.uniform(5.05, 5.3), rng.uniform(8, 20)  # between cars and facades


def _roadside(rng: np.random.Generator, position: np.ndarray, heading: np.ndarray, kind: int) -> list[tuple]:
    """Boxes of one kind along both sides of the path: (centre, half sizes, yaw, kind) each."""
    boxes = []
    for side in (-1.0, 1.0):
        index = float(rng.uniform(0, 3))
        while index < len(position) - 1:
            length, depth, height, lateral, gap = _box_size(rng, kind)
            middle = min(int(index + length / 2), len(position) - 1)
            centre = position[middle] + side * lateral * (yaw_matrix(heading[middle]) @ np.array([1.0, 0, 0]))
            centre[1] = CAMERA_HEIGHT - height / 2
            boxes.append((centre, np.array([depth / 2, height / 2, length / 2]), heading[middle], kind))
            index += length + gap
    return boxes


def _backdrop(cameras: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (between the extreme camera positions) and radius of the backdrop sphere.

    Every camera is at least BACKDROP_MARGIN (60 m) inside the sphere; up to ~20 frames the radius is
    BACKDROP_RADIUS, so all depths are in ~60-80 m there. A longer drive needs a larger sphere (a static world
    cannot keep a straight road's far end under 80 m), so its farthest depths exceed 80 m.
    """
    centre = (cameras.min(0) + cameras.max(0)) / 2
    reach = np.linalg.norm(cameras - centre, axis=1).max()
    return centre, float(max(BACKDROP_RADIUS, BACKDROP_MARGIN + reach))


def build_scene(seed: int | tuple[int, ...], frames: int) -> Scene:
    """The deterministic street scene of ``frames`` camera positions for ``seed`` (int or tuple of ints >= 0)."""
    rng = np.random.default_rng(seed)
    position, heading = _path(rng, STREET_BEFORE + frames + STREET_AFTER)
    origin, origin_heading = position[STREET_BEFORE].copy(), heading[STREET_BEFORE]
    position = (position - origin) @ yaw_matrix(origin_heading)  # world = first camera: R^T (p - o) per row
    heading = heading - origin_heading
    rows = []
    for kind in (BUILDING, CAR, POLE):
        rows += _roadside(rng, position, heading, kind)
    poses = np.repeat(np.eye(4)[None], frames, 0)
    for k in range(frames):
        poses[k, :3, :3] = yaw_matrix(heading[STREET_BEFORE + k])
        poses[k, :3, 3] = position[STREET_BEFORE + k]
    texture = make_texture(rng)
    boxes = Boxes(centre=np.array([r[0] for r in rows]), half=np.array([r[1] for r in rows]),
                  yaw=np.array([r[2] for r in rows]), kind=np.array([r[3] for r in rows], dtype=np.int64),
                  tint=rng.uniform(-0.08, 0.08, (len(rows), 3)))
    centre, radius = _backdrop(poses[:, :3, 3])
    return Scene(poses=poses, boxes=boxes, texture=texture, backdrop_centre=centre, backdrop_radius=radius)


__all__ = ["BACKDROP", "BUILDING", "CAMERA_HEIGHT", "CAR", "POLE", "Boxes", "Scene", "build_scene", "yaw_matrix"]
