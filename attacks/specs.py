"""Attack specifications as users write them: ``bayes`` or ``bayes:lr=0.1,iterations=50``.

The grammar is the defenses' (`defenses.spec_syntax`): values are TOML literals
(``exclude=['body.fc2.weight', 'body.fc2.bias']`` works: only commas outside brackets,
braces and quotes separate options); an attack takes ``key=value`` options only. The name ``adapted``
stands for the attack adapted to each defense (`Defense.adapted_attack`): Soteria → cosine
matching without the defended layer, ATS → strong Inverting Gradients, PRECODE →
analytic inversion of the first layer, any other defense → the Bayes adversary with
the defense's own mechanism. Options given to ``adapted`` apply where the chosen
attack has them (``adapted:iterations=50`` leaves the analytic attack unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn

from attacks.adapted import FALLBACK
from attacks.errors import AttackError
from attacks.registry import ATTACKS, build_attack
from attacks.target import AttackTarget, Budget, Reconstruction
from defenses.base import Defense
from defenses.spec_syntax import parse_spec_text

ADAPTED = "adapted"
"""Pseudo-attack name: the attack adapted to the defense under test."""


@dataclass(frozen=True)
class AttackSpec:
    """One attack by name with hyper-parameter overrides; `label` is how results name it."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    @property
    def label(self) -> str:
        return self.text or self.name

    def build(self, seed: int = 0) -> Any:
        overrides = dict(self.overrides)
        overrides.setdefault("seed", seed)
        return build_attack(self.name, **overrides)

    @property
    def default_iterations(self) -> int:
        return int(getattr(build_attack(self.name, **self.overrides), "iterations", 1))

    def resolve(self, defense: Defense, model: nn.Module) -> AttackSpec:
        """The concrete attack for `defense` (only ``adapted`` depends on it)."""
        if self.name != ADAPTED:
            return self
        adapted = defense.adapted_attack(model)
        if adapted is None:
            return AttackSpec(FALLBACK, dict(self.overrides), f"adapted={FALLBACK}")
        accepted = {f.name for f in fields(ATTACKS[adapted.attack])}
        mine = {k: v for k, v in self.overrides.items() if k in accepted}
        return AttackSpec(
            adapted.attack, {**adapted.overrides(), **mine}, f"adapted={adapted.attack}"
        )

    def run(
        self, targets: Sequence[AttackTarget], budget: Budget, seed: int = 0
    ) -> list[Reconstruction]:
        """Reconstruct all targets, batched where the attack supports it."""
        attack = self.build(seed)
        if hasattr(attack, "reconstruct_many"):
            return attack.reconstruct_many(targets, budget)
        return [attack.reconstruct(target, budget) for target in targets]


def parse_attack_spec(text: str) -> AttackSpec:
    """``name[:key=value,...]``; values are TOML literals; the attack checks names and values."""
    parsed = parse_spec_text(text)
    overrides: dict[str, Any] = {}
    for argument in parsed.arguments:
        if argument.key is None:
            raise AttackError(f"attack {parsed.name!r}: expected key=value, got {argument.text!r}")
        overrides[argument.key] = argument.value
    spec = AttackSpec(parsed.name, overrides, text.strip())
    if spec.name != ADAPTED:
        spec.build()  # unknown names and parameters are refused here, before any work
    return spec
