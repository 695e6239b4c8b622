"""Depth maps to camera-frame points, in NumPy: the reference's ``BackprojectDepth`` (inv(K) @ [u, v, 1] x depth)
for one picture, streamed in bands of rows so that memory stays bounded for large photos."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from md2.core.pointcloud.intrinsics import Intrinsics

BAND_PIXELS = 1 << 20
"""Kept pixels per band at most (a band's temporaries are ~30 bytes a pixel)."""


def depth_from_disparity(disp: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """The reference's disp_to_depth in float32: sigmoid disparity -> depth in the network's units."""
    min_disp, max_disp = np.float32(1.0 / max_depth), np.float32(1.0 / min_depth)
    return np.float32(1.0) / (min_disp + (max_disp - min_disp) * disp.astype(np.float32, copy=False))


@dataclass(frozen=True)
class CameraPoints:
    """The points of one depth map: pixel (u, v) with depth z -> ((u - cx) z / fx, (v - cy) z / fy, z), x right,
    y down, z forward (KITTI / OpenCV). Every ``stride``-th pixel of every ``stride``-th row, from (0, 0); pixels
    whose depth is not finite, not positive or above ``max_depth`` are dropped.

    depth: (H, W) float32 in the cloud's units; rgb: (H, W, 3) uint8 colours or None.
    """

    depth: np.ndarray
    rgb: np.ndarray | None
    camera: Intrinsics
    stride: int = 1
    max_depth: float | None = None

    def _rows(self) -> list[range]:
        height, width = self.depth.shape
        per_band = max(1, BAND_PIXELS // max(1, (width + self.stride - 1) // self.stride))
        rows = range(0, height, self.stride)
        return [rows[start:start + per_band] for start in range(0, len(rows), per_band)]

    def _kept(self, z: np.ndarray) -> np.ndarray:
        keep = np.isfinite(z) & (z > 0)
        if self.max_depth is not None:
            keep &= z <= self.max_depth
        return keep

    def count(self) -> int:
        """How many points :meth:`chunks` yields."""
        return sum(int(self._kept(self.depth[band.start:band.stop:self.stride, ::self.stride]).sum())
                   for band in self._rows())

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(n, 3) float32 points and (n, 3) uint8 colours (grey 128 without ``rgb``), band by band."""
        k = self.camera
        columns = np.arange(0, self.depth.shape[1], self.stride, dtype=np.float32)
        ray_x = (columns - np.float32(k.cx)) / np.float32(k.fx)
        for band in self._rows():
            z = self.depth[band.start:band.stop:self.stride, ::self.stride]
            keep = self._kept(z)
            ray_y = (np.asarray(band, dtype=np.float32) - np.float32(k.cy)) / np.float32(k.fy)
            rows, cols = np.nonzero(keep)
            zs = z[rows, cols].astype(np.float32)
            points = np.stack([ray_x[cols] * zs, ray_y[rows] * zs, zs], axis=1)
            if self.rgb is not None:
                colours = self.rgb[band.start:band.stop:self.stride, ::self.stride][rows, cols]
            else:
                colours = np.full((len(zs), 3), 128, np.uint8)
            yield points, np.ascontiguousarray(colours, dtype=np.uint8)
