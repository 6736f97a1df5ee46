"""No defense: the client sends its honest update (the baseline of every experiment)."""

from __future__ import annotations

from defenses.base import Defense
from defenses.registry import register_defense


@register_defense
class NoDefense(Defense):
    """Every stage unchanged; the adversary chooses its own distance (mechanism None)."""

    name = "none"
    reference = "—"
    effect = "sends the update unchanged (baseline)"
    stages = frozenset()
