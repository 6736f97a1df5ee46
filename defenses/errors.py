"""Errors a defense raises for a bad parameter or specification."""

from __future__ import annotations


class DefenseError(ValueError):
    """A defense name or parameter is invalid; the message names the parameter."""


class MechanismRefused(DefenseError):
    """The defense perturbs the update in a way no stated likelihood describes (here):
    an attack that models the mechanism must be refused rather than told none."""
