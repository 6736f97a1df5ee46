"""Score a reconstruction against the batch it came from (simulation only).

Reconstructions come back in arbitrary order, so images are first paired with the
originals by the Hungarian matching of largest total PSNR; SSIM is then taken on the
matched pairs, and labels are compared as multisets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedsim.metrics.label_accuracy import label_accuracy
from fedsim.metrics.matching import match_by_psnr
from fedsim.metrics.psnr import PSNR_CAP_DB
from fedsim.metrics.ssim import ssim


@dataclass(frozen=True)
class Scores:
    """Batch means: PSNR (dB, each image capped at 100), SSIM, label accuracy; the pairing."""

    psnr: float
    ssim: float
    label_accuracy: float
    order: torch.Tensor


def score_reconstruction(
    inputs: torch.Tensor, labels: torch.Tensor, originals: torch.Tensor, true_labels: torch.Tensor
) -> Scores:
    """Match `inputs` (B, C, H, W) to `originals` and score them; all in [0, 1] pixel space."""
    inputs = inputs.detach().float().cpu().clamp(0, 1)
    originals = originals.detach().float().cpu()
    matching = match_by_psnr(inputs, originals)
    matched = matching.apply(inputs)
    return Scores(
        psnr=float(matching.psnr.clamp(max=PSNR_CAP_DB).mean()),
        ssim=float(ssim(matched, originals)),
        label_accuracy=float(
            label_accuracy(labels.detach().cpu().long(), true_labels.cpu().long())
        ),
        order=matching.order,
    )
