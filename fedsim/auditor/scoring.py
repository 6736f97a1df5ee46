"""Score a reconstruction against the batch it came from (simulation only).

Reconstructions come back in arbitrary order, so images are first paired with the
originals by the Hungarian matching of largest total PSNR; SSIM is then taken on the
matched pairs, each image is *recognisable* or not (`fedsim.metrics.recognisable`),
and labels are compared as multisets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedsim.metrics.label_accuracy import label_accuracy
from fedsim.metrics.matching import match_by_psnr
from fedsim.metrics.psnr import PSNR_CAP_DB
from fedsim.metrics.recognisable import recognisable
from fedsim.metrics.ssim import ssim_per_image


@dataclass(frozen=True)
class Scores:
    """Per original image (in the batch's order): PSNR (dB, capped at 100) and SSIM of the
    reconstruction matched to it; the label accuracy and the pairing."""

    psnr_images: list[float]
    ssim_images: list[float]
    label_accuracy: float
    order: torch.Tensor

    @property
    def psnr(self) -> float:
        return sum(self.psnr_images) / len(self.psnr_images)

    @property
    def ssim(self) -> float:
        return sum(self.ssim_images) / len(self.ssim_images)

    @property
    def recognisable(self) -> float:
        """The fraction of the batch's images recovered recognisably."""
        flags = recognisable(torch.tensor(self.ssim_images))
        return float(flags.float().mean())


def score_reconstruction(
    inputs: torch.Tensor, labels: torch.Tensor, originals: torch.Tensor, true_labels: torch.Tensor
) -> Scores:
    """Match `inputs` (B, C, H, W) to `originals` and score them; all in [0, 1] pixel space."""
    inputs = inputs.detach().float().cpu().clamp(0, 1)
    originals = originals.detach().float().cpu()
    matching = match_by_psnr(inputs, originals)
    matched = matching.apply(inputs)
    return Scores(
        psnr_images=[float(v) for v in matching.psnr.clamp(max=PSNR_CAP_DB)],
        ssim_images=[float(v) for v in ssim_per_image(matched, originals)],
        label_accuracy=float(
            label_accuracy(labels.detach().cpu().long(), true_labels.cpu().long())
        ),
        order=matching.order,
    )
