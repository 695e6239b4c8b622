"""NAME_cloud.png: a small perspective view of a point cloud from behind and above its camera, coloured by
the photo, drawn with a z-buffer in NumPy (no viewer needed to see the 3D shape)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from md2.files import atomic_path

WIDTH, HEIGHT = 480, 320
"""The picture's size, pixels."""
BACKGROUND = (24, 24, 28)
HORIZONTAL_FOV = 55.0
"""Degrees."""


@dataclass(frozen=True)
class View:
    """A virtual pinhole camera: ``rotation`` (3, 3) rows = its x (right), y (down), z (forward) axes in the
    cloud's frame, ``centre`` (3,) its position there."""

    rotation: np.ndarray
    centre: np.ndarray

    @classmethod
    def behind_above(cls, reach: float, lateral: float = 0.0) -> "View":
        """Behind and above the cloud's camera (x right, y down, z forward), looking down at the point
        0.4 ``reach`` ahead: ``reach`` is how far the cloud extends forward (e.g. its 90th-percentile depth)."""
        centre = np.array([lateral, -0.3 * reach, -0.2 * reach])
        forward = np.array([lateral, 0.0, 0.4 * reach]) - centre
        forward /= np.linalg.norm(forward)
        right = np.cross([0.0, 1.0, 0.0], forward)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        return cls(np.stack([right, down, forward]), centre)


def view_for(points: np.ndarray) -> View:
    """A :meth:`View.behind_above` framing (n, 3) points (or a sample of them) of a cloud."""
    if len(points) == 0:
        return View.behind_above(10.0)
    reach = float(np.percentile(points[:, 2], 90)) - min(0.0, float(np.percentile(points[:, 2], 5)))
    return View.behind_above(max(reach, 1e-3), float(np.median(points[:, 0])))


class Canvas:
    """The picture being drawn: colours and a z-buffer; points go in chunk by chunk, each a ``splat`` x
    ``splat`` square (larger for sparse clouds, so that surfaces look closed)."""

    def __init__(self, view: View, width: int = WIDTH, height: int = HEIGHT, splat: int = 2) -> None:
        self.view, self.width, self.height = view, width, height
        self.offsets = [(du, dv) for du in range(splat) for dv in range(splat)]
        self.focal = width / (2.0 * np.tan(np.radians(HORIZONTAL_FOV) / 2.0))
        self.zbuffer = np.full(width * height, np.inf, np.float32)
        self.colour = np.empty((width * height, 3), np.uint8)
        self.colour[:] = BACKGROUND

    def add(self, points: np.ndarray, colours: np.ndarray) -> None:
        local = (points.astype(np.float64) - self.view.centre) @ self.view.rotation.T
        front = local[:, 2] > 1e-3
        local, colours = local[front], colours[front]
        u = np.floor(self.focal * local[:, 0] / local[:, 2] + self.width / 2).astype(np.int64)
        v = np.floor(self.focal * local[:, 1] / local[:, 2] + self.height / 2).astype(np.int64)
        z = local[:, 2].astype(np.float32)
        for du, dv in self.offsets:
            uu, vv = u + du, v + dv
            inside = (uu >= 0) & (uu < self.width) & (vv >= 0) & (vv < self.height)
            index, depth = vv[inside] * self.width + uu[inside], z[inside]
            order = np.lexsort((depth, index))  # nearest first within each pixel
            index, depth = index[order], depth[order]
            first = np.ones(len(index), bool)
            first[1:] = index[1:] != index[:-1]
            index, depth, chosen = index[first], depth[first], np.flatnonzero(inside)[order][first]
            nearer = depth < self.zbuffer[index]
            self.zbuffer[index[nearer]] = depth[nearer]
            self.colour[index[nearer]] = colours[chosen[nearer]]

    def image(self) -> Image.Image:
        return Image.fromarray(self.colour.reshape(self.height, self.width, 3))


def render_cloud(path: Path, view: View, chunks: Iterable[tuple[np.ndarray, np.ndarray]], count: int) -> Path:
    """Draw the chunks of ``count`` (n, 3) points and (n, 3) uint8 colours seen from ``view`` into the PNG
    ``path``."""
    splat = int(np.clip(np.ceil(np.sqrt(WIDTH * HEIGHT / max(count, 1))), 2, 4))
    canvas = Canvas(view, splat=splat)
    for points, colours in chunks:
        canvas.add(points, colours)
    with atomic_path(path) as temporary:
        canvas.image().save(temporary, format="PNG", optimize=True)
    return path
