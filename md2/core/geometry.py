"""Camera geometry of Monodepth2: disparity to depth, poses, backprojection, projection and warping.

Differentiable torch functions (except :func:`intrinsics_pyramid`, numpy for the data loader). Shapes: depth
(B, 1, H, W) in metres (up to scale for monocular models); intrinsics K, inv_K (B, 4, 4) in pixels; transforms
T (B, 4, 4) mapping points from one camera's frame to another's; points (B, 4, H*W) homogeneous; sampling
grids (B, H, W, 2) normalised to [-1, 1] (x first).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROTATION_EPS = 1e-7
"""Added to the rotation angle before dividing the axis-angle vector by it (the reference's constant)."""

NORMALISED_KITTI_K = np.array([[0.58, 0, 0.5, 0],
                               [0, 1.92, 0.5, 0],
                               [0, 0, 1, 0],
                               [0, 0, 0, 1]], dtype=np.float32)
"""The reference's KITTI intrinsics, normalised by the image width (row 0) and height (row 1)."""


def disp_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Network disparity (sigmoid output in [0, 1], any shape) -> (scaled disparity, depth), same shape.

    The scaled disparity spans [1 / max_depth, 1 / min_depth] linearly in ``disp``; depth is its inverse, so
    disp 0 gives ``max_depth`` and disp 1 gives ``min_depth``.
    """
    min_disp = 1 / max_depth
    max_disp = 1 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1 / scaled_disp


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(B, 3) -> (B, 3, 3) cross-product matrices [v]x, so that [v]x @ w = v x w."""
    x, y, z = v.unbind(1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y,
                        z, zero, -x,
                        -y, x, zero], 1).view(-1, 3, 3)


def _identity(v: torch.Tensor) -> torch.Tensor:
    """(B, 3) -> (B, 3, 3) identity matrices made of ``v``'s own ones and zeros: a traced graph (TorchScript,
    ONNX) then holds no device or dtype constant and runs wherever its input is, as torch.eye would not."""
    one, zero = torch.ones_like(v[:, 0]), torch.zeros_like(v[:, 0])
    return torch.stack([one, zero, zero,
                        zero, one, zero,
                        zero, zero, one], 1).view(-1, 3, 3)


def _homogeneous(linear: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) linear part and (B, 3) offset -> (B, 4, 4) with bottom row [0, 0, 0, 1]."""
    top = torch.cat([linear, offset.unsqueeze(2)], 2)
    bottom = torch.zeros_like(top[:, :1])
    bottom[:, 0, 3] = 1
    return torch.cat([top, bottom], 1)


def rot_from_axisangle(vec: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors (B, 1, 3) (or (B, 3)), radians -> rotations (B, 4, 4) with 1 at [3, 3].

    Rodrigues' formula with angle = |v| and axis k = v / (angle + 1e-7) (the reference's guard, which makes the
    zero vector the identity): R = cos(angle) I + sin(angle) [k]x + (1 - cos(angle)) k k^T.
    """
    v = vec.reshape(vec.shape[0], 3)
    angle = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    axis = v / (angle + ROTATION_EPS)
    cos = torch.cos(angle).unsqueeze(2)
    sin = torch.sin(angle).unsqueeze(2)
    outer = axis.unsqueeze(2) * axis.unsqueeze(1)
    rotation = cos * _identity(v) + sin * _skew(axis) + (1 - cos) * outer
    return _homogeneous(rotation, torch.zeros_like(v))


def translation_matrix(translation: torch.Tensor) -> torch.Tensor:
    """Translations (B, 1, 3) or (B, 3) -> homogeneous (B, 4, 4) with identity rotation."""
    t = translation.reshape(-1, 3)
    return _homogeneous(_identity(t), t)


def transformation_from_parameters(axisangle: torch.Tensor, translation: torch.Tensor,
                                   invert: bool = False) -> torch.Tensor:
    """Pose network output -> transform (B, 4, 4).

    Args:
        axisangle: (B, 1, 3) rotation, radians (see :func:`rot_from_axisangle`).
        translation: (B, 1, 3) or (B, 3).
        invert: return the inverse, R^T @ T(-t), instead of T(t) @ R.
    """
    rotation = rot_from_axisangle(axisangle)
    if invert:
        rotation = rotation.transpose(1, 2)
        translation = -translation
    shift = translation_matrix(translation)
    return torch.matmul(rotation, shift) if invert else torch.matmul(shift, rotation)


