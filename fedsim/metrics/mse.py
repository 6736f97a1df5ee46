"""Mean squared error per image."""

from __future__ import annotations

import torch

from fedsim.metrics._common import PerImageMetric, Reduction, check_images, reduce


def mse_per_image(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) mean of squared differences over C, H, W, computed in float64."""
    check_images(preds, target)
    return (preds.double() - target.double()).square().mean(dim=(1, 2, 3))


def mse(preds: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Mean squared error of each image, reduced over the batch."""
    return reduce(mse_per_image(preds, target), reduction)


class MSE(PerImageMetric):
    """Accumulating twin of `mse`."""

    def per_image(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mse_per_image(preds, target)
