"""Top-k magnitude pruning of the update: keep the largest fraction p of coordinates.

Reference: Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019 (Section 5,
gradient pruning as a defense: coordinates with the smallest magnitudes are zeroed).

The fraction is taken per tensor (each parameter keeps its ceil(p·size) largest
magnitudes), as layer-wise pruning in the DLG experiments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from defenses.base import Defense, Parameter
from defenses.mechanisms import Mechanism
from defenses.mechanisms.masked import MaskedMechanism
from defenses.registry import register_defense


@register_defense
class TopKPrune(Defense):
    """g = update with all but its largest-magnitude fraction p (per tensor) set to zero."""

    name = "topk"
    examples = ("topk:p=0.2",)
    reference = "Zhu, Liu, Han, Deep Leakage from Gradients, NeurIPS 2019"
    effect = "sends only the largest-magnitude coordinates of the update"
    parameters = (
        Parameter(
            "p",
            float,
            0.1,
            "fraction of coordinates kept per tensor",
            low=0.0,
            high=1.0,
            low_open=True,
        ),
    )
    stages = frozenset({"update"})
    perturbs_update = True
    p: float

    @property
    def mechanism(self) -> Mechanism:
        return MaskedMechanism(None)

    @property
    def mechanism_note(self) -> str:
        return (
            "heuristic: top-k is deterministic; L2 on the observed kept coordinates "
            "(ignores that dropped coordinates were smaller than the kept ones)"
        )

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        out = []
        for u in update:
            flat = u.reshape(-1)
            k = max(1, math.ceil(self.p * flat.numel()))
            keep = torch.zeros_like(flat)
            keep[flat.abs().topk(k).indices] = 1
            out.append((flat * keep).reshape(u.shape))
        return out
