"""Gradient-leakage adversaries; usable alone, without Flower or fedsim.

from attacks import build_attack, AttackTarget
rec = build_attack("bayes").reconstruct(target)
"""

from __future__ import annotations

from attacks.base import GradientAttack
from attacks.domain import FeatureDomain, ImageDomain
from attacks.engine import OptimizerConfig
from attacks.errors import AttackError
from attacks.objectives import OBJECTIVES
from attacks.priors import PRIORS
from attacks.registry import ATTACKS, build_attack
from attacks.target import AttackTarget, Budget, Protocol, Reconstruction, ThreatModel

__all__ = [
    "ATTACKS",
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
