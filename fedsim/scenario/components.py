"""Names in a scenario → defense and attack objects, through their packages' registries.

Errors from either package are re-raised as `ConfigError`s that name the scenario
field (`defenses.1`, `attacks.0.overrides`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedsim.errors import ConfigError


def build_defense(specs: Sequence[str]) -> Any:
    """The scenario's defenses stacked in order as one defense ('none' when the list is empty)."""
    from defenses import parse_defense
    from defenses.errors import DefenseError

    for index, spec in enumerate(specs):
        try:
            parse_defense(spec)
        except DefenseError as error:
            raise ConfigError(f"defenses.{index}: {error}") from None
    try:
        return parse_defense(list(specs) if specs else "none")
    except DefenseError as error:
        raise ConfigError(f"defenses: {error}") from None


def build_attack(name: str, overrides: dict[str, Any], index: int) -> Any:
    """The attack registered as `name`, with its options overridden."""
    import attacks
    from attacks.errors import AttackError

    try:
        return attacks.build_attack(name, **overrides)
    except AttackError as error:
        raise ConfigError(f"attacks.{index}: {error}") from None
    except TypeError as error:
        raise ConfigError(f"attacks.{index}.overrides: {error}") from None
