"""The paper's noise defenses: noise on every sample's gradient, then the batch mean.

Reference: Balunović et al., "Bayesian Framework for Gradient Leakage", ICLR 2022. Its
code (``dp_gaussian``, ``dp_laplacian``) adds noise of scale σ (b) to the gradient of
each sample of a batch of B and averages them, so the mean gradient carries the mean
of B draws: N(0, σ²/B) per coordinate for Gaussian noise. `gaussian` and `laplacian`
(`defenses.noise`) add σ (b) once to the update as sent; the two coincide at B = 1,
and a comparison with the paper at B > 1 must use these.

Gradient stage: the noise goes on each local step's mean gradient. The mean of B
independent N(0, σ²) draws is N(0, σ²/B) exactly, so one draw of σ/√B is the same
distribution; Laplacian noise is drawn B times and averaged. The likelihood is in the
units of the update sent: the gradient under FedSGD; the delta −lr·(g + n) under FedAvg
with one local step. Under FedAvg with several local steps each step's noise moves the
parameters the next gradient is taken at, so no likelihood is stated (refused, as for
DP-SGD). The mean of B > 1 Laplace draws is not Laplacian either: the paper's code runs
its Laplacian defense on one sample only, and so does its likelihood here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from defenses.base import (
    Defense,
    Parameter,
    TrainingProtocol,
    added_gaussian_variance,
    draw_laplace,
    draw_normal,
    gradient_step_units,
)
from defenses.errors import MechanismRefused
from defenses.mechanisms import GaussianMechanism, LaplacianMechanism, Mechanism, NoiseKind
from defenses.noise import REFERENCE
from defenses.registry import register_defense


class _NoisePerSample(Defense):
    """Gradient stage, perturbing; the mechanism without a batch is that of one sample."""

    stages = frozenset({"gradient"})
    perturbs_update = True

    @property
    def mechanism(self) -> Mechanism:
        return self.mechanism_for(1)


@register_defense
class PerSampleGaussianNoise(_NoisePerSample):
    """Gradient stage: N(0, σ² I) on each sample's gradient, averaged: σ/√B on the mean."""

    name = "gaussian-per-sample"
    randomised = True
    examples = ("gaussian-per-sample:sigma=0.37",)
    reference = REFERENCE + " (its code's dp_gaussian: noise per sample, then the mean)"
    effect = "adds Gaussian noise to each sample's gradient, then averages (the paper's convention)"
    parameters = (
        Parameter(
            "sigma",
            float,
            0.1,
            "noise standard deviation per coordinate of each sample's gradient",
            low=0.0,
            low_open=True,
        ),
    )
    sigma: float

    def mechanism_for(self, batch_size: int, protocol: TrainingProtocol | None = None) -> Mechanism:
        factor, samples = gradient_step_units(self.name, batch_size, protocol)
        return GaussianMechanism(factor * self.sigma / math.sqrt(samples))

    @property
    def mechanism_note(self) -> str:
        return "exact: Gaussian with σ/√B on the mean gradient (lr·σ/√B on a one-step delta)"

    def mechanism_with_noise(
        self,
        noise: Sequence[tuple[NoiseKind, float]],
        batch_size: int,
        protocol: TrainingProtocol | None = None,
    ) -> tuple[Mechanism, str] | None:
        """Gaussian noise on the update after it: Gaussian, the variances added (in the
        units of what the client sends, as the noise after it)."""
        extra = added_gaussian_variance(noise)
        if extra is None:
            return None
        sigma = self.mechanism_for(batch_size, protocol).sigma
        return GaussianMechanism(math.sqrt(sigma**2 + extra)), "Gaussian, variances added"

    def transform_gradients(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        grads: list[torch.Tensor],
        generator: torch.Generator,
    ) -> list[torch.Tensor]:
        std = self.sigma / math.sqrt(x.shape[0])
        return [g + std * draw_normal(g, generator) for g in grads]


@register_defense
class PerSampleLaplacianNoise(_NoisePerSample):
    """Gradient stage: Laplace(0, b) on each sample's gradient, averaged over the batch."""

    name = "laplacian-per-sample"
    randomised = True
    examples = ("laplacian-per-sample:b=0.23",)
    reference = REFERENCE + " (its code's dp_laplacian: noise per sample, then the mean)"
    effect = (
        "adds Laplacian noise to each sample's gradient, then averages (the paper's convention)"
    )
    parameters = (
        Parameter(
            "b",
            float,
            0.1,
            "Laplace scale per coordinate of each sample's gradient",
            low=0.0,
            low_open=True,
        ),
    )
    b: float

    def mechanism_for(self, batch_size: int, protocol: TrainingProtocol | None = None) -> Mechanism:
        factor, samples = gradient_step_units(self.name, batch_size, protocol)
        if samples > 1:
            raise MechanismRefused(
                f"{self.name} on {samples} samples a step: the mean of {samples} Laplace "
                "draws is not Laplacian and no likelihood is stated for it (the paper's "
                "code runs this defense on one sample only); an attack that models it "
                "is refused"
            )
        return LaplacianMechanism(factor * self.b)

    @property
    def mechanism_note(self) -> str:
        return "exact for one sample a step: Laplacian, −‖g − c‖₁/b; refused for more"

    def transform_gradients(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        grads: list[torch.Tensor],
        generator: torch.Generator,
    ) -> list[torch.Tensor]:
        b = x.shape[0]
        out = []
        for g in grads:
            noise = sum(draw_laplace(g, self.b, generator) for _ in range(b))
            out.append(g + noise / b)
        return out
