"""md2.core.losses: SSIM, photometric error and edge-aware smoothness on cases computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from md2.core.losses import SSIM, photometric_error, smoothness_loss


def plain_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM dissimilarity written out map by map, as the issue states it."""
    pad, pool = torch.nn.ReflectionPad2d(1), torch.nn.AvgPool2d(3, 1)
    x, y = pad(x), pad(y)
    mu_x, mu_y = pool(x), pool(y)
    sigma_x = pool(x ** 2) - mu_x ** 2
    sigma_y = pool(y ** 2) - mu_y ** 2
    sigma_xy = pool(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + 0.01 ** 2) * (2 * sigma_xy + 0.03 ** 2)
    denominator = (mu_x ** 2 + mu_y ** 2 + 0.01 ** 2) * (sigma_x + sigma_y + 0.03 ** 2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 1, 5, 9)])
def test_ssim_of_an_image_with_itself_is_zero(shape):
    image = torch.rand(shape)
    result = SSIM()(image, image)
    assert result.shape == shape
    assert result.abs().max() < 1e-6


@pytest.mark.parametrize("shape", [(2, 3, 20, 30), (1, 1, 4, 4), (3, 2, 7, 11)])
def test_fused_ssim_equals_the_plain_formula(shape):
    x, y = torch.rand(shape), torch.rand(shape)
    result = SSIM()(x, y)
    # The plain formula in float64 is the truth; md2's 3x3 sums must be as close to it as float32 AvgPool2d is
    # (both round differently: sigma = E[x^2] - mu^2 amplifies 1e-7 differences by cancellation).
    truth = plain_ssim(x.double(), y.double())
    pool_error = (plain_ssim(x, y) - truth).abs().max().item()
    torch.testing.assert_close(result.double(), truth, atol=1e-5, rtol=0)
    assert (result - truth).abs().max().item() <= 2 * pool_error + 1e-6
    torch.testing.assert_close(result, SSIM()(y, x), atol=1e-6, rtol=0)
    assert result.min() >= 0 and result.max() <= 1


@pytest.mark.parametrize("shape", [(2, 3, 40, 70), (1, 3, 13, 11), (4, 3, 192, 640)])
def test_kept_target_statistics_give_the_same_bits_forward_and_backward(shape):
    numbers = torch.Generator().manual_seed(7)  # a generator of its own: the other tests' inputs stay as they were
    target = torch.rand(shape, generator=numbers)
    kept = SSIM()
    for _ in range(3):  # the first call computes the target's statistics, the others reuse them
        x_fresh = torch.rand(shape, generator=numbers).requires_grad_()
        x_kept = x_fresh.detach().clone().requires_grad_()
        grad = torch.rand(shape, generator=numbers)
        fresh = SSIM()(x_fresh, target.clone())  # a new module and tensor: nothing kept
        reused = kept(x_kept, target)
        fresh.backward(grad)
        reused.backward(grad)
        assert torch.equal(reused, fresh)
        assert torch.equal(x_kept.grad, x_fresh.grad)
    assert kept._target[0] is target


def test_kept_target_statistics_follow_a_changed_or_new_target():
    numbers = torch.Generator().manual_seed(8)
    x, target = torch.rand(1, 3, 12, 20, generator=numbers), torch.rand(1, 3, 12, 20, generator=numbers)
    ssim = SSIM()
    before = ssim(x, target)
    target.mul_(0.5)  # changed in place: its version moves on
    assert torch.equal(ssim(x, target), SSIM()(x, target.clone()))
    assert not torch.equal(ssim(x, target), before)
    other = torch.rand(1, 3, 12, 20, generator=numbers)
    assert torch.equal(ssim(x, other), SSIM()(x, other.clone()))


def test_a_target_needing_gradients_gets_them():
    numbers = torch.Generator().manual_seed(9)
    x, y = (torch.rand(1, 3, 10, 14, generator=numbers).requires_grad_() for _ in range(2))
    SSIM()(x, y).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_box_mean_is_average_pooling():
    from md2.core.losses import box_mean_3x3

    x = torch.rand(2, 5, 9, 13, requires_grad=True)
    torch.testing.assert_close(box_mean_3x3(x), torch.nn.functional.avg_pool2d(x, 3, 1), atol=1e-6, rtol=0)
    grad = torch.rand(2, 5, 7, 11)
    ours, = torch.autograd.grad(box_mean_3x3(x), x, grad)
    pooled, = torch.autograd.grad(torch.nn.functional.avg_pool2d(x, 3, 1), x, grad)
    torch.testing.assert_close(ours, pooled, atol=1e-6, rtol=0)


def test_ssim_of_inverted_flat_images_is_hand_computed():
    # Flat images a and b: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.8
    ssim = (2 * a * b + 0.01 ** 2) / (a ** 2 + b ** 2 + 0.01 ** 2)
    # float64: in float32, pool(x^2) - mu^2 leaves a rounding residue comparable to C2's effect.
    flat = {"size": (1, 3, 6, 6), "dtype": torch.float64}
    result = SSIM()(torch.full(fill_value=a, **flat), torch.full(fill_value=b, **flat))
    torch.testing.assert_close(result, torch.full(fill_value=(1 - ssim) / 2, **flat), atol=1e-12, rtol=0)


