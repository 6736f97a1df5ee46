"""Attack specifications as users write them: ``bayes`` or ``bayes:lr=0.1,iterations=50``.

Values are TOML literals (``exclude=['body.fc2.weight', 'body.fc2.bias']`` works: only
commas outside brackets, braces and quotes separate options). The name ``adapted``
stands for the attack adapted to each defense (`Defense.adapted_attack`): Soteria → cosine
matching without the defended layer, ATS → strong Inverting Gradients, PRECODE →
analytic inversion of the first layer, any other defense → the Bayes adversary with
the defense's own mechanism. Options given to ``adapted`` apply where the chosen
attack has them (``adapted:iterations=50`` leaves the analytic attack unchanged).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn

from attacks.adapted import FALLBACK
from attacks.errors import AttackError
from attacks.registry import ATTACKS, build_attack
from attacks.target import AttackTarget, Budget, Reconstruction
from defenses.base import Defense

ADAPTED = "adapted"
"""Pseudo-attack name: the attack adapted to the defense under test."""

ADAPTED_FALLBACK = FALLBACK


def _value(text: str) -> Any:
    """A TOML literal (number, boolean, quoted string, array, inline table), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """`text` split at `separator` outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


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
            return AttackSpec(ADAPTED_FALLBACK, dict(self.overrides), f"adapted={ADAPTED_FALLBACK}")
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
    name, _, args = text.strip().partition(":")
    overrides: dict[str, Any] = {}
    for item in split_top_level(args):
        key, eq, value = item.partition("=")
        if not eq:
            raise AttackError(f"attack {name!r}: expected key=value, got {item!r}")
        overrides[key.strip()] = _value(value.strip())
    spec = AttackSpec(name.strip(), overrides, text.strip())
    if spec.name != ADAPTED:
        spec.build()  # unknown names and parameters are refused here, before any work
    return spec
