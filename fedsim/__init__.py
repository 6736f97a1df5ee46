"""fedsim: a federated-learning simulator with a built-in gradient-leakage adversary."""

from __future__ import annotations

__version__ = "0.1.0"
