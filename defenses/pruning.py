"""Random pruning of the update, alone or with noise on the kept coordinates (soft pruning).

Reference: Balunović et al., "Bayesian Framework for Gradient Leakage", ICLR 2022
(random pruning with Gaussian or Laplacian noise, and the Bayes attack that compares
only kept coordinates).

Each update draws a fresh Bernoulli mask: a coordinate is kept with probability p.
Noise (when present) is added to the kept coordinates only; pruned coordinates are
sent as exact zeros. The observed update therefore reveals the mask, and the
mechanism (`MaskedMechanism`) compares observed and candidate on the non-zero
coordinates only — exactly what this transform does. (Pruning followed by noise on
every coordinate is the composition ``prune | gaussian``, whose mechanism is the
mixture `PruneNoiseMixtureMechanism`.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from defenses.base import Defense, Parameter, draw_laplace, draw_normal, draw_uniform
from defenses.mechanisms import Mechanism
from defenses.mechanisms.masked import MaskedMechanism

REFERENCE = "Balunović et al., Bayesian Framework for Gradient Leakage, ICLR 2022"
KEEP = Parameter(
    "p", float, 0.5, "probability of keeping each coordinate", low=0.0, high=1.0, low_open=True
)


def random_mask(
    update: Sequence[torch.Tensor], keep: float, generator: torch.Generator
) -> list[torch.Tensor]:
    """One Bernoulli(keep) mask per tensor, as the tensor's dtype."""
    return [(draw_uniform(u, generator) < keep).to(u.dtype) for u in update]


class RandomPrune(Defense):
    """g = m ⊙ update with m ~ Bernoulli(p) per coordinate, fresh per update."""

    name = "prune"
    reference = REFERENCE
    protects = "every attack, by sending a random fraction p of the coordinates"
    parameters = (KEEP,)
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

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        return [u * m for u, m in zip(update, random_mask(update, self.p, generator), strict=True)]


class PruneGaussian(Defense):
    """g = m ⊙ (update + N(0, σ² I)): pruned coordinates exactly zero, kept ones noisy."""

    name = "prune+gaussian"
    reference = REFERENCE
    protects = "every attack, by random pruning and Gaussian noise on what is kept"
    parameters = (
        KEEP,
        Parameter(
            "sigma",
            float,
            0.1,
            "noise standard deviation on kept coordinates",
            low=0.0,
            low_open=True,
        ),
    )
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


class PruneLaplacian(Defense):
    """g = m ⊙ (update + Laplace(0, b)): pruned coordinates exactly zero, kept ones noisy."""

    name = "prune+laplacian"
    reference = REFERENCE
    protects = "every attack, by random pruning and Laplacian noise on what is kept"
    parameters = (
        KEEP,
        Parameter("b", float, 0.1, "Laplace scale on kept coordinates", low=0.0, low_open=True),
    )
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
