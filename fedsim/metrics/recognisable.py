"""When a reconstruction counts as *recognisable*: SSIM ≥ 0.4 against the private image
it was matched to (Hungarian matching by PSNR, `fedsim.metrics.matching`).

The one threshold every record, report and table uses. It comes from reading grids of
reconstructions of every quality sorted by SSIM (`scripts/recognisability_grid.py`,
EXPERIMENTS.md): below about 0.35 neither MNIST nor CIFAR-10 reconstructions show what
the private image shows (noise, loose strokes, colour patches); from 0.4 most MNIST
digits can be read, and from 0.5 almost every image of either data set is plainly the
private one. Between 0.4 and 0.5 some CIFAR-10 images show only their layout and
colours: the threshold sits at the lower edge on purpose, so that a borderline image
counts as leaked rather than as safe.
"""

from __future__ import annotations

import torch

RECOGNISABLE_SSIM = 0.4
"""SSIM at and above which a reconstruction is counted as showing the private image."""


def recognisable(ssim_values: torch.Tensor) -> torch.Tensor:
    """Boolean per image: SSIM ≥ `RECOGNISABLE_SSIM`."""
    return ssim_values >= RECOGNISABLE_SSIM


def is_recognisable(ssim_value: float) -> bool:
    """One image: SSIM ≥ `RECOGNISABLE_SSIM`."""
    return ssim_value >= RECOGNISABLE_SSIM
