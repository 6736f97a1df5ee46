"""The adaptive adversary for each heuristic defense, as an attack configuration.

Reference: Balunović et al., "Bayesian Framework for Gradient Leakage", ICLR 2022
(Section 6: Soteria, ATS and PRECODE fall to attacks adapted to them, especially
early in training).

- ``soteria``: gradient matching with the defended layer's weight gradient left out
  of the matching loss (it is the only gradient Soteria changes, so the rest is the
  honest gradient). Expressed as `exclude_parameters` and, per model,
  `parameter_weights` (1 per parameter in `model.parameters()` order, 0 for the
  defended weight) — the attack objective takes these as per-parameter weights.
- ``ats``: a strong Inverting Gradients attack (cosine distance + total variation,
  several restarts, long schedule), most effective in the first rounds.
- ``precode``: analytic inversion of the first fully connected layer, which sits
  before the variational bottleneck (``analytic-fc``).

Option names follow the attack engine's configuration; the attack's own validation
refuses any it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from defenses.base import Defense
from defenses.composite import Composite
from defenses.soteria import Soteria, find_defended_layer


@dataclass(frozen=True)
class AdaptedAttack:
    """Which attack to run against a defense, with what options and which gradients to ignore."""

    attack: str
    options: Mapping[str, Any] = field(default_factory=dict)
    exclude_parameters: tuple[str, ...] = ()
    note: str = ""

    def parameter_weights(self, model: nn.Module) -> list[float]:
        """Weight of each parameter's gradient in the matching loss, in `model.parameters()` order."""
        excluded = set(self.exclude_parameters)
        return [0.0 if name in excluded else 1.0 for name, _ in model.named_parameters()]


STRONG_INVERTING_GRADIENTS: Mapping[str, Any] = {
    "iterations": 4000,
    "restarts": 4,
    "lr": 0.1,
    "tv_weight": 1e-4,
}
"""Inverting Gradients' own CIFAR setting (Geiping et al., NeurIPS 2020), used by ATS's authors."""


def adapted_attack(defense: Defense, model: nn.Module | None = None) -> AdaptedAttack | None:
    """The adapted attack for a heuristic defense (or the first heuristic part of a stack); None if none."""
    parts = defense.parts if isinstance(defense, Composite) else (defense,)
    for part in parts:
        if isinstance(part, Soteria):
            layer = part.layer
            if model is not None:
                layer, _ = find_defended_layer(model, part.layer)
            elif layer == "auto":
                layer = "<defended layer>"  # resolved once the model is known
            return AdaptedAttack(
                "cos",
                {},
                (f"{layer}.weight",),
                "drop the defended layer's weight gradient from the matching loss",
            )
        if part.name == "ats":
            return AdaptedAttack(
                "cos",
                dict(STRONG_INVERTING_GRADIENTS),
                (),
                "strong Inverting Gradients, early rounds",
            )
        if part.name == "precode":
            return AdaptedAttack(
                "analytic-fc", {}, (), "invert the first linear layer, before the bottleneck"
            )
    return None
