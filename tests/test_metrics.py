"""Image and label metrics against known values and an independent SSIM reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fedsim.metrics import (
    MSE,
    PSNR,
    PSNR_CAP_DB,
    SSIM,
    LabelAccuracy,
    label_accuracy,
    match_by_psnr,
    mse,
    psnr,
    ssim,
)


def _images(n: int = 4, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _reference_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Wang et al. 2004 with scipy's Gaussian filter (radius 5 = 11 taps), valid region only."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, sigma=1.5, truncate=3.5, mode="reflect")[5:-5, 5:-5]

    per_channel = []
    for xc, yc in zip(x, y, strict=True):
        mx, my = blur(xc), blur(yc)
        vx, vy, cxy = blur(xc * xc) - mx**2, blur(yc * yc) - my**2, blur(xc * yc) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        per_channel.append(s.mean())
    return float(np.mean(per_channel))


def test_psnr_of_constant_offset_is_20_db() -> None:
    target = _images() * 0.8
    assert psnr(target + 0.1, target).item() == pytest.approx(20.0, abs=1e-4)
    assert mse(target + 0.1, target).item() == pytest.approx(0.01, rel=1e-4)
    assert psnr(target * 255 + 25.5, target * 255, data_range=255.0).item() == pytest.approx(
        20.0, abs=1e-4
    )


def test_psnr_of_exact_copy() -> None:
    target = _images(2)
    preds = target.clone()
    preds[1] += 0.1
    per_image = psnr(preds, target, reduction="none")
    assert math.isinf(per_image[0].item()) and per_image[0] > 0
    assert psnr(preds, target).item() == pytest.approx((PSNR_CAP_DB + 20.0) / 2, abs=1e-3)
    assert math.isinf(psnr(preds, target, cap_db=None).item())


def test_ssim_of_identical_images_is_one() -> None:
    x = _images()
    torch.testing.assert_close(ssim(x, x, reduction="none"), torch.ones(4, dtype=torch.float64))


def test_ssim_decreases_with_noise() -> None:
    x = _images(2, 1, 28)
    gen = torch.Generator().manual_seed(1)
    scores = [
        ssim(x + s * torch.randn(x.shape, generator=gen), x).item() for s in (0.01, 0.05, 0.2)
    ]
    assert 1.0 > scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_ssim_matches_independent_reference(channels: int, size: int) -> None:
    x = _images(3, channels, size, seed=2)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    ours = ssim(y, x, reduction="none")
    for i in range(3):
        expected = _reference_ssim(y[i].double().numpy(), x[i].double().numpy())
        assert ours[i].item() == pytest.approx(expected, abs=1e-6)


def test_ssim_of_flat_image_against_shifted_copy() -> None:
    # Constant images: no variance, so SSIM is the luminance term alone.
    x = torch.full((1, 1, 16, 16), 0.5)
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert ssim(x + 0.1, x).item() == pytest.approx(expected, rel=1e-6)


def test_ssim_rejects_images_smaller_than_window() -> None:
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        psnr(torch.rand(2, 1, 28, 28), torch.rand(3, 1, 28, 28))


def test_label_accuracy_ignores_order() -> None:
    target = torch.tensor([3, 1, 1, 7])
    assert label_accuracy(torch.tensor([1, 7, 3, 1]), target).item() == 1.0
    assert label_accuracy(torch.tensor([1, 1, 1, 7]), target).item() == 0.75
    assert label_accuracy(torch.tensor([0, 0, 0, 0]), target).item() == 0.0


def test_matching_recovers_a_shuffle() -> None:
    target = _images(6, 1, 28, seed=4)
    noise = 0.02 * torch.randn(target.shape, generator=torch.Generator().manual_seed(5))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(6))
    preds = (target + noise)[perm]
    matching = match_by_psnr(preds, target)
    torch.testing.assert_close(matching.apply(preds), target + noise)
    torch.testing.assert_close(matching.psnr, psnr(target + noise, target, reduction="none"))
    assert psnr(matching.apply(preds), target) > psnr(preds, target) + 10


def test_matching_handles_exact_copies() -> None:
    target = _images(3, 1, 28, seed=7)
    matching = match_by_psnr(target.flip(0), target)
    assert matching.order.tolist() == [2, 1, 0]
    assert torch.isinf(matching.psnr).all()


@pytest.mark.parametrize(
    ("module", "function"),
    [(PSNR(), psnr), (MSE(), mse), (SSIM(), ssim)],
    ids=["psnr", "mse", "ssim"],
)
def test_module_equals_function(module, function) -> None:
    target = _images(5, 1, 28, seed=8)
    preds = (
        target + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(9))
    ).clamp(0, 1)
    preds[0] = target[0]  # an exact copy exercises the PSNR cap in both forms
    batch_value = module(preds[:2], target[:2])
    torch.testing.assert_close(batch_value, function(preds[:2], target[:2]))
    module.update(preds[2:], target[2:])
    torch.testing.assert_close(module.compute(), function(preds, target))
    module.reset()
    module.update(preds, target)
    torch.testing.assert_close(module.compute(), function(preds, target))


def test_label_accuracy_module_accumulates_per_batch() -> None:
    metric = LabelAccuracy()
    assert metric(torch.tensor([2, 1]), torch.tensor([1, 2])).item() == 1.0
    metric.update(torch.tensor([0, 0]), torch.tensor([0, 5]))
    assert metric.compute().item() == 0.75


def test_scores_are_per_original_image_after_matching_and_say_what_is_recognisable() -> None:
    from fedsim.auditor.scoring import score_reconstruction
    from fedsim.metrics.recognisable import RECOGNISABLE_SSIM, is_recognisable

    generator = torch.Generator().manual_seed(0)
    originals = torch.rand(3, 1, 16, 16, generator=generator)
    noise = torch.rand(1, 1, 16, 16, generator=generator)
    # Reconstructions in another order: a copy of image 2, noise, a copy of image 0.
    guesses = torch.cat([originals[2:3], noise, originals[0:1]])
    labels = torch.tensor([1, 2, 3])
    scores = score_reconstruction(guesses, labels, originals, labels)
    assert scores.ssim_images[0] > 0.99 and scores.ssim_images[2] > 0.99
    assert scores.ssim_images[1] < RECOGNISABLE_SSIM
    assert scores.psnr_images[0] == scores.psnr_images[2] == 100.0  # capped exact copies
    assert scores.recognisable == pytest.approx(2 / 3)
    assert is_recognisable(RECOGNISABLE_SSIM) and not is_recognisable(RECOGNISABLE_SSIM - 1e-9)
