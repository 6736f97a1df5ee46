"""The mechanism contract: what a defense does to the update, as a likelihood.

A client sends g ~ p(g | x) instead of the true gradient. The Bayes adversary
maximises log p(g_obs | ∇θ ℓ(x)) + log p(x), so every defense that perturbs the
update states `log_likelihood(observed, candidate)` up to an additive constant.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

Update = Sequence[torch.Tensor]
"""An update as one tensor per model parameter, in `model.parameters()` order."""


class Mechanism(ABC):
    """p(observed update | candidate clean update), batched over candidates."""

    name: str = "mechanism"

    @abstractmethod
    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        """Log-likelihood up to a constant, one value per candidate.

        `observed[i]` has the shape of parameter i; `candidate[i]` has a leading
        candidate dimension N in front of it. Returns a tensor of shape (N,) that
        is differentiable with respect to `candidate`.
        """


def flat_difference(observed: Update, candidate: Update) -> torch.Tensor:
    """(N, D) differences candidate − observed over all parameters, concatenated."""
    n = candidate[0].shape[0]
    return torch.cat(
        [(c - o.unsqueeze(0)).reshape(n, -1) for o, c in zip(observed, candidate, strict=True)],
        dim=1,
    )
