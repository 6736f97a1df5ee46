"""DP-SGD's likelihood: clipped gradient plus Gaussian noise (Abadi et al., CCS 2016)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from defenses.mechanisms.base import Mechanism, NoiseKind, Update, flat_difference


@dataclass(frozen=True)
class ClippedGaussianMechanism(Mechanism):
    """g = clip_C(c) + N(0, std² I) with std = σ·C / B, on the batch-mean gradient.

    DP-SGD clips every per-sample gradient to norm C, sums, adds N(0, σ²C²) and
    divides by the batch size B. The adversary's candidates are batch gradients, so
    this likelihood clips the candidate as a whole: exact for B = 1 (one-sample
    FedSGD), an approximation for B > 1, where the mean of clipped per-sample
    gradients differs from the clipped mean.
    """

    clip: float
    std: float
    name: str = "clipped-gaussian"
    noise: ClassVar[NoiseKind] = "gaussian"
    noise_only: ClassVar[bool] = False

    @property
    def noise_scale(self) -> float:
        return self.std

    def clip_candidates(self, candidate: Update) -> list[torch.Tensor]:
        """Each candidate rescaled to norm at most C over all parameters together."""
        n = candidate[0].shape[0]
        norms = torch.cat([c.reshape(n, -1) for c in candidate], dim=1).norm(dim=1)
        factor = (self.clip / (norms + 1e-12)).clamp(max=1.0)
        return [c * factor.view(n, *([1] * (c.dim() - 1))) for c in candidate]

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        diff = flat_difference(observed, self.clip_candidates(candidate))
        return -diff.pow(2).sum(dim=1) / (2 * self.std**2)
