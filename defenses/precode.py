"""PRECODE: a variational bottleneck before the classifier, as a model-stage defense.

Reference: Scheliga, Mäder, Seeland, "PRECODE — A Generic Model Extension to Prevent
Deep Gradient Leakage", WACV 2022.

The defense does not transform data or updates: it says the client must train the
``precode`` network (fedsim.models, the variational bottleneck model) and add
`kl_weight` × its KL divergence term to the loss. Heuristic: mechanism None; the
adapted attack inverts the first fully connected layer, which sits before the
bottleneck, analytically (`defenses.adapted`).
"""

from __future__ import annotations

import torch
from torch import nn

from defenses.adapted import AdaptedAttack
from defenses.base import Defense, Parameter
from defenses.errors import DefenseError
from defenses.registry import register_defense


@register_defense
class PrecodeDefense(Defense):
    """Model stage: train the PRECODE network with KL weight β."""

    name = "precode"
    examples = ("precode:beta=0.01",)
    adapted = AdaptedAttack(
        "analytic-fc", {}, (), "invert the first linear layer, before the bottleneck"
    )
    reference = "Scheliga, Mäder, Seeland, PRECODE - A Generic Model Extension to Prevent Deep Gradient Leakage, WACV 2022"
    effect = (
        "puts a variational bottleneck before the classifier (a heuristic: no likelihood;"
        " analytic inversion of its first layer recovers the input)"
    )
    parameters = (
        Parameter(
            "beta",
            float,
            3e-3,
            "weight of the bottleneck's KL term in the training loss (the paper: 0.003)",
            low=0.0,
        ),
    )
    stages = frozenset({"model"})
    adds_loss = True
    beta: float

    @property
    def model_name(self) -> str:
        return "precode"

    @property
    def kl_weight(self) -> float:
        """β: the loss is cross-entropy + β · KL(q(z|x) ‖ N(0, I))."""
        return self.beta

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """β · the KL term of the model's last forward pass (the PRECODE model's `kl_loss`)."""
        kl = getattr(model, "kl_loss", None)
        if not isinstance(kl, torch.Tensor):
            raise DefenseError(
                f"precode: the client model must be the precode network (with a kl_loss), got {type(model).__name__}"
            )
        return self.beta * kl

    @property
    def mechanism_note(self) -> str:
        return "heuristic defense: no likelihood; adapted attack is analytic-fc on the layer before the bottleneck"
