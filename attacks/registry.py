"""The attack registry (name → class) and the one way to build an attack by name.

An attack registers itself with the `register_attack` class decorator; the built-in ones
do so in their own modules, which importing `attacks` loads in the order of `BUILT_IN`.
An attack defined anywhere else registers when its module is imported, and from then on
works by name wherever an attack is named (`build_attack`, scenario files, `fedsim
attack --attack`, `fedsim list attacks`, the auditor's `attacks`):

    from dataclasses import dataclass
    from attacks import CosineAttack, register_attack

    @register_attack
    @dataclass(frozen=True)
    class MyAttack(CosineAttack):
        name = "mine"
        ...
"""

from __future__ import annotations

from dataclasses import is_dataclass
from typing import TYPE_CHECKING, TypeVar

from attacks.base import check_overrides
from attacks.lookup import Registry

if TYPE_CHECKING:
    from attacks.analytic import AnalyticFC
    from attacks.base import GradientAttack

    Attack = GradientAttack | AnalyticFC
    """Every attack offers `reconstruct(target, budget)` and `reads()`; optimisation
    attacks (`GradientAttack`) also `reconstruct_many`."""

BUILT_IN = ("configs", "analytic")
"""Modules of `attacks` whose attacks register on import, in the order they are listed
(the order of `fedsim list attacks`)."""

A = TypeVar("A", bound=type)


def _is_attack(cls: type) -> bool:
    return is_dataclass(cls) and all(
        callable(getattr(cls, m, None)) for m in ("reconstruct", "reads")
    )


_REGISTRY: Registry = Registry(
    "attack", _is_attack, "an attack (a dataclass with `reconstruct` and `reads`)"
)
ATTACKS = _REGISTRY.entries
"""Every registered attack by name, in the order registered (a read-only view that grows
as attacks register)."""


def register_attack(cls: A) -> A:
    """Register the attack class `cls` under its class attribute `name` (a class
    decorator; returns `cls`). A name taken by another class is refused (AttackError)."""
    return _REGISTRY.register(cls)


def attack_class(name: str) -> type[Attack]:
    """The registered attack `name`; AttackError listing the registered names otherwise."""
    return _REGISTRY.get(name)


def build_attack(name: str, **overrides: object) -> Attack:
    """Attack `name` with its paper's defaults, some replaced by `overrides`."""
    cls = attack_class(name)
    check_overrides(cls, overrides)
    return cls(**overrides)
