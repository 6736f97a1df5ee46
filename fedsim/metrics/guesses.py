"""Guesses that ignore the update: what a server knows of the data before it looks.

A reconstruction shows something the update gave away only where it beats these
(`fedsim.judgement.criteria`). The guesses use data the server may hold — the
held-out split it evaluates on, or statistics of it — never the attacked batch:

- images: every pixel at the data's mean per channel (a flat tile of the average
  colour), or, where the threat model grants the labels, the mean image of each
  private image's class;
- feature rows: every continuous column at its mean, every categorical column at its
  most common category (each row judged against the same guess row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fedsim.metrics.psnr import PSNR_CAP_DB, psnr_per_image
from fedsim.metrics.rows import row_scores
from fedsim.metrics.ssim import ssim_per_image


@dataclass(frozen=True)
class Guess:
    """One guess per class (`per_class`), or one for every input; and what it is."""

    kind: str
    inputs: torch.Tensor
    per_class: bool = False
    categorical: tuple[tuple[int, int], ...] = ()
    """One-hot column ranges, for feature rows."""

    @property
    def rows(self) -> bool:
        return self.inputs.ndim == 2

    def for_batch(self, labels: torch.Tensor) -> torch.Tensor:
        """The guess for each input of a batch with these labels."""
        if self.per_class:
            return self.inputs[labels.long().cpu()]
        return self.inputs[:1].expand(len(labels), *self.inputs.shape[1:])

    def scores(self, originals: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float]]:
        """Per original: the guess's PSNR and SSIM (images), or MSE of the continuous
        columns and the share of categorical columns right (rows), as record fields."""
        guess = self.for_batch(labels).to(originals.dtype)
        originals = originals.detach().cpu()
        if self.rows:
            mse, categorical = row_scores(guess, originals, self.categorical)
            fields = {"mse_guess_rows": [float(v) for v in mse]}
            if categorical is not None:
                fields["categorical_guess_rows"] = [float(v) for v in categorical]
            return fields
        return {
            "psnr_guess_images": [
                float(v) for v in psnr_per_image(guess, originals).clamp(max=PSNR_CAP_DB)
            ],
            "ssim_guess_images": [float(v) for v in ssim_per_image(guess, originals)],
        }


def image_guess(images: torch.Tensor, labels: torch.Tensor | None = None) -> Guess:
    """From images (N, C, H, W) in [0, 1]: the per-channel mean, or with `labels` the mean
    image of each class (a class with no image gets the per-channel mean)."""
    images = images.detach().float().cpu()
    flat = images.mean(dim=(0, 2, 3), keepdim=True).expand(1, *images.shape[1:]).clone()
    if labels is None:
        return Guess("flat image at the data's mean per channel", flat)
    labels = labels.long().cpu()
    classes = int(labels.max()) + 1 if len(labels) else 0
    means = flat.expand(classes, *images.shape[1:]).clone()
    for c in range(classes):
        chosen = images[labels == c]
        if len(chosen):
            means[c] = chosen.mean(0)
    return Guess("mean image of the private image's class", means, per_class=True)


def row_guess(rows: torch.Tensor, categorical: Sequence[tuple[int, int]] = ()) -> Guess:
    """From feature rows (N, F): each continuous column's mean, each categorical column's
    most common category."""
    rows = rows.detach().double().cpu()
    guess = rows.mean(0, keepdim=True)
    for start, stop in categorical:
        common = int(rows[:, start:stop].sum(0).argmax())
        guess[0, start:stop] = 0.0
        guess[0, start + common] = 1.0
    kind = "column means and most common categories"
    return Guess(kind, guess.float(), categorical=tuple((int(a), int(b)) for a, b in categorical))
