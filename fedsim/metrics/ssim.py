"""Structural similarity (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004).

Local statistics come from an 11×11 Gaussian window (σ = 1.5) over the valid region
(no padding); the SSIM map is averaged per channel, then over channels, per image.
Covariances are the plain Gaussian-weighted ones, without a sample correction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedsim.metrics._common import PerImageMetric, Reduction, check_images, reduce


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return torch.outer(kernel, kernel).expand(channels, 1, size, size)


def ssim_per_image(
    preds: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """(N,) mean SSIM of each image, computed in float64."""
    check_images(preds, target)
    if min(preds.shape[-2:]) < kernel_size:
        raise ValueError(
            f"SSIM needs images of at least {kernel_size}×{kernel_size}, got {tuple(preds.shape[-2:])}"
        )
    x, y = preds.double(), target.double()
    channels = x.shape[1]
    window = _gaussian_window(kernel_size, sigma, channels, x)

    def local_mean(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, window, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x.square()
    var_y = local_mean(y * y) - mu_y.square()
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(dim=(1, 2, 3))


def ssim(
    preds: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    reduction: Reduction = "mean",
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """SSIM of each (N, C, H, W) image against its target, reduced over the batch."""
    values = ssim_per_image(preds, target, data_range, kernel_size, sigma, k1, k2)
    return reduce(values, reduction)


class SSIM(PerImageMetric):
    """Accumulating twin of `ssim`."""

    def __init__(
        self,
        data_range: float = 1.0,
        reduction: Reduction = "mean",
        kernel_size: int = 11,
        sigma: float = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
    ) -> None:
        super().__init__(reduction)
        self.data_range = data_range
        self.kernel_size = kernel_size
        self.sigma = sigma
        self.k1 = k1
        self.k2 = k2

    def per_image(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ssim_per_image(
            preds, target, self.data_range, self.kernel_size, self.sigma, self.k1, self.k2
        )
