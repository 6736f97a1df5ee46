"""Priors −log p(x) (regularisers) and their registry.

Each maps candidates x of shape (N, B, *input_shape), as the model sees them, to (N,)
values to minimise. A prior is built for one input shape and domain and refuses, at
construction, those it cannot handle (total variation needs images at least 2 pixels
high and wide). The batch-norm prior also reads the candidates' batch statistics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TypeVar

import torch

from attacks.domain import FeatureDomain, ImageDomain, InputDomain
from attacks.errors import AttackError
from attacks.lookup import Registry
from attacks.updates import CandidateUpdates


class Prior(ABC):
    """A regulariser on candidate inputs; lower is more plausible."""

    name: str = "prior"

    def __init__(
        self, input_shape: Sequence[int] | None = None, domain: InputDomain | None = None
    ) -> None:
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.domain = domain or ImageDomain()
        if self.input_shape is not None:
            self.check(self.input_shape, self.domain)

    def check(self, input_shape: tuple[int, ...], domain: InputDomain) -> None:  # noqa: B027
        """Raise AttackError, naming the prior and the shape, where this prior cannot apply
        (every shape by default)."""

    def _refuse(self, input_shape: tuple[int, ...], needs: str) -> None:
        raise AttackError(f"prior {self.name!r}: needs {needs}, got input shape {input_shape}")

    @abstractmethod
    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor: ...


_REGISTRY: Registry = Registry(
    "prior", lambda cls: issubclass(cls, Prior), "a subclass of attacks.priors.Prior"
)
PRIORS = _REGISTRY.entries
"""Every registered prior by name, in the order registered (a read-only view)."""

P = TypeVar("P", bound=type[Prior])


def register_prior(cls: P) -> P:
    """Register the Prior subclass `cls` under its `name` (a class decorator); from then
    on an attack's `priors` may name it."""
    return _REGISTRY.register(cls)


def _check_image_grid(prior: Prior, input_shape: tuple[int, ...], domain: InputDomain) -> None:
    """Differences between neighbouring pixels need images at least 2 × 2."""
    if not isinstance(domain, ImageDomain) or len(input_shape) != 3 or min(input_shape[1:]) < 2:
        prior._refuse(input_shape, "images (channels, height, width) with height and width ≥ 2")


@register_prior
class TotalVariation(Prior):
    """Anisotropic total variation, mean |∂x| + mean |∂y| (Inverting Gradients, Geiping et al. 2020)."""

    name = "tv"

    def check(self, input_shape: tuple[int, ...], domain: InputDomain) -> None:
        _check_image_grid(self, input_shape, domain)

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
        return dx + dy


@register_prior
class SquaredTotalVariation(Prior):
    """Σ (∂x)² + (∂y)² per image, mean over the batch (the Bayesian framework paper's TV)."""

    name = "tv_squared"

    def check(self, input_shape: tuple[int, ...], domain: InputDomain) -> None:
        _check_image_grid(self, input_shape, domain)

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        dx = (x[..., :, 1:] - x[..., :, :-1]).square().flatten(2).sum(2)
        dy = (x[..., 1:, :] - x[..., :-1, :]).square().flatten(2).sum(2)
        return (dx + dy).mean(1)


@register_prior
class BoxPenalty(Prior):
    """Σ distance² to the box [0, 1] per image, mean over the batch (the paper's clip prior)."""

    name = "box"

    def check(self, input_shape: tuple[int, ...], domain: InputDomain) -> None:
        if not isinstance(domain, ImageDomain) or (domain.low, domain.high) != (0.0, 1.0):
            self._refuse(input_shape, "images in the box [0, 1]")

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        return (x - x.clamp(0.0, 1.0)).square().flatten(2).sum(2).mean(1)


@register_prior
class ImageNorm(Prior):
    """Mean squared pixel value (GradInversion's ℓ2 image prior)."""

    name = "l2"

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        return x.square().flatten(1).mean(1)


@register_prior
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


@register_prior
class FeatureStatistics(Prior):
    """½ Σ ((x − μ)/σ)² over the continuous columns, mean over the batch: a Gaussian prior
    from the feature statistics the threat model grants (`FeatureDomain.mean`, `.std`)."""

    name = "features"

    def __init__(
        self, input_shape: Sequence[int] | None = None, domain: InputDomain | None = None
    ) -> None:
        if input_shape is None:
            raise AttackError(f"prior {self.name!r}: needs the input shape it is built for")
        super().__init__(input_shape, domain)

    def check(self, input_shape: tuple[int, ...], domain: InputDomain) -> None:
        if not isinstance(domain, FeatureDomain) or not domain.has_statistics:
            self._refuse(input_shape, "feature vectors whose mean and std the adversary is granted")
        domain.check(input_shape)
        columns = domain.continuous(input_shape[0])
        self._columns = torch.tensor(columns, dtype=torch.long)
        self._mean = torch.tensor(domain.mean)[columns]
        self._std = torch.tensor(domain.std)[columns]

    def __call__(self, x: torch.Tensor, candidate: CandidateUpdates) -> torch.Tensor:
        columns = self._columns.to(x.device)
        mean, std = self._mean.to(x), self._std.to(x)
        z = (x.index_select(-1, columns) - mean) / std
        return 0.5 * z.square().sum(-1).mean(1)


def check_prior_name(name: str) -> None:
    """Refuse an unknown prior name, listing the known ones."""
    _REGISTRY.check(name)


def build_prior(
    name: str, input_shape: Sequence[int] | None = None, domain: InputDomain | None = None
) -> Prior:
    """The prior called `name` for inputs of `input_shape` in `domain` (images by default).

    An AttackError lists the known names for an unknown one, and names the prior and
    the shape when it cannot handle that shape."""
    check_prior_name(name)
    return _REGISTRY.get(name)(input_shape, domain)
