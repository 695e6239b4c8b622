"""Camera geometry of Monodepth2: disparity to depth, poses, backprojection, projection and warping.

Differentiable torch functions. Shapes: depth (B, 1, H, W); intrinsics K, inv_K (B, 4, 4); transforms T
(B, 4, 4); points (B, 4, H*W) homogeneous; sampling grids (B, H, W, 2) normalised to [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def disp_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid output -> (scaled disparity in [1/max_depth, 1/min_depth], depth = 1 / scaled disparity)."""
    min_disp = 1 / max_depth
    max_disp = 1 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1 / scaled_disp


def rot_from_axisangle(vec: torch.Tensor) -> torch.Tensor:
    """Axis-angle (B, 1, 3) -> rotation (B, 4, 4) by Rodrigues' formula (angle = |v|, axis = v / (|v| + 1e-7))."""
    angle = torch.norm(vec, 2, 2, True)
    axis = vec / (angle + 1e-7)
    ca, sa = torch.cos(angle), torch.sin(angle)
    c = 1 - ca
    x, y, z = (axis[..., i].unsqueeze(1) for i in range(3))
    xs, ys, zs = x * sa, y * sa, z * sa
    xc, yc, zc = x * c, y * c, z * c
    xyc, yzc, zxc = x * yc, y * zc, z * xc
    rows = [
        [x * xc + ca, xyc - zs, zxc + ys],
        [xyc + zs, y * yc + ca, yzc - xs],
        [zxc - ys, yzc + xs, z * zc + ca],
    ]
    rot = torch.zeros((vec.shape[0], 4, 4), dtype=vec.dtype, device=vec.device)
    for i in range(3):
        for j in range(3):
            rot[:, i, j] = torch.squeeze(rows[i][j])
    rot[:, 3, 3] = 1
    return rot


def translation_matrix(translation: torch.Tensor) -> torch.Tensor:
    """Translation (B, 1, 3) or (B, 3) -> homogeneous (B, 4, 4)."""
    t = translation.reshape(-1, 3)
    T = torch.eye(4, dtype=t.dtype, device=t.device).repeat(t.shape[0], 1, 1)
    T[:, :3, 3] = t
    return T


def transformation_from_parameters(axisangle: torch.Tensor, translation: torch.Tensor,
                                   invert: bool = False) -> torch.Tensor:
    """Pose network output -> (B, 4, 4): T(t) @ R, or with ``invert`` R^T @ T(-t) (the inverse)."""
    R = rot_from_axisangle(axisangle)
    t = translation.clone()
    if invert:
        R = R.transpose(1, 2)
        t = t * -1
    T = translation_matrix(t)
    return torch.matmul(R, T) if invert else torch.matmul(T, R)


class BackprojectDepth(nn.Module):
    """Depth map -> 3D points in the camera frame, for any batch size.

    ``forward(depth (B, 1, H, W), inv_K (B, 4, 4))`` -> (B, 4, H*W): depth * (inv_K[:3, :3] @ [u, v, 1]) with a
    row of ones appended; u is the column index, v the row index.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width
        v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                              torch.arange(width, dtype=torch.float32), indexing="ij")
        pix = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(height * width)], 0)
        self.register_buffer("pix_coords", pix.unsqueeze(0), persistent=False)

    def forward(self, depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
        batch = depth.shape[0]
        rays = torch.matmul(inv_K[:, :3, :3], self.pix_coords.to(inv_K.dtype))
        points = depth.reshape(batch, 1, -1) * rays
        ones = torch.ones_like(points[:, :1])
        return torch.cat([points, ones], 1)


class Project3D(nn.Module):
    """3D points -> normalised sampling grid in the camera given by K and T.

    ``forward(points (B, 4, N), K (B, 4, 4), T (B, 4, 4))`` -> (B, H, W, 2): P = (K @ T)[:3];
    pixel = P @ points, x and y divided by (z + eps); then divided by (W - 1) and (H - 1), minus 0.5, times 2,
    which maps pixel centres 0 .. W-1 to -1 .. 1 (grid_sample with align_corners=True).
    """

    def __init__(self, height: int, width: int, eps: float = 1e-7) -> None:
        super().__init__()
        self.height, self.width, self.eps = height, width, eps

    def forward(self, points: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        P = torch.matmul(K, T)[:, :3, :]
        cam_points = torch.matmul(P, points)
        pix = cam_points[:, :2, :] / (cam_points[:, 2, :].unsqueeze(1) + self.eps)
        pix = pix.view(-1, 2, self.height, self.width).permute(0, 2, 3, 1)
        scale = torch.tensor([self.width - 1, self.height - 1], dtype=pix.dtype, device=pix.device)
        return (pix / scale - 0.5) * 2


def warp(image: torch.Tensor, pix_coords: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, h, w) at ``pix_coords`` (B, H, W, 2) -> (B, C, H, W), border padding.

    The reference was written against PyTorch 0.4.1, whose grid_sample behaved as align_corners=True; the
    default changed to False in PyTorch 1.3, so md2 states it explicitly (Project3D normalises for it).
    """
    # A diverged network can produce NaN coordinates; grid_sample may then read outside the image (a crash),
    # so they are sent to the border. Finite coordinates are untouched, and the NaN loss still stops training.
    grid = torch.nan_to_num(pix_coords.to(image.dtype), nan=2.0, posinf=2.0, neginf=-2.0)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


NORMALISED_KITTI_K = np.array([[0.58, 0, 0.5, 0],
                               [0, 1.92, 0.5, 0],
                               [0, 0, 1, 0],
                               [0, 0, 0, 1]], dtype=np.float32)
"""The reference's KITTI intrinsics, normalised by the image width (row 0) and height (row 1)."""


def intrinsics_pyramid(K: np.ndarray, width: int, height: int,
                       num_scales: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pixel intrinsics per scale from normalised ones: row 0 x W/2^s, row 1 x H/2^s; inv_K = pinv(K).

    Args:
        K: normalised intrinsics, 3x3 or 4x4.
    Returns:
        (Ks, inv_Ks): ``num_scales`` float32 4x4 arrays each.
    """
    full = np.eye(4, dtype=np.float32)
    K = np.asarray(K, dtype=np.float32)
    full[:K.shape[0], :K.shape[1]] = K[:4, :4]
    Ks, inv_Ks = [], []
    for scale in range(num_scales):
        scaled = full.copy()
        scaled[0, :] *= width // (2 ** scale)
        scaled[1, :] *= height // (2 ** scale)
        Ks.append(scaled)
        inv_Ks.append(np.linalg.pinv(scaled).astype(np.float32))
    return Ks, inv_Ks
