"""Image priors −log p(x) (regularisers); name → class table.

Each maps candidates x of shape (N, B, C, H, W) in pixel space to (N,) values to
minimise. The batch-norm prior also reads the candidates' batch statistics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from attacks.errors import AttackError
from attacks.updates import CandidateUpdates


class Prior(ABC):
    """A regulariser on candidate images; lower is more plausible."""

    name: str = "prior"

    @abstractmethod
    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor: ...


class TotalVariation(Prior):
    """Anisotropic total variation, mean |∂x| + mean |∂y| (Inverting Gradients, Geiping et al. 2020)."""

    name = "tv"

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
        return dx + dy


class SquaredTotalVariation(Prior):
    """Σ (∂x)² + (∂y)² per image, mean over the batch (the Bayesian framework paper's TV)."""

    name = "tv_squared"

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        dx = (x[..., :, 1:] - x[..., :, :-1]).square().flatten(2).sum(2)
        dy = (x[..., 1:, :] - x[..., :-1, :]).square().flatten(2).sum(2)
        return (dx + dy).mean(1)


class BoxPenalty(Prior):
    """Σ distance² to the box [0, 1] per image, mean over the batch (the paper's clip prior)."""

    name = "box"

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        return (x - x.clamp(0.0, 1.0)).square().flatten(2).sum(2).mean(1)


class ImageNorm(Prior):
    """Mean squared pixel value (GradInversion's ℓ2 image prior)."""

    name = "l2"

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        return x.square().flatten(1).mean(1)


class BatchNormStatistics(Prior):
    """Σ over batch-norm layers ‖μ_batch − μ_running‖ + ‖σ²_batch − σ²_running‖
    (GradInversion, Yin et al., CVPR 2021); zero for a model without batch norm."""

    name = "bn"

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        total = x.new_zeros(x.shape[0])
        for (mean, var), (r_mean, r_var) in zip(
            candidate.bn_stats, candidate.bn_running, strict=False
        ):
            total = total + (mean - r_mean).norm(dim=1) + (var - r_var).norm(dim=1)
        return total


PRIORS: dict[str, type[Prior]] = {
    cls.name: cls
    for cls in (TotalVariation, SquaredTotalVariation, BoxPenalty, ImageNorm, BatchNormStatistics)
}


def build_prior(name: str) -> Prior:
    """The prior called `name`; an AttackError lists the known names otherwise."""
    try:
        return PRIORS[name]()
    except KeyError:
        raise AttackError(
            f"prior: unknown name {name!r}; choose one of {', '.join(sorted(PRIORS))}"
        ) from None
