"""Stacking defenses: stages apply in the order given, and the composed mechanism.

A composed defense runs each stage of its parts in order (all batch transforms, then
the model choice, then gradient transforms, then update transforms — each in the
parts' order). A stack in which one part would silently undo another is refused
(`Defense.composition_refusal`: DP-SGD recomputes the per-sample gradients, so
``soteria | dpsgd`` would be DP-SGD alone and ``precode | dpsgd`` would lose the KL
term). The adversary is told one likelihood for the whole, its parts taken in the
order they act (``gaussian | dpsgd`` is DP-SGD, then noise):

- no part perturbs the gradient or update (e.g. ``ats`` alone): None;
- exactly one part does: that part's mechanism (``ats | dpsgd`` → DP-SGD's);
- one part, then parts that only add noise to the update (`Defense.added_noise`:
  ``gaussian``, ``laplacian``): the first part's `Defense.mechanism_with_noise`, where it
  states one. Those of this package: Gaussian noise after Gaussian noise (``gaussian``,
  ``gaussian-per-sample``) is Gaussian with the variances added, also after DP-SGD
  (clipped Gaussian with the variances added, still clipped per sample); ``prune`` (the
  fixed public mask) then one ``gaussian`` or ``laplacian`` is the fixed-mask likelihood
  `FixedMaskMechanism`, as ``prune+gaussian`` / ``prune+laplacian``; ``random-prune``
  then one noise (on every coordinate, pruned ones included) is the mixture
  `PruneNoiseMixtureMechanism`;
- anything else: None, with the reason in `mechanism_note` — the adversary is not
  given a likelihood it cannot trust.

Each part answers for itself (the two hooks), so a defense defined elsewhere composes
without a change here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from defenses.adapted import AdaptedAttack
from defenses.base import STAGES, Defense, TrainingProtocol
from defenses.errors import DefenseError
from defenses.mechanisms import Mechanism

if TYPE_CHECKING:
    from defenses.accounting import PrivacyClaim, RoundSchedule


class Composite(Defense):
    """Several defenses applied in order as one; see the module note for its mechanism."""

    name = "compose"
    reference = "composition of the parts' references"
    effect = "what its parts do, in order"

    def __init__(self, parts: Sequence[Defense]) -> None:
        if not parts:
            raise DefenseError("compose: at least one defense is needed")
        flat: list[Defense] = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, Composite) else [part])
        models = [p.name for p in flat if p.model_name is not None]
        if len(models) > 1:
            raise DefenseError(f"compose: at most one model-stage defense, got {', '.join(models)}")
        self.parts = tuple(flat)
        self.values = {}
        for part in self.parts:
            refusal = part.composition_refusal(self.parts)
            if refusal is not None:
                raise DefenseError(f"compose: {self.spec!r} refused: {refusal}")

    @property
    def stages(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset().union(*(p.stages for p in self.parts))

    @property
    def perturbs_update(self) -> bool:  # type: ignore[override]
        return any(p.perturbs_update for p in self.parts)

    def adapted_attack(self, model: nn.Module | None = None) -> AdaptedAttack | None:
        """The attack adapted to the first part that declares one."""
        for part in self.parts:
            adapted = part.adapted_attack(model)
            if adapted is not None:
                return adapted
        return None

    @property
    def randomised(self) -> bool:  # type: ignore[override]
        return any(p.randomised for p in self.parts)

    @property
    def states_privacy(self) -> bool:  # type: ignore[override]
        return any(p.states_privacy for p in self.parts)

    def privacy_claims(
        self, schedule: RoundSchedule, rounds: int, **context: Any
    ) -> list[PrivacyClaim] | None:
        """The claims of the first part that states any."""
        for part in self.parts:
            claims = part.privacy_claims(schedule, rounds, **context)
            if claims is not None:
                return claims
        return None

    @property
    def spec(self) -> str:
        return " | ".join(p.spec for p in self.parts)

    @property
    def model_name(self) -> str | None:
        return next((p.model_name for p in self.parts if p.model_name is not None), None)

    @property
    def mechanism(self) -> Mechanism | None:
        return self.mechanism_for(1)

    def mechanism_for(
        self, batch_size: int, protocol: TrainingProtocol | None = None
    ) -> Mechanism | None:
        return _compose_mechanism(self.parts, batch_size, protocol)[0]

    @property
    def mechanism_note(self) -> str:
        return _compose_mechanism(self.parts, 1)[1]

    @property
    def kl_weight(self) -> float:
        """The model-stage part's KL weight (PRECODE), else 0."""
        return max((float(getattr(p, "kl_weight", 0.0)) for p in self.parts), default=0.0)

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        terms = [t for t in (p.extra_loss(model) for p in self.parts) if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for part in self.parts:
            x, y = part.transform_batch(x, y, generator)
        return x, y

    def transform_gradients(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        grads: list[torch.Tensor],
        generator: torch.Generator,
    ) -> list[torch.Tensor]:
        for part in self.parts:
            grads = part.transform_gradients(model, x, y, grads, generator)
        return grads

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        out = list(update)
        for part in self.parts:
            out = part.transform_update(out, generator)
        return out


def compose(parts: Sequence[Defense]) -> Defense:
    """One defense applying `parts` in order (a single part is returned as is)."""
    return parts[0] if len(parts) == 1 and not isinstance(parts[0], Composite) else Composite(parts)


def _compose_mechanism(
    parts: Sequence[Defense], batch_size: int, protocol: TrainingProtocol | None = None
) -> tuple[Mechanism | None, str]:
    # in the order the parts act: every gradient stage before any update stage
    active = sorted((p for p in parts if p.perturbs_update), key=_first_stage)
    if not active:
        return None, "no part perturbs the update; the adversary is told no likelihood"
    if len(active) == 1:
        return active[0].mechanism_for(
            batch_size, protocol
        ), f"the mechanism of {active[0].name}: {active[0].mechanism_note}"
    names = " then ".join(p.name for p in active)
    first, rest = active[0], active[1:]
    noise = [part.added_noise for part in rest]
    if all(n is not None for n in noise):
        composed = first.mechanism_with_noise(
            [n for n in noise if n is not None], batch_size, protocol
        )
        if composed is not None:
            mechanism, how = composed
            return mechanism, f"{names}: {how}"
    return None, f"{names}: no closed-form composed likelihood; the adversary is told none"


def _first_stage(defense: Defense) -> int:
    return min(STAGES.index(stage) for stage in defense.stages)
