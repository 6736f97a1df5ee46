"""Additive noise on the outgoing update: Gaussian (σ) and Laplacian (b).

Reference: Balunović et al., "Bayesian Framework for Gradient Leakage", ICLR 2022
(Section 5: noise defenses and the Bayes-optimal L2 / L1 attacks they induce); also
Zhu et al., "Deep Leakage from Gradients", NeurIPS 2019 (noise as a defense).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from defenses.base import (
    Defense,
    Parameter,
    TrainingProtocol,
    added_gaussian_variance,
    draw_laplace,
    draw_normal,
)
from defenses.mechanisms import GaussianMechanism, LaplacianMechanism, Mechanism, NoiseKind
from defenses.registry import register_defense

REFERENCE = "Balunović et al., Bayesian Framework for Gradient Leakage, ICLR 2022"


@register_defense
class GaussianNoise(Defense):
    """g = update + N(0, σ² I), independent per coordinate, added once to the update as sent."""

    name = "gaussian"
    randomised = True
    examples = ("gaussian:sigma=0.37",)
    reference = REFERENCE
    effect = "adds isotropic Gaussian noise once to the whole update"
    parameters = (
        Parameter(
            "sigma", float, 0.1, "noise standard deviation per coordinate", low=0.0, low_open=True
        ),
    )
    stages = frozenset({"update"})
    perturbs_update = True
    sigma: float

    @property
    def mechanism(self) -> Mechanism:
        return GaussianMechanism(self.sigma)

    @property
    def mechanism_note(self) -> str:
        return "exact: Gaussian, −‖g − c‖²/(2σ²)"

    @property
    def added_noise(self) -> tuple[NoiseKind, float]:
        return "gaussian", self.sigma

    def mechanism_with_noise(
        self,
        noise: Sequence[tuple[NoiseKind, float]],
        batch_size: int,
        protocol: TrainingProtocol | None = None,
    ) -> tuple[Mechanism, str] | None:
        """Gaussian noise after Gaussian noise: Gaussian, the variances added."""
        extra = added_gaussian_variance(noise)
        if extra is None:
            return None
        return GaussianMechanism(math.sqrt(self.sigma**2 + extra)), "Gaussian, variances added"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        return [u + self.sigma * draw_normal(u, generator) for u in update]


@register_defense
class LaplacianNoise(Defense):
    """g = update + Laplace(0, b), independent per coordinate."""

    name = "laplacian"
    randomised = True
    examples = ("laplacian:b=0.23",)
    reference = REFERENCE
    effect = "adds Laplacian noise once to the whole update"
    parameters = (
        Parameter(
            "b", float, 0.1, "Laplace scale per coordinate (variance 2b²)", low=0.0, low_open=True
        ),
    )
    stages = frozenset({"update"})
    perturbs_update = True
    b: float

    @property
    def mechanism(self) -> Mechanism:
        return LaplacianMechanism(self.b)

    @property
    def mechanism_note(self) -> str:
        return "exact: Laplacian, −‖g − c‖₁/b"

    @property
    def added_noise(self) -> tuple[NoiseKind, float]:
        return "laplacian", self.b

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        return [u + draw_laplace(u, self.b, generator) for u in update]
