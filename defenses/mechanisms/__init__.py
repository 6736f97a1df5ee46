"""Likelihoods p(observed | candidate) induced by the defenses."""

from __future__ import annotations

from defenses.mechanisms.base import Mechanism, Update
from defenses.mechanisms.noise import GaussianMechanism, LaplacianMechanism

__all__ = ["GaussianMechanism", "LaplacianMechanism", "Mechanism", "Update"]
