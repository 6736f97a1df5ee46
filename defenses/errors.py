"""Errors a defense raises for a bad parameter or specification."""

from __future__ import annotations


class DefenseError(ValueError):
    """A defense name or parameter is invalid; the message names the parameter."""