class BackprojectDepth(nn.Module):
    """Depth map -> 3D points in the camera frame, for any batch size.

    ``forward(depth (B, 1, H, W), inv_K (B, 4, 4))`` -> (B, 4, H*W): depth * (inv_K[:3, :3] @ [u, v, 1]) with a
    row of ones appended; u is the column index, v the row index, points in row-major pixel order. The pixel
    grid is a non-persistent buffer: it follows ``.to(device)`` and stays out of state dicts.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width
        rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                                    torch.arange(width, dtype=torch.float32), indexing="ij")
        pixels = torch.stack([cols.reshape(-1), rows.reshape(-1), torch.ones(height * width)], 0)
        self.register_buffer("pix_coords", pixels.unsqueeze(0), persistent=False)

    def forward(self, depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
        rays = torch.matmul(inv_K[:, :3, :3], self.pix_coords.to(inv_K.dtype))
        points = depth.reshape(depth.shape[0], 1, -1) * rays
        return torch.cat([points, torch.ones_like(points[:, :1])], 1)


class Project3D(nn.Module):
    """3D points -> normalised sampling grid in the camera given by K and T.

    ``forward(points (B, 4, H*W), K (B, 4, 4), T (B, 4, 4))`` -> (B, H, W, 2): P = (K @ T)[:3];
    pixel = (P @ points)[:2] / ((P @ points)[2] + eps); x divided by (W - 1) and y by (H - 1), minus 0.5, times 2,
    which maps pixel centres 0 .. W-1 to -1 .. 1 (grid_sample with align_corners=True, see :func:`warp`).
    """

    def __init__(self, height: int, width: int, eps: float = 1e-7) -> None:
        super().__init__()
        self.height, self.width, self.eps = height, width, eps

    def forward(self, points: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        P = torch.matmul(K, T)[:, :3, :]
        cam_points = torch.matmul(P, points)
        pix = cam_points[:, :2, :] / (cam_points[:, 2:3, :] + self.eps)
        pix = pix.reshape(-1, 2, self.height, self.width).permute(0, 2, 3, 1)
        size = torch.tensor([self.width - 1, self.height - 1], dtype=pix.dtype, device=pix.device)
        return (pix / size - 0.5) * 2


def warp(image: torch.Tensor, pix_coords: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, h, w) bilinearly at ``pix_coords`` (B, H, W, 2) -> (B, C, H, W), border padding.

    The reference was written against PyTorch 0.4.1, whose grid_sample behaved as align_corners=True; the
    default changed to False in PyTorch 1.3, so md2 states it explicitly (Project3D normalises for it).
    """
    # A diverged network can produce NaN coordinates; grid_sample may then read outside the image (a crash),
    # so they are sent to the border. Finite coordinates are untouched, and the NaN loss still stops training.
    grid = torch.nan_to_num(pix_coords.to(image.dtype), nan=2.0, posinf=2.0, neginf=-2.0)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def intrinsics_pyramid(K: np.ndarray, width: int, height: int,
                       num_scales: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pixel intrinsics per scale from normalised ones (the data loader's K and inv_K).

    Args:
        K: normalised intrinsics (row 0 divided by the image width, row 1 by its height), 3x3 or 4x4.
        width, height: full-resolution input size, pixels.
        num_scales: number of scales s = 0 .. num_scales - 1.
    Returns:
        (Ks, inv_Ks): ``num_scales`` float32 4x4 arrays each; row 0 of K times width // 2^s, row 1 times
        height // 2^s (integer division, as the reference), and inv_K = pinv(K).
    """
    K = np.asarray(K, dtype=np.float32)
    if K.shape not in ((3, 3), (4, 4)):
        raise ValueError(f"intrinsics must be 3x3 or 4x4, got shape {K.shape}")
    full = np.eye(4, dtype=np.float32)
    full[:K.shape[0], :K.shape[1]] = K
    Ks, inv_Ks = [], []
    for scale in range(num_scales):
        scaled = full.copy()
        scaled[0, :] *= width // (2 ** scale)
        scaled[1, :] *= height // (2 ** scale)
        Ks.append(scaled)
        inv_Ks.append(np.linalg.pinv(scaled).astype(np.float32))
    return Ks, inv_Ks
