"""When a reconstruction counts as *recognisable*: SSIM ≥ 0.5 against the private image
it was matched to (Hungarian matching by PSNR, `fedsim.metrics.matching`).

The one threshold every record, report and table uses. Provisional; justified below
once the grids are read.
"""

from __future__ import annotations

import torch

RECOGNISABLE_SSIM = 0.5
"""SSIM at and above which a reconstruction shows what the private image shows."""


def recognisable(ssim_values: torch.Tensor) -> torch.Tensor:
    """Boolean per image: SSIM ≥ `RECOGNISABLE_SSIM`."""
    return ssim_values >= RECOGNISABLE_SSIM


def is_recognisable(ssim_value: float) -> bool:
    """One image: SSIM ≥ `RECOGNISABLE_SSIM`."""
    return ssim_value >= RECOGNISABLE_SSIM
