"""Photometric and smoothness losses of Monodepth2 (per pixel; shapes documented per function)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



class SSIM(nn.Module):
    """Per-pixel SSIM dissimilarity, clamp((1 - SSIM) / 2, 0, 1), over 3x3 windows.

    Means, variances and covariance come from 3x3 average pooling of a reflection-padded input;
    C1 = 0.01^2, C2 = 0.03^2. ``forward(x, y)`` with (B, C, H, W) inputs returns (B, C, H, W).
    The five pooled maps are computed in one pooling call on a stacked tensor (same numbers, fewer kernels).
    """

    C1 = 0.01 ** 2
    C2 = 0.03 ** 2

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.pool = nn.AvgPool2d(3, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        stacked = self.pad(torch.cat([x, y, x * x, y * y, x * y], 1))
        mu_x, mu_y, xx, yy, xy = torch.split(self.pool(stacked), channels, 1)
        sigma_x = xx - mu_x ** 2
        sigma_y = yy - mu_y ** 2
        sigma_xy = xy - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + self.C1) * (2 * sigma_xy + self.C2)
        denominator = (mu_x ** 2 + mu_y ** 2 + self.C1) * (sigma_x + sigma_y + self.C2)
        return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


def photometric_error(pred: torch.Tensor, target: torch.Tensor, ssim: SSIM | None = None) -> torch.Tensor:
    """Reprojection error per pixel, (B, 3, H, W) x 2 -> (B, 1, H, W).

    0.85 * mean_c(SSIM) + 0.15 * mean_c(|target - pred|); the L1 term alone when ``ssim`` is None.
    """
    l1 = torch.abs(target - pred).mean(1, True)
    if ssim is None:
        return l1
    return 0.85 * ssim(pred, target).mean(1, True) + 0.15 * l1


def smoothness_loss(disp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of a disparity (B, 1, H, W) against its image (B, 3, H, W) -> scalar.

    mean(|d disp/dx| * exp(-mean_c |d img/dx|)) + the same in y.
    """
    grad_disp_x = torch.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:])
    grad_disp_y = torch.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :])
    grad_img_x = torch.mean(torch.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), 1, keepdim=True)
    grad_img_y = torch.mean(torch.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), 1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()
