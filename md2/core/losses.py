"""Photometric and smoothness losses of Monodepth2 (per pixel; shapes documented per function).

Images are in [0, 1]. The training step (minimum reprojection, auto-masking, predictive mask) builds on these
in :mod:`md2.core.train.step`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

C1 = 0.01 ** 2
C2 = 0.03 ** 2
SSIM_BLOCK_ELEMENTS = 1 << 19
"""Elements per map that SSIM works on at a time (2 MB: one 640x192 sample per block). Smaller blocks stay in
faster caches but pay the per-operation overhead more often: forward + backward of a 4x3x192x640 pair on the
2-core CI machine, 2^17: 56 ms, 2^18: 52 ms, 2^19: 44 ms, 2^20 and the whole image: 44 ms."""


class SSIM(nn.Module):
    """Per-pixel SSIM dissimilarity, clamp((1 - SSIM) / 2, 0, 1), over 3x3 windows.

    Means, variances and covariance come from 3x3 average pooling (stride 1) of the reflection-padded (1 pixel)
    inputs; C1 = 0.01^2, C2 = 0.03^2. ``forward(x, y)`` with (B, C, H, W) inputs returns (B, C, H, W).
    The forward numbers are those of the plain formula with the 3x3 means as two 3-tap sums
    (:func:`box_mean_3x3`); the backward pass is the formula's derivative written out (:class:`_SSIMFunction`).

    A training step compares ten images with the same target, so the target's statistics (its padding, 3x3 mean
    and variance) are kept while the same unchanged tensor, needing no gradient, is passed again as ``y``:
    the same values as computing them each time, computed once.
    """

    C1 = C1
    C2 = C2

    def __init__(self) -> None:
        super().__init__()
        self._target: tuple[torch.Tensor, int, _TargetStatistics] | None = None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.requires_grad:
            return _SSIMFunction.apply(x, y, None)
        return _SSIMFunction.apply(x, y, self._statistics(y))

    def _statistics(self, y: torch.Tensor) -> "_TargetStatistics":
        kept = self._target
        if kept is not None and kept[0] is y and kept[1] == y._version:
            return kept[2]
        padded = _reflect_pad(y)
        mean = box_mean_3x3(padded)
        statistics = _TargetStatistics(padded, mean, box_mean_3x3(padded * padded) - mean * mean)
        self._target = (y, y._version, statistics)
        return statistics


@dataclass(frozen=True)
class _TargetStatistics:
    """A target image's reflection padding (B, C, H + 2, W + 2), 3x3 mean and variance E[y^2] - mu^2 (B, C, H, W)."""

    padded: torch.Tensor
    mean: torch.Tensor
    variance: torch.Tensor


