"""Client-side defenses against gradient leakage, each with the mechanism it induces."""

from __future__ import annotations
