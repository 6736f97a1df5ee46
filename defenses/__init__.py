"""Client-side defenses against gradient leakage, each with the mechanism it induces.

    from defenses import parse_defense
    defense = parse_defense("prune+gaussian:p=0.5,sigma=0.1")
    sent = defense.transform_update(update, generator)
    likelihood = defense.mechanism  # p(observed | clean), for the Bayes adversary

`list_defenses()` gives the table of names, parameters and references; stacking is
``"ats:policy=21-13-3 | dpsgd:clip=1,sigma=1"``; Flower mods live in
`defenses.flower` (imported on its own, as it needs Flower). A defense of your own
registers with `register_defense` (`defenses.registry`); CONTRIBUTING.md says what
else it states.
"""

from __future__ import annotations

import importlib

from defenses.accounting import PrivacyClaim, RoundSchedule, dp_epsilon, privacy_claims
from defenses.base import STAGES, Defense, Parameter
from defenses.client import (
    ClientUpdate,
    batch_gradient,
    client_update,
    defended_fedavg_update,
    defended_gradient,
)
from defenses.composite import Composite, compose
from defenses.errors import DefenseError, MechanismRefused
from defenses.registry import (
    BUILT_IN,
    DEFENSES,
    DefenseInfo,
    build_defense,
    defense_class,
    list_defenses,
    parse_defense,
    register_defense,
    update_stage_defenses,
)

for _module in BUILT_IN:  # each registers its defenses on import, in this order
    importlib.import_module(f"defenses.{_module}")

__all__ = [
    "DEFENSES",
    "STAGES",
    "Composite",
    "Defense",
    "DefenseError",
    "DefenseInfo",
    "MechanismRefused",
    "Parameter",
    "PrivacyClaim",
    "RoundSchedule",
    "ClientUpdate",
    "batch_gradient",
    "client_update",
    "build_defense",
    "compose",
    "defense_class",
    "defended_fedavg_update",
    "defended_gradient",
    "dp_epsilon",
    "list_defenses",
    "parse_defense",
    "privacy_claims",
    "register_defense",
    "update_stage_defenses",
]
