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

import numpy as np
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
    # numpy's float64 sums are the same on any number of threads: records repeat.
    pixels = images.detach().cpu().double().numpy()
    channel = pixels.mean(axis=(0, 2, 3), keepdims=True)
    flat = torch.from_numpy(np.broadcast_to(channel, (1, *pixels.shape[1:])).copy()).float()
    if labels is None:
        return Guess("flat image at the data's mean per channel", flat)
    codes = labels.long().cpu().numpy()
    classes = int(codes.max()) + 1 if len(codes) else 0
    means = flat.expand(classes, *pixels.shape[1:]).clone()
    for c in range(classes):
        if (codes == c).any():
            means[c] = torch.from_numpy(pixels[codes == c].mean(axis=0)).float()
    return Guess("mean image of the private image's class", means, per_class=True)


def row_guess(rows: torch.Tensor, categorical: Sequence[tuple[int, int]] = ()) -> Guess:
    """From feature rows (N, F): each continuous column's mean, each categorical column's
    most common category."""
    rows = rows.detach().double().cpu()
    guess = torch.from_numpy(rows.numpy().mean(axis=0, keepdims=True))
    for start, stop in categorical:
        common = int(rows[:, start:stop].sum(0).argmax())
        guess[0, start:stop] = 0.0
        guess[0, start + common] = 1.0
    kind = "column means and most common categories"
    return Guess(kind, guess.float(), categorical=tuple((int(a), int(b)) for a, b in categorical))
