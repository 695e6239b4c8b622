"""The reference's lidar-to-depth-map rule written out plainly, step by step, to check md2's vectorised one.

Issue 25's description of the reference's generate_depth_map: on the in-image points in scan order, with
``row, col = round(v) - 1, round(u) - 1`` and the key ``row * (W - 1) + col - 1`` (not one-to-one: pixel
(r, W-1) and pixel (r+1, 0) share it), (a) every point writes its depth at its pixel in scan order (the last one
of a pixel stays), (b) for every key held by two or more points, the smallest depth of those points is written
at the pixel of the first of them, (c) negative depths become 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def reference_depth_map(P: np.ndarray, shape: tuple[int, int], points: np.ndarray,
                        vel_depth: bool = False) -> np.ndarray:
    """(H, W) float64 depth of ``points`` ((N, 3) or (N, 4) lidar x, y, z) through the (3, 4) projection ``P``."""
    height, width = shape
    kept = np.asarray(points)[np.asarray(points)[:, 0] >= 0]
    homogeneous = np.column_stack([kept[:, :3], np.ones(len(kept), dtype=kept.dtype)])
    projected = np.dot(P, homogeneous.T).T
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(projected[:, 0] / projected[:, 2]) - 1
        v = np.round(projected[:, 1] / projected[:, 2]) - 1
    inside = (u >= 0) & (v >= 0) & (u < width) & (v < height)
    rows, cols = v[inside].astype(int).tolist(), u[inside].astype(int).tolist()
    depths = (kept[:, 0].astype(np.float64) if vel_depth else projected[:, 2])[inside].tolist()
    depth = np.zeros(shape)
    for row, col, value in zip(rows, cols, depths):  # (a)
        depth[row, col] = value
    holders: dict[int, list[int]] = {}
    for index, (row, col) in enumerate(zip(rows, cols)):
        holders.setdefault(row * (width - 1) + col - 1, []).append(index)
    for indices in holders.values():  # (b)
        if len(indices) >= 2:
            first = indices[0]
            depth[rows[first], cols[first]] = min(depths[i] for i in indices)
    depth[depth < 0] = 0  # (c)
    return depth


def scan_points(path: Path) -> np.ndarray:
    """A KITTI .bin scan as (N, 4) float32 with the reflectance set to 1, as the reference reads it."""
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    points[:, 3] = 1.0
    return points
