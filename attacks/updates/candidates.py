"""What an update function returns: each candidate's update, and its batch statistics.

A Linear layer's per-candidate weight gradient may stay as its factors (`LinearFactors`):
objectives that need only inner products use them without forming the (N, out, in)
gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class LinearFactors:
    """A Linear weight's per-candidate gradient kept as its factors, Σ_k d_k a_kᵀ.

    `a` (N, K, in) are the layer inputs and `d` (N, K, out) the backpropagated signals of
    the candidate's K = B·(extra dims) rows. Objectives that only need inner products
    (L2, Gaussian likelihood, cosine) use them without materialising the (N, out, in)
    gradient: ‖Σ d aᵀ‖² = Σ (d dᵀ) ⊙ (a aᵀ) and ⟨Σ d aᵀ, G⟩ = Σ_k d_kᵀ G a_k — Opacus'
    ghost-norm identity, which saves the memory traffic that dominates large layers.
    """

    a: torch.Tensor
    d: torch.Tensor

    def materialize(self) -> torch.Tensor:
        return torch.bmm(self.d.transpose(1, 2), self.a)

    def sq_norm(self) -> torch.Tensor:
        gram_a = torch.bmm(self.a, self.a.transpose(1, 2))
        gram_d = torch.bmm(self.d, self.d.transpose(1, 2))
        return (gram_a * gram_d).flatten(1).sum(1)

    def dot(self, g: torch.Tensor) -> torch.Tensor:
        """⟨update_n, g_n⟩ for g of shape (N, out, in).

        With few rows, g is multiplied from the left (dᵀ g, then · a): the backward pass
        then needs x gᵀ, a layout CPU kernels run fast, where g a's backward needs gᵀ x, a
        matrix-vector product they run several times slower. With many rows both are
        matrix products and g a's smaller intermediate wins (`LEFT_MULTIPLY_ROWS`;
        EXPERIMENTS.md §6 has the measurements).
        """
        if self.a.shape[1] < LEFT_MULTIPLY_ROWS:
            dg = torch.bmm(self.d, g)  # (N, K, in)
            return (dg * self.a).flatten(1).sum(1)
        ga = torch.bmm(g, self.a.transpose(1, 2))  # (N, out, K)
        return (ga * self.d.transpose(1, 2)).flatten(1).sum(1)


LEFT_MULTIPLY_ROWS = 12
"""Below this many rows K, `LinearFactors.dot` multiplies the observed update from the
left (the crossover measured on a CPU: EXPERIMENTS.md §6)."""


@dataclass
class CandidateUpdates:
    """Per-candidate updates and, for the batch-norm prior, per-candidate batch statistics.

    `parts[i]` is parameter i's update, a tensor of shape (N, *parameter_i.shape) or
    `LinearFactors`; `updates` materialises them all. `bn_stats` holds one (mean, var)
    pair per batch-norm layer, each (N, channels): the statistics of that layer's input
    over the candidate's batch. `bn_running` holds the model's running (mean, var).
    """

    parts: list[torch.Tensor | LinearFactors]
    bn_stats: list[tuple[torch.Tensor, torch.Tensor]]
    bn_running: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def updates(self) -> list[torch.Tensor]:
        return [p.materialize() if isinstance(p, LinearFactors) else p for p in self.parts]

    def select(self, start: int, stop: int) -> CandidateUpdates:
        """Candidates start:stop (updates only; what objectives need)."""
        if start == 0 and stop == _num_candidates(self.parts[0]):
            return self
        parts = [
            LinearFactors(p.a[start:stop], p.d[start:stop])
            if isinstance(p, LinearFactors)
            else p[start:stop]
            for p in self.parts
        ]
        return CandidateUpdates(parts, [], [])


def _num_candidates(part: torch.Tensor | LinearFactors) -> int:
    return part.a.shape[0] if isinstance(part, LinearFactors) else part.shape[0]


UpdateFunction = Callable[[torch.Tensor, torch.Tensor], CandidateUpdates]
"""(x (N, B, C, H, W), labels (N, B)) → CandidateUpdates."""
