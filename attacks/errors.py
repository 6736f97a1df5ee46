"""Errors an attack raises for input it cannot work with, before any optimisation starts."""

from __future__ import annotations


class AttackError(ValueError):
    """The target, threat model or configuration of an attack is invalid."""
