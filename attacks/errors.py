"""Errors an attack raises for input it cannot work with, before any optimisation starts."""

from __future__ import annotations


class AttackError(ValueError):
    """The target, threat model or configuration of an attack is invalid."""


class AttackRefused(AttackError):
    """The attack cannot be run honestly on this target (it models a likelihood the
    target does not state): recorded as `refused`, an update left unattacked."""
