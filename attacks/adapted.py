"""The attack adapted to a defense, built from the defense's declaration.

A heuristic defense declares the adaptive adversary it falls to as data
(`defenses.Defense.adapted_attack`, a `defenses.adapted.AdaptedAttack`: a registered
attack name and its overrides); this module builds it from any object of that shape
(an `attack` name and `overrides()`), so it needs nothing of `defenses`. A defense
that declares none is attacked by `FALLBACK`, the Bayes adversary, which uses the
defense's own mechanism. The attack spec ``adapted`` resolves to it (`attacks.specs`).
"""

from __future__ import annotations

from typing import Any, Protocol

from attacks.errors import AttackError
from attacks.registry import build_attack

FALLBACK = "bayes"
"""The attack for a defense that declares no adapted attack."""


class AdaptedDeclaration(Protocol):
    """What a defense declares: an attack by its registered name and its overrides."""

    @property
    def attack(self) -> str: ...

    def overrides(self) -> dict[str, Any]: ...


def build_adapted_attack(
    declared: AdaptedDeclaration | None, fallback: str | None = FALLBACK, **overrides: Any
) -> Any:
    """The declared attack with `overrides` (a budget, a seed) on top of its own options;
    for none declared, `fallback` with `overrides`, or an AttackError when it is None."""
    if declared is not None:
        return build_attack(declared.attack, **{**declared.overrides(), **overrides})
    if fallback is None:
        raise AttackError("adapted attack: the defense declares none and no fallback is given")
    return build_attack(fallback, **overrides)
