"""Gradient-leakage adversaries; usable alone, without Flower or fedsim.

from attacks import build_attack, AttackTarget
rec = build_attack("bayes").reconstruct(target)

Attacks, objectives (data terms) and priors are open registries: a class of your own
joins with `register_attack`, `register_objective` or `register_prior` and is then
taken by name everywhere; CONTRIBUTING.md says what else it states.
"""

from __future__ import annotations

import importlib

from attacks.base import GradientAttack
from attacks.configs import (
    BayesAttack,
    CosineAttack,
    DLGAttack,
    GradInversionAttack,
    L1Attack,
    L2Attack,
    PaperCosineAttack,
)
from attacks.domain import FeatureDomain, ImageDomain
from attacks.engine import OptimizerConfig
from attacks.errors import AttackError
from attacks.objectives import OBJECTIVES, register_objective
from attacks.priors import PRIORS, register_prior
from attacks.registry import ATTACKS, BUILT_IN, attack_class, build_attack, register_attack
from attacks.target import AttackTarget, Budget, Protocol, Reconstruction, ThreatModel

for _module in BUILT_IN:  # each registers its attacks on import, in this order
    importlib.import_module(f"attacks.{_module}")

__all__ = [
    "ATTACKS",
    "BUILT_IN",
    "BayesAttack",
    "CosineAttack",
    "DLGAttack",
    "GradInversionAttack",
    "L1Attack",
    "L2Attack",
    "PaperCosineAttack",
    "attack_class",
    "register_attack",
    "register_objective",
    "register_prior",
    "OBJECTIVES",
    "PRIORS",
    "AttackError",
    "AttackTarget",
    "Budget",
    "FeatureDomain",
    "GradientAttack",
    "ImageDomain",
    "OptimizerConfig",
    "Protocol",
    "Reconstruction",
    "ThreatModel",
    "build_attack",
]
