"""Attack specifications as users write them: ``bayes`` or ``bayes:lr=0.1,iterations=50``."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from attacks.errors import AttackError
from attacks.registry import build_attack
from attacks.target import AttackTarget, Budget, Reconstruction


def _value(text: str) -> Any:
    """A TOML literal (number, boolean, quoted string), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


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
    for item in (a.strip() for a in args.split(",") if a.strip()):
        key, eq, value = item.partition("=")
        if not eq:
            raise AttackError(f"attack {name!r}: expected key=value, got {item!r}")
        overrides[key.strip()] = _value(value.strip())
    spec = AttackSpec(name.strip(), overrides, text.strip())
    spec.build()  # unknown names and parameters are refused here, before any work
    return spec
