"""Pruning the update, alone or with noise: the paper's fixed-mask soft pruning, and a
fresh-random-mask variant under names of its own.

Reference: Balunović et al., "Bayesian Framework for Gradient Leakage", ICLR 2022, and
its code (``soft_gaussian_pruning``, ``soft_pruning``).

``prune``, ``prune+gaussian``, ``prune+laplacian`` — the paper's defense: one mask,
drawn once from the public ``mask_seed`` and known to the adversary, prunes each
coordinate with probability p (the paper's p); Gaussian or Laplacian noise is then
added to every coordinate, pruned ones included. Only the noise is secret. Mechanism:
`FixedMaskMechanism`, log f(g − m ⊙ c).

``random-prune``, ``random-prune+gaussian``, ``random-prune+laplacian`` — a fresh
Bernoulli mask per update (each coordinate pruned with probability p), noise on the
kept coordinates only. Pruned coordinates are sent as exact zeros, so the observed
update reveals the mask, and the mechanism (`MaskedMechanism`) compares observed and
candidate on the non-zero coordinates only. (``random-prune | gaussian`` noises every
coordinate instead; its mechanism is the mixture `PruneNoiseMixtureMechanism`.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from defenses.base import (
    Defense,
    Parameter,
    TrainingProtocol,
    draw_laplace,
    draw_normal,
    draw_uniform,
)
from defenses.mechanisms import Mechanism, NoiseKind
from defenses.mechanisms.masked import (
    FixedMaskMechanism,
    MaskedMechanism,
    PruneNoiseMixtureMechanism,
    fixed_mask,
)
from defenses.registry import register_defense

REFERENCE = "Balunović et al., Bayesian Framework for Gradient Leakage, ICLR 2022"
PRUNE = Parameter(
    "p", float, 0.5, "probability of pruning each coordinate", low=0.0, high=1.0, high_open=True
)
MASK_SEED = Parameter(
    "mask_seed",
    int,
    0,
    "seed of the one fixed mask; public: the adversary knows the mask, as in the paper",
    low=0,
)
SIGMA = Parameter(
    "sigma", float, 0.1, "noise standard deviation per coordinate", low=0.0, low_open=True
)
SCALE = Parameter("b", float, 0.1, "Laplace scale per coordinate", low=0.0, low_open=True)


def masked_by_seed(update: Sequence[torch.Tensor], prune: float, seed: int) -> list[torch.Tensor]:
    """`update` times its fixed public mask (`fixed_mask`)."""
    return [u * fixed_mask(u, prune, seed) for u in update]


def random_mask(
    update: Sequence[torch.Tensor], prune: float, generator: torch.Generator
) -> list[torch.Tensor]:
    """One fresh mask per tensor, 0 with probability `prune`, as the tensor's dtype."""
    return [(draw_uniform(u, generator) >= prune).to(u.dtype) for u in update]


@register_defense
class Prune(Defense):
    """g = m ⊙ update, m the fixed public mask (each coordinate pruned with probability p)."""

    name = "prune"
    examples = ("prune:p=0.3", "prune:p=0.6,mask_seed=4")
    reference = REFERENCE
    effect = "never sends a fixed, public fraction p of the coordinates; the rest go exactly"
    parameters = (PRUNE, MASK_SEED)
    stages = frozenset({"update"})
    perturbs_update = True
    p: float
    mask_seed: int

    @property
    def mechanism(self) -> Mechanism:
        return FixedMaskMechanism(self.p, self.mask_seed, None)

    @property
    def mechanism_note(self) -> str:
        return "the known mask applied to the candidate, compared by L2 (exact argmax)"

    def mechanism_with_noise(
        self,
        noise: Sequence[tuple[NoiseKind, float]],
        batch_size: int,
        protocol: TrainingProtocol | None = None,
    ) -> tuple[Mechanism, str] | None:
        """One noise after the fixed mask: the paper's soft pruning (`FixedMaskMechanism`),
        as ``prune+gaussian`` / ``prune+laplacian``."""
        if len(noise) != 1:
            return None
        mechanism = FixedMaskMechanism(self.p, self.mask_seed, *noise[0])
        return mechanism, "the known mask, then noise on every coordinate"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        return masked_by_seed(update, self.p, self.mask_seed)


@register_defense
class PruneGaussian(Defense):
    """g = m ⊙ update + N(0, σ² I): the paper's ``soft_gaussian_pruning``."""

    name = "prune+gaussian"
    randomised = True
    examples = ("prune+gaussian:p=0.3,sigma=0.41",)
    reference = REFERENCE
    effect = "a fixed, public pruning mask, and Gaussian noise on every coordinate"
    parameters = (PRUNE, SIGMA, MASK_SEED)
    stages = frozenset({"update"})
    perturbs_update = True
    p: float
    sigma: float
    mask_seed: int

    @property
    def mechanism(self) -> Mechanism:
        return FixedMaskMechanism(self.p, self.mask_seed, "gaussian", self.sigma)

    @property
    def mechanism_note(self) -> str:
        return "exact: Gaussian, −‖g − m ⊙ c‖²/(2σ²) with the known mask m"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        masked = masked_by_seed(update, self.p, self.mask_seed)
        return [u + self.sigma * draw_normal(u, generator) for u in masked]


