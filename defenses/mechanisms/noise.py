"""Additive Gaussian and Laplacian noise on the update and their likelihoods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from defenses.mechanisms.base import Mechanism, NoiseKind, Update, flat_difference


@dataclass(frozen=True)
class GaussianMechanism(Mechanism):
    """g = ∇θ ℓ(x) + N(0, σ² I): log p = −‖g − ∇θ ℓ(x)‖² / (2σ²)."""

    sigma: float
    name: str = "gaussian"
    noise: ClassVar[NoiseKind] = "gaussian"
    noise_only: ClassVar[bool] = True

    @property
    def noise_scale(self) -> float:
        return self.sigma

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        diff = flat_difference(observed, candidate)
        return -diff.pow(2).sum(dim=1) / (2 * self.sigma**2)


@dataclass(frozen=True)
class LaplacianMechanism(Mechanism):
    """g = ∇θ ℓ(x) + Laplace(0, b): log p = −‖g − ∇θ ℓ(x)‖₁ / b."""

    scale: float
    name: str = "laplacian"
    noise: ClassVar[NoiseKind] = "laplacian"
    noise_only: ClassVar[bool] = True

    @property
    def noise_scale(self) -> float:
        return self.scale

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        diff = flat_difference(observed, candidate)
        return -diff.abs().sum(dim=1) / self.scale