class _SSIMFunction(torch.autograd.Function):
    """SSIM with a hand-written backward pass, worked through in blocks of rows.

    Autograd through the formula keeps ~20 image-sized maps per call for the backward pass and walks each of
    them through memory several times; the training step makes 8 such calls per batch. Here only the padded
    inputs (and a target's statistics) are kept; the backward pass recomputes the means block by block (up to
    one sample at a time, see SSIM_BLOCK_ELEMENTS) and applies the chain rule by hand. Gradients agree with
    autograd's to float rounding (tested in float64).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, target: _TargetStatistics | None) -> torch.Tensor:
        padded_x = _reflect_pad(x)
        padded_y = _reflect_pad(y) if target is None else target.padded
        out = torch.empty_like(x)
        for b, rows in _blocks(x):
            _, _, a, b_, c, d = _ssim_terms(padded_x[b, :, rows.start:rows.stop + 2],
                                            padded_y[b, :, rows.start:rows.stop + 2], *_block_of(target, b, rows))
            ratio = a * b_
            ratio /= c * d
            torch.clamp((1 - ratio) / 2, 0, 1, out=out[b, :, rows])
        ctx.save_for_backward(padded_x, padded_y, *(() if target is None else (target.mean, target.variance)))
        ctx.input_shape = x.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        padded_x, padded_y, *kept = ctx.saved_tensors
        target = _TargetStatistics(padded_y, *kept) if kept else None
        needs = ctx.needs_input_grad[:2]
        grads = [torch.zeros_like(padded_x) if need else None for need in needs]
        like = padded_x.new_empty(ctx.input_shape)
        for b, rows in _blocks(like):
            window = slice(rows.start, rows.stop + 2)
            x, y = padded_x[b, :, window], padded_y[b, :, window]
            mu_x, mu_y, a, b_, c, d = _ssim_terms(x, y, *_block_of(target, b, rows))
            denominator = c * d
            unclamped = (1 - a * b_ / denominator) / 2
            g = grad[b, :, rows] * ((unclamped >= 0) & (unclamped <= 1))  # torch.clamp's gradient rule
            g_numerator = -g / (2 * denominator)
            g_denominator = g * (a * b_) / (2 * denominator * denominator)
            g_a, g_b, g_c, g_d = g_numerator * b_, g_numerator * a, g_denominator * d, g_denominator * c
            # a = 2 mu_x mu_y + C1, b = 2 (E[xy] - mu_x mu_y) + C2, c = mu_x^2 + mu_y^2 + C1,
            # d = E[x^2] - mu_x^2 + E[y^2] - mu_y^2 + C2: the gradients of the five 3x3 means, then through
            # the means (the adjoint of a 3x3 mean is a 3x3 mean of the zero-padded gradient).
            for own, other, mu_own, mu_other, out in ((x, y, mu_x, mu_y, grads[0]), (y, x, mu_y, mu_x, grads[1])):
                if out is None:
                    continue
                g_mu = 2 * mu_other * (g_a - g_b) + 2 * mu_own * (g_c - g_d)
                spread = box_mean_3x3(F.pad(torch.cat([g_mu, g_d, 2 * g_b]), (2, 2, 2, 2)))
                s_mu, s_square, s_product = torch.split(spread, own.shape[0])
                out[b, :, window] += s_mu + 2 * own * s_square + other * s_product
        return (*(None if g is None else torch.ops.aten.reflection_pad2d_backward(g, like, [1, 1, 1, 1])
                  for g in grads), None)


def _block_of(target: _TargetStatistics | None, b: int, rows: slice) -> tuple[torch.Tensor, ...]:
    """The target's mean and variance over one block's centres (nothing without kept statistics)."""
    return () if target is None else (target.mean[b, :, rows], target.variance[b, :, rows])


def _reflect_pad(image: torch.Tensor) -> torch.Tensor:
    return F.pad(image, (1, 1, 1, 1), mode="reflect")


def _blocks(image: torch.Tensor):
    """(batch index, rows) blocks of a (B, C, H, W) image of about SSIM_BLOCK_ELEMENTS elements each."""
    _, channels, height, width = image.shape
    step = max(1, SSIM_BLOCK_ELEMENTS // (channels * (width + 2)))
    for b in range(image.shape[0]):
        for start in range(0, height, step):
            yield b, slice(start, min(start + step, height))


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, mu_y: torch.Tensor | None = None,
                var_y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """For padded (C, h + 2, w + 2) blocks: mu_x, mu_y and SSIM = (a * b) / (c * d) at the h x w centres.

    ``mu_y`` and ``var_y`` (E[y^2] - mu_y^2), when given, are y's over the same centres, computed beforehand
    by the same operations (so the same numbers)."""
    mu_x = box_mean_3x3(x)
    mu_y = box_mean_3x3(y) if mu_y is None else mu_y
    mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
    a = 2 * mu_xy + C1
    b = 2 * (box_mean_3x3(x * y) - mu_xy) + C2
    c = mu_xx + mu_yy + C1
    var_y = box_mean_3x3(y * y) - mu_yy if var_y is None else var_y
    d = (box_mean_3x3(x * x) - mu_xx) + var_y + C2
    return mu_x, mu_y, a, b, c, d


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
