"""Pair a batch's reconstructions with its originals before scoring them.

Attacks on a batch recover its images in an arbitrary order. The Hungarian algorithm
(scipy's `linear_sum_assignment`) picks the one-to-one pairing that maximises the total
PSNR; exact copies (PSNR +inf) count as `cap_db` in that sum so the assignment stays finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

from fedsim.metrics._common import check_images
from fedsim.metrics.psnr import PSNR_CAP_DB


@dataclass(frozen=True)
class Matching:
    """`order[i]` is the reconstruction paired with original i; `psnr[i]` its PSNR in dB
    (+inf for an exact copy)."""

    order: torch.Tensor
    psnr: torch.Tensor

    def apply(self, reconstructions: torch.Tensor) -> torch.Tensor:
        """Reorder reconstructions (or their labels) to line up with the originals."""
        return reconstructions[self.order.to(reconstructions.device)]


def pairwise_psnr(
    preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0
) -> torch.Tensor:
    """(N, M) float64 PSNR of every reconstruction i against every original j."""
    if preds.ndim != 4 or target.ndim != 4 or preds.shape[1:] != target.shape[1:]:
        raise ValueError(
            f"expected (N, C, H, W) batches of one image shape, got "
            f"{tuple(preds.shape)} and {tuple(target.shape)}"
        )
    flat_target = target.double().flatten(1)
    rows = [(image.double().flatten() - flat_target).square().mean(dim=1) for image in preds]
    return 10.0 * torch.log10(data_range**2 / torch.stack(rows))


def match_by_psnr(
    preds: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    cap_db: float = PSNR_CAP_DB,
) -> Matching:
    """The pairing of reconstructions `preds` to originals `target` (both (N, C, H, W))
    with the largest total PSNR, and each original's matched PSNR."""
    check_images(preds, target)
    scores = pairwise_psnr(preds, target, data_range)
    gains = scores.clamp(max=cap_db).cpu().numpy()
    pred_index, target_index = linear_sum_assignment(gains, maximize=True)
    order = torch.empty(len(target_index), dtype=torch.long)
    order[torch.as_tensor(target_index)] = torch.as_tensor(pred_index, dtype=torch.long)
    matched = scores[order.to(scores.device), torch.arange(len(order), device=scores.device)]
    return Matching(order=order, psnr=matched)
