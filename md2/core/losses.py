"""Photometric and smoothness losses of Monodepth2 (per pixel; shapes documented per function).

Images are in [0, 1]. The training step (minimum reprojection, auto-masking, predictive mask) builds on these
in :mod:`md2.core.train.step`.
"""

from __future__ import annotations

import torch
from torch import nn


class SSIM(nn.Module):
    """Per-pixel SSIM dissimilarity, clamp((1 - SSIM) / 2, 0, 1), over 3x3 windows.

    Means, variances and covariance come from 3x3 average pooling (stride 1) of the reflection-padded (1 pixel)
    inputs; C1 = 0.01^2, C2 = 0.03^2. ``forward(x, y)`` with (B, C, H, W) inputs returns (B, C, H, W).
    The 3x3 mean is computed as two 3-tap sums (:func:`box_mean_3x3`), not with AvgPool2d.
    """

    C1 = 0.01 ** 2
    C2 = 0.03 ** 2

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        # One padding and one pooling call over the five maps stacked on the channel axis (fewer kernels than
        # five calls; padding commutes with the products, so the numbers are those of the plain formula).
        stacked = self.pad(torch.cat([x, y, x * x, y * y, x * y], 1))
        mu_x, mu_y, xx, yy, xy = torch.split(box_mean_3x3(stacked), channels, 1)
        mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
        sigma_x = xx - mu_xx
        sigma_y = yy - mu_yy
        sigma_xy = xy - mu_xy
        numerator = (2 * mu_xy + self.C1) * (2 * sigma_xy + self.C2)
        denominator = (mu_xx + mu_yy + self.C1) * (sigma_x + sigma_y + self.C2)
        return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


def box_mean_3x3(x: torch.Tensor) -> torch.Tensor:
    """Mean over every 3x3 window (stride 1, no padding): (..., H, W) -> (..., H - 2, W - 2).

    The reference's AvgPool2d(3, 1), as a 3-tap sum along each axis: the same windows and weights, summed in
    another order (differences ~1e-7); forward plus backward take half the time of avg_pool2d on the CPU.
    """
    rows = x[..., :-2] + x[..., 1:-1] + x[..., 2:]
    return (rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]) / 9


def photometric_error(pred: torch.Tensor, target: torch.Tensor, ssim: SSIM | None = None) -> torch.Tensor:
    """Reprojection error per pixel of images (B, C, H, W) -> (B, 1, H, W).

    0.85 * mean_c(SSIM(pred, target)) + 0.15 * mean_c(|target - pred|); the L1 term alone when ``ssim`` is
    None (``--no-ssim``).
    """
    l1 = torch.abs(target - pred).mean(1, True)
    if ssim is None:
        return l1
    return 0.85 * ssim(pred, target).mean(1, True) + 0.15 * l1


def smoothness_loss(disp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of a disparity (B, 1, H, W) against its image (B, C, H, W) -> scalar.

    mean(|d disp/dx| * exp(-mean_c |d img/dx|)) + mean(|d disp/dy| * exp(-mean_c |d img/dy|)), with forward
    differences between neighbouring pixels (so the x terms are (B, 1, H, W-1), the y terms (B, 1, H-1, W)).
    """
    grad_disp_x = torch.abs(disp[..., :-1] - disp[..., 1:])
    grad_disp_y = torch.abs(disp[..., :-1, :] - disp[..., 1:, :])
    grad_img_x = torch.mean(torch.abs(img[..., :-1] - img[..., 1:]), 1, keepdim=True)
    grad_img_y = torch.mean(torch.abs(img[..., :-1, :] - img[..., 1:, :]), 1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()
