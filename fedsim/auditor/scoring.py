"""Score a reconstruction against the batch it came from (simulation only).

Reconstructions come back in arbitrary order, so they are first paired with the
originals by a Hungarian matching: images by the largest total PSNR (SSIM is then taken
on the matched pairs, and each image is *recognisable* or not,
`fedsim.metrics.recognisable`), feature rows by the smallest total error
(`fedsim.metrics.rows`: mean squared error of the continuous columns, share of
categorical columns right). Labels are compared as multisets. `recognisable` here is the
SSIM threshold alone; whether an image counts as recovered also depends on the guess
that ignores the update (`fedsim.judgement`), which the auditor records beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.domain import FeatureDomain, InputDomain
from fedsim.metrics.label_accuracy import label_accuracy
from fedsim.metrics.matching import match_by_psnr
from fedsim.metrics.psnr import PSNR_CAP_DB
from fedsim.metrics.recognisable import recognisable
from fedsim.metrics.rows import match_rows
from fedsim.metrics.ssim import ssim_per_image


@dataclass(frozen=True)
class Scores:
    """Batch means and the pairing. Images: PSNR (dB, each capped at 100), SSIM and the
    fraction recovered recognisably, with the PSNR and SSIM of each original image in the
    batch's order; feature rows: MSE of the continuous columns and the share of
    categorical columns right (None without one-hot groups). The other domain's fields
    are None."""

    label_accuracy: float
    order: torch.Tensor
    psnr: float | None = None
    ssim: float | None = None
    recognisable: float | None = None
    psnr_images: list[float] | None = None
    ssim_images: list[float] | None = None
    mse: float | None = None
    categorical_accuracy: float | None = None
    mse_rows: list[float] | None = None
    categorical_rows: list[float] | None = None


def _labels(labels: torch.Tensor, true_labels: torch.Tensor) -> float:
    return float(label_accuracy(labels.detach().cpu().long(), true_labels.cpu().long()))


def score_reconstruction(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    originals: torch.Tensor,
    true_labels: torch.Tensor,
    domain: InputDomain | None = None,
) -> Scores:
    """Match `inputs` to `originals` (images (B, C, H, W) in [0, 1], or rows (B, F)) and score them."""
    if isinstance(domain, FeatureDomain):
        rows = match_rows(
            inputs.detach().float().cpu(), originals.detach().float().cpu(), domain.categorical
        )
        return Scores(
            label_accuracy=_labels(labels, true_labels),
            order=rows.order,
            mse=float(rows.mse.mean()),
            categorical_accuracy=None
            if rows.categorical is None
            else float(rows.categorical.mean()),
            mse_rows=[float(v) for v in rows.mse],
            categorical_rows=None
            if rows.categorical is None
            else [float(v) for v in rows.categorical],
        )
    inputs = inputs.detach().float().cpu().clamp(0, 1)
    originals = originals.detach().float().cpu()
    matching = match_by_psnr(inputs, originals)
    matched = matching.apply(inputs)
    psnr_images = [float(v) for v in matching.psnr.clamp(max=PSNR_CAP_DB)]
    ssim_images = [float(v) for v in ssim_per_image(matched, originals)]
    return Scores(
        label_accuracy=_labels(labels, true_labels),
        order=matching.order,
        psnr=sum(psnr_images) / len(psnr_images),
        ssim=sum(ssim_images) / len(ssim_images),
        recognisable=float(recognisable(torch.tensor(ssim_images)).float().mean()),
        psnr_images=psnr_images,
        ssim_images=ssim_images,
    )
