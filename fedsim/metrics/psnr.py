"""Peak signal-to-noise ratio per image, then reduced.

An image equal to its target has PSNR +inf, which `reduction="none"` returns as is.
The aggregated reductions first clamp each image at `cap_db` (default 100 dB, far
above any reconstruction that is not exact: 8-bit quantisation alone caps near 59 dB),
so one perfect image does not make a batch mean infinite; `cap_db=None` disables that.
"""

from __future__ import annotations

import torch

from fedsim.metrics._common import PerImageMetric, Reduction, check_reduction, reduce
from fedsim.metrics.mse import mse_per_image

PSNR_CAP_DB = 100.0


def psnr_per_image(
    preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0
) -> torch.Tensor:
    """(N,) 10·log10(data_range² / MSE) in dB, in float64; +inf where an image is exact."""
    return 10.0 * torch.log10(data_range**2 / mse_per_image(preds, target))


def _reduce_psnr(values: torch.Tensor, reduction: str, cap_db: float | None) -> torch.Tensor:
    check_reduction(reduction)
    if reduction != "none" and cap_db is not None:
        values = values.clamp(max=cap_db)
    return reduce(values, reduction)


def psnr(
    preds: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    reduction: Reduction = "mean",
    cap_db: float | None = PSNR_CAP_DB,
) -> torch.Tensor:
    """PSNR of each (N, C, H, W) image against its target, reduced over the batch."""
    return _reduce_psnr(psnr_per_image(preds, target, data_range), reduction, cap_db)


class PSNR(PerImageMetric):
    """Accumulating twin of `psnr`."""

    def __init__(
        self,
        data_range: float = 1.0,
        reduction: Reduction = "mean",
        cap_db: float | None = PSNR_CAP_DB,
    ) -> None:
        super().__init__(reduction)
        self.data_range = data_range
        self.cap_db = cap_db

    def per_image(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return psnr_per_image(preds, target, self.data_range)

    def finish(self, values: torch.Tensor) -> torch.Tensor:
        return _reduce_psnr(values, self.reduction, self.cap_db)
