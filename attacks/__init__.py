"""Gradient-leakage adversaries; usable alone, without Flower or fedsim."""

from __future__ import annotations
