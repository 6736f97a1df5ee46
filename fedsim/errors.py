"""Errors a user can cause; the CLI prints their message in one line and exits with status 2."""

from __future__ import annotations


class FedsimError(Exception):
    """Base of every error fedsim raises for bad input."""


class DataError(FedsimError):
    """A data set is missing, corrupted, or fails its checksum."""


class ConfigError(FedsimError):
    """A scenario, option or name is invalid."""