def test_photometric_error_is_l1_without_ssim_and_the_weighted_sum_with_it():
    # In float64, so that the comparison checks the formula: in float32 the two SSIMs (means summed in another
    # order, divided by variances that can be ~1e-3) differ by up to ~1e-5 on some random inputs.
    generator = torch.Generator().manual_seed(0)  # its own inputs, whatever other tests drew before
    pred, target = (torch.rand(2, 3, 8, 10, generator=generator, dtype=torch.float64) for _ in range(2))
    l1 = (pred - target).abs().mean(1, True)
    assert photometric_error(pred, target).shape == (2, 1, 8, 10)
    torch.testing.assert_close(photometric_error(pred, target, None), l1)
    expected = 0.85 * plain_ssim(pred, target).mean(1, True) + 0.15 * l1
    torch.testing.assert_close(photometric_error(pred, target, SSIM()), expected, atol=1e-12, rtol=0)


def test_photometric_error_of_flat_images_is_hand_computed():
    a, b = 0.2, 0.8
    ssim = (2 * a * b + 0.01 ** 2) / (a ** 2 + b ** 2 + 0.01 ** 2)
    flat = {"size": (1, 3, 5, 5), "dtype": torch.float64}
    error = photometric_error(torch.full(fill_value=a, **flat), torch.full(fill_value=b, **flat), SSIM())
    expected = 0.85 * (1 - ssim) / 2 + 0.15 * (b - a)
    torch.testing.assert_close(error, torch.full((1, 1, 5, 5), expected, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("value", [0.0, 0.3, 5.0])
def test_smoothness_of_a_constant_disparity_is_zero(value):
    assert smoothness_loss(torch.full((2, 1, 6, 7), value), torch.rand(2, 3, 6, 7)) == 0


def test_smoothness_of_known_gradients_is_hand_computed():
    height, width = 4, 5
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float32).expand(height, width)
    disp = (0.1 * cols + 0.2 * rows)[None, None]  # |d/dx| = 0.1, |d/dy| = 0.2 everywhere
    image = torch.zeros(1, 3, height, width)
    image[..., 2:] = 1.0  # an edge of height 1 between columns 1 and 2 (mean over channels: 1)
    # x: 4 column pairs, one across the edge weighted exp(-1); y: no image gradient, weight 1.
    expected = 0.1 * (3 + math.exp(-1)) / 4 + 0.2
    assert smoothness_loss(disp, image).item() == pytest.approx(expected, rel=1e-6)


def test_smoothness_is_lower_across_image_edges():
    disp = torch.rand(1, 1, 8, 8)
    flat, textured = torch.zeros(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert smoothness_loss(disp, textured) < smoothness_loss(disp, flat)


def autograd_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The formula through autograd, means as in md2's forward (the hand-written backward's reference)."""
    from md2.core.losses import box_mean_3x3

    pad = torch.nn.ReflectionPad2d(1)
    x, y = pad(x), pad(y)
    mu_x, mu_y = box_mean_3x3(x), box_mean_3x3(y)
    sigma_x = box_mean_3x3(x * x) - mu_x * mu_x
    sigma_y = box_mean_3x3(y * y) - mu_y * mu_y
    sigma_xy = box_mean_3x3(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + 0.01 ** 2) * (2 * sigma_xy + 0.03 ** 2)
    denominator = (mu_x * mu_x + mu_y * mu_y + 0.01 ** 2) * (sigma_x + sigma_y + 0.03 ** 2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


@pytest.mark.parametrize("block_elements", [1 << 18, 40])
@pytest.mark.parametrize("shape", [(2, 3, 20, 30), (1, 1, 4, 4), (3, 2, 7, 11)])
def test_ssim_gradient_equals_autograd_of_the_formula(shape, block_elements, monkeypatch):
    # 40 elements per block: every image is worked through in blocks of a row or two, so the halo rows that
    # neighbouring blocks share must add up.
    monkeypatch.setattr("md2.core.losses.SSIM_BLOCK_ELEMENTS", block_elements)
    generator = torch.Generator().manual_seed(sum(shape) + block_elements)
    x, y = (torch.rand(shape, dtype=torch.float64, generator=generator).requires_grad_() for _ in range(2))
    # Some pixels identical: SSIM at or below 0 there, where the clamp passes no gradient.
    with torch.no_grad():
        y[..., : shape[-2] // 2, :] = x[..., : shape[-2] // 2, :]
    grad = torch.rand(shape, dtype=torch.float64, generator=generator)
    ours = torch.autograd.grad((SSIM()(x, y) * grad).sum(), (x, y))
    expected = torch.autograd.grad((autograd_ssim(x, y) * grad).sum(), (x, y))
    for mine, theirs in zip(ours, expected):
        torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(SSIM()(x, y), autograd_ssim(x, y), atol=1e-14, rtol=0)


def test_ssim_gradient_passes_gradcheck_and_only_where_asked():
    x = torch.rand(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SSIM(), (x, y))
    target = y.detach()
    (gx,) = torch.autograd.grad(SSIM()(x, target).sum(), (x,))
    assert gx.shape == x.shape and target.grad is None
    with torch.no_grad():
        assert not SSIM()(x, y).requires_grad


def test_ssim_gradient_in_float32_is_autograd_within_rounding():
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 48, 160, generator=generator, requires_grad=True)
    y = torch.rand(2, 3, 48, 160, generator=generator)
    ours, = torch.autograd.grad(SSIM()(x, y).mean(), x)
    theirs, = torch.autograd.grad(autograd_ssim(x, y).mean(), x)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-5
