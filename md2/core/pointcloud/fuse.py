"""A video's frames fused into one cloud: each frame's points moved into the first frame's camera and kept
once per voxel, streamed (a frame is dropped once its points are in)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from md2.core.pointcloud.backproject import CameraPoints

KEY_BITS = 21
"""Bits per voxel coordinate in a key: +-2**20 voxels along each axis (+-105 km at 0.1 m)."""
_OFFSET = 1 << (KEY_BITS - 1)


def voxel_keys(points: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) points -> (int64 keys of their voxels of edge ``size``, mask of the points within key range)."""
    cells = np.floor(points.astype(np.float64) / size)
    inside = np.all(np.abs(cells) < _OFFSET, axis=1)
    cells = cells[inside].astype(np.int64) + _OFFSET
    return (cells[:, 0] << (2 * KEY_BITS)) | (cells[:, 1] << KEY_BITS) | cells[:, 2], inside


def first_per_voxel(points: np.ndarray, colours: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """One point per voxel (the first), with its colour and voxel key, keys sorted (a frame's own reduction,
    done in a worker thread before :meth:`VoxelCloud.add`)."""
    keys, inside = voxel_keys(points, size)
    keys, first = np.unique(keys, return_index=True)
    return keys, points[inside][first], colours[inside][first]


def chain(to_first: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The next camera to the first one's: ``to_first`` (4, 4) of the previous camera, ``step`` (4, 4) the relative
    pose that maps the previous camera's points into the next one's (what the pose network predicts for a frame
    pair, and what ``evaluate-pose`` scores): to_first @ inv(step)."""
    return to_first @ np.linalg.inv(step)


def points_in_first_camera(cloud: CameraPoints, to_first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A frame's points moved by ``to_first`` (4, 4), its camera to the first frame's: ((n, 3) float64 points,
    (n, 3) uint8 colours)."""
    parts = list(cloud.chunks())
    if not parts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    points = np.concatenate([p for p, _ in parts]).astype(np.float64)
    return points @ to_first[:3, :3].T + to_first[:3, 3], np.concatenate([c for _, c in parts])


class VoxelCloud:
    """Points in voxels of edge ``size``: a voxel keeps the first point that fell into it, with its colour.

    Memory: the kept points (15 bytes each) and one sorted int64 key per voxel; a frame's points are only held
    while it is added.
    """

    def __init__(self, size: float) -> None:
        self.size = size
        self._keys = np.empty(0, np.int64)
        self._points: list[np.ndarray] = []
        self._colours: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys: np.ndarray, points: np.ndarray, colours: np.ndarray) -> int:
        """Add one frame's :func:`first_per_voxel` (sorted unique keys); returns how many voxels were new."""
        where = np.searchsorted(self._keys, keys)
        seen = np.zeros(len(keys), bool)
        inside = where < len(self._keys)
        seen[inside] = self._keys[where[inside]] == keys[inside]
        new = ~seen
        self._keys = np.insert(self._keys, where[new], keys[new])
        self._points.append(np.ascontiguousarray(points[new], dtype=np.float32))
        self._colours.append(np.ascontiguousarray(colours[new], dtype=np.uint8))
        return int(new.sum())

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The kept points and colours, frame by frame."""
        yield from zip(self._points, self._colours)

    def sample(self, count: int = 20000) -> np.ndarray:
        """About ``count`` of the points, evenly spread over the frames (to frame the rendered view)."""
        step = max(1, len(self) // max(count, 1))
        parts = [points[::step] for points in self._points]
        return np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)