@register_defense
class PruneLaplacian(Defense):
    """g = m ⊙ update + Laplace(0, b): the paper's ``soft_pruning``."""

    name = "prune+laplacian"
    randomised = True
    examples = ("prune+laplacian:p=0.7,b=0.19,mask_seed=3",)
    reference = REFERENCE
    effect = "a fixed, public pruning mask, and Laplacian noise on every coordinate"
    parameters = (PRUNE, SCALE, MASK_SEED)
    stages = frozenset({"update"})
    perturbs_update = True
    p: float
    b: float
    mask_seed: int

    @property
    def mechanism(self) -> Mechanism:
        return FixedMaskMechanism(self.p, self.mask_seed, "laplacian", self.b)

    @property
    def mechanism_note(self) -> str:
        return "exact: Laplacian, −‖g − m ⊙ c‖₁/b with the known mask m"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        masked = masked_by_seed(update, self.p, self.mask_seed)
        return [u + draw_laplace(u, self.b, generator) for u in masked]


@register_defense
class RandomPrune(Defense):
    """g = m ⊙ update with a fresh m per update, each coordinate pruned with probability p."""

    name = "random-prune"
    randomised = True
    examples = ("random-prune:p=0.3",)
    reference = REFERENCE + " (variant: a fresh random mask per update)"
    effect = "sends a fresh random fraction 1 − p of the coordinates, exactly"
    parameters = (PRUNE,)
    stages = frozenset({"update"})
    perturbs_update = True
    p: float

    @property
    def mechanism(self) -> Mechanism:
        return MaskedMechanism(None)

    @property
    def mechanism_note(self) -> str:
        return (
            "kept coordinates compared by L2 (exact argmax; the likelihood itself is a point mass)"
        )

    def mechanism_with_noise(
        self,
        noise: Sequence[tuple[NoiseKind, float]],
        batch_size: int,
        protocol: TrainingProtocol | None = None,
    ) -> tuple[Mechanism, str] | None:
        """One noise after the fresh mask, on every coordinate (pruned ones included): the
        mixture per coordinate (`PruneNoiseMixtureMechanism`)."""
        if len(noise) != 1:
            return None
        return PruneNoiseMixtureMechanism(1.0 - self.p, *noise[0]), "mixture per coordinate"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        return [u * m for u, m in zip(update, random_mask(update, self.p, generator), strict=True)]


@register_defense
class RandomPruneGaussian(Defense):
    """g = m ⊙ (update + N(0, σ² I)), fresh m: pruned coordinates exactly zero, kept ones noisy."""

    name = "random-prune+gaussian"
    randomised = True
    examples = ("random-prune+gaussian:p=0.3,sigma=0.41",)
    reference = REFERENCE + " (variant: a fresh random mask per update)"
    effect = "sends a fresh random fraction 1 − p of the coordinates, with Gaussian noise"
    parameters = (PRUNE, SIGMA)
    stages = frozenset({"update"})
    perturbs_update = True
    p: float
    sigma: float

    @property
    def mechanism(self) -> Mechanism:
        return MaskedMechanism("gaussian", self.sigma)

    @property
    def mechanism_note(self) -> str:
        return "exact: Gaussian on the observed kept (non-zero) coordinates"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        masks = random_mask(update, self.p, generator)
        return [
            m * (u + self.sigma * draw_normal(u, generator))
            for u, m in zip(update, masks, strict=True)
        ]


@register_defense
class RandomPruneLaplacian(Defense):
    """g = m ⊙ (update + Laplace(0, b)), fresh m: pruned coordinates exactly zero, kept ones noisy."""

    name = "random-prune+laplacian"
    randomised = True
    examples = ("random-prune+laplacian:p=0.7,b=0.19",)
    reference = REFERENCE + " (variant: a fresh random mask per update)"
    effect = "sends a fresh random fraction 1 − p of the coordinates, with Laplacian noise"
    parameters = (PRUNE, SCALE)
    stages = frozenset({"update"})
    perturbs_update = True
    p: float
    b: float

    @property
    def mechanism(self) -> Mechanism:
        return MaskedMechanism("laplacian", self.b)

    @property
    def mechanism_note(self) -> str:
        return "exact: Laplacian on the observed kept (non-zero) coordinates"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        masks = random_mask(update, self.p, generator)
        return [
            m * (u + draw_laplace(u, self.b, generator)) for u, m in zip(update, masks, strict=True)
        ]
