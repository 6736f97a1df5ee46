"""Name → attack table and the one way to build an attack by name."""

from __future__ import annotations

from attacks.analytic import AnalyticFC
from attacks.base import GradientAttack, check_overrides
from attacks.configs import (
    BayesAttack,
    CosineAttack,
    DLGAttack,
    GradInversionAttack,
    L1Attack,
    L2Attack,
    PaperCosineAttack,
)
from attacks.lookup import lookup

Attack = GradientAttack | AnalyticFC
"""Every attack offers `reconstruct(target, budget)`; optimisation attacks also `reconstruct_many`."""

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (
        BayesAttack,
        L2Attack,
        DLGAttack,
        L1Attack,
        CosineAttack,
        PaperCosineAttack,
        GradInversionAttack,
        AnalyticFC,
    )
}


def build_attack(name: str, **overrides: object) -> Attack:
    """Attack `name` with its paper's defaults, some replaced by `overrides`."""
    cls = lookup(ATTACKS, name, "attack")
    check_overrides(cls, overrides)
    return cls(**overrides)
